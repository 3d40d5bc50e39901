package share

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Index keys. Every record lives under a one-letter prefix:
//
//	p/<manifest CID>                 package record (JSON pkgRecord): every name@version it has
//	m/<manifest CID>                 manifest bytes
//	n/<name>\x00<version>            manifest CID string (Lookup); many names may share a CID
//	o/<object name>                  object record (JSON objRecord)
//	c/<partial id>/<chunk CID>       chunk present (durably written) in a partial file
//	k/<chunk CID>/<partial id>       where a chunk lives: offset and length (16 bytes)
//	i/<vm>\x00<name>                 VM install of the package called name (JSON installRecord):
//	                                 one view per VM and name (records written before names were
//	                                 keys have the manifest CID there, and no name in the record)
//	r/<manifest CID>/<vm>            reverse of i/: the package's references (one per VM however
//	                                 many of its names the VM installed)
//	s/id                             the store's id (see integrity.go)
//	q/<manifest CID>                 package to fetch again: objects it uses were damaged (JSON repairRecord)
const (
	prefixPackage  = "p/"
	prefixManifest = "m/"
	prefixName     = "n/"
	prefixObject   = "o/"
	prefixPresence = "c/"
	prefixChunkLoc = "k/"
	prefixInstall  = "i/"
	prefixRef      = "r/"
)

// PackageState says whether a package's tree is built.
type PackageState string

// Package states.
const (
	StatePartial  PackageState = "partial"
	StateComplete PackageState = "complete"
)

// pkgRecord is a package: its content (the manifest CID, the key) and the
// name@version pairs it was published under. Name and Version are the
// first; Also holds the others (identical content published under other
// names is stored once).
type pkgRecord struct {
	Name    string       `json:"name"`
	Version string       `json:"version"`
	Also    []pkgName    `json:"also,omitempty"`
	State   PackageState `json:"state"`
	Keep    bool         `json:"keep"`
	Created time.Time    `json:"created"`
	// Layout is how the package's tree was built (layoutReadOnly for
	// trees of stores before modes and owners were carried, absent in
	// their records; see store.go). It is set when the tree is built.
	Layout int `json:"layout,omitempty"`
}

// pkgName is one name@version of a package.
type pkgName struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// names lists every name@version of the package, the first one first.
func (r *pkgRecord) names() []pkgName {
	return append([]pkgName{{r.Name, r.Version}}, r.Also...)
}

// addName records name@version for the package; it reports whether the
// record changed.
func (r *pkgRecord) addName(name, version string) bool {
	for _, n := range r.names() {
		if n.Name == name && n.Version == version {
			return false
		}
	}
	r.Also = append(r.Also, pkgName{name, version})
	return true
}

type objRecord struct {
	Hash      string   `json:"hash"`
	Size      int64    `json:"size"`
	Perm      uint32   `json:"perm"`
	UID       uint32   `json:"uid,omitempty"`
	GID       uint32   `json:"gid,omitempty"`
	ChunkSize int64    `json:"chunk_size"`
	Chunks    []string `json:"chunks"`
	// Ino and Mtime (nanoseconds) are the object file's inode and
	// modification time when its content was last verified: a write or
	// truncate moves the modification time, so a file that still has
	// both (and its size and mode) needs no re-hash on install (see
	// damage.go). Zero: not known (a record from before they were kept).
	Ino   uint64 `json:"ino,omitempty"`
	Mtime int64  `json:"mtime,omitempty"`
	// Verified is when (Unix nanoseconds) the content was last hashed
	// and found good: as the object was stored, or by Scrub. Zero: not
	// known. Scrub leaves an object verified within Config.ScrubFresh
	// whose stamp still matches.
	Verified int64 `json:"verified,omitempty"`
}

type installRecord struct {
	VM          string    `json:"vm"`
	Name        string    `json:"name,omitempty"`
	Version     string    `json:"version,omitempty"`
	ManifestCID string    `json:"manifest"`
	Root        string    `json:"root,omitempty"`
	Into        string    `json:"into"`
	Mode        string    `json:"mode"`
	Setuid      bool      `json:"setuid,omitempty"`
	Created     time.Time `json:"created"`
}

func nameKey(name, version string) []byte {
	return []byte(prefixName + name + "\x00" + version)
}

func presenceKey(id, chunk string) []byte { return []byte(prefixPresence + id + "/" + chunk) }

func chunkLocKey(chunk, id string) []byte { return []byte(prefixChunkLoc + chunk + "/" + id) }

// splitPresenceKey parses c/<id>/<chunk>.
func splitPresenceKey(k []byte) (id, chunk string, ok bool) {
	rest := strings.TrimPrefix(string(k), prefixPresence)
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

// splitChunkLocKey parses k/<chunk>/<id>.
func splitChunkLocKey(k []byte) (chunk, id string, ok bool) {
	rest := strings.TrimPrefix(string(k), prefixChunkLoc)
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

// hashOfPartialID returns the hash part of "<hash>-<size>".
func hashOfPartialID(id string) string {
	if i := strings.LastIndexByte(id, '-'); i >= 0 {
		return id[:i]
	}
	return id
}

func encodeLoc(off, n int64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(off))
	binary.BigEndian.PutUint64(b[8:], uint64(n))
	return b
}

func decodeLoc(b []byte) (off, n int64, ok bool) {
	if len(b) != 16 {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:])), true
}

// getJSON reads key into v; found is false if the key is absent.
func getJSON(txn *badger.Txn, key []byte, v any) (found bool, err error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, item.Value(func(b []byte) error {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("index record %q: %w", key, err)
		}
		return nil
	})
}

func setJSON(txn *badger.Txn, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set(key, b)
}

func exists(txn *badger.Txn, key []byte) (bool, error) {
	_, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// scanKeys calls fn for every key with the given prefix. The key slice is
// only valid during the call.
func scanKeys(txn *badger.Txn, prefix string, fn func(k []byte, item *badger.Item) error) error {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte(prefix)
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(opts.Prefix); it.ValidForPrefix(opts.Prefix); it.Next() {
		item := it.Item()
		if err := fn(item.Key(), item); err != nil {
			return err
		}
	}
	return nil
}

// updatePackageTxn applies fn to the record of package key and stores it.
// found is false, and nothing changes, when there is no such package.
func updatePackageTxn(txn *badger.Txn, key string, fn func(r *pkgRecord)) (found bool, err error) {
	var rec pkgRecord
	found, err = getJSON(txn, []byte(prefixPackage+key), &rec)
	if err != nil || !found {
		return found, err
	}
	fn(&rec)
	return true, setJSON(txn, []byte(prefixPackage+key), &rec)
}

// scanJSON calls fn with the key and the decoded value of every record
// whose key starts with prefix, in key order.
func scanJSON[T any](txn *badger.Txn, prefix string, fn func(k []byte, r *T) error) error {
	return scanKeys(txn, prefix, func(k []byte, item *badger.Item) error {
		var r T
		if err := jsonUnmarshal(item, &r); err != nil {
			return err
		}
		return fn(k, &r)
	})
}

// scanPackages calls fn with the key (the manifest CID) and the record of
// every package, in key order.
func scanPackages(txn *badger.Txn, fn func(key string, r *pkgRecord) error) error {
	return scanJSON(txn, prefixPackage, func(k []byte, r *pkgRecord) error {
		return fn(strings.TrimPrefix(string(k), prefixPackage), r)
	})
}

// update runs fn in a read-write transaction, retrying on conflicts. Its
// writes are durable when it returns: badger syncs each transaction, or,
// with checkpoints, syncIndex syncs the index's logs.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	if err := s.updateTxn(fn); err != nil {
		return err
	}
	return s.syncIndex()
}

// updateLazy is update whose writes, with checkpoints, become durable at
// the next checkpoint (checkpoint.go): for the records of a download,
// which a power cut may lose as long as it loses them whole.
func (s *Store) updateLazy(fn func(txn *badger.Txn) error) error {
	err := s.updateTxn(fn)
	if err == nil {
		s.lazyWrites.Add(1)
	}
	return err
}

// updateTxn runs fn in a read-write transaction, retrying on conflicts.
func (s *Store) updateTxn(fn func(txn *badger.Txn) error) error {
	for i := 0; ; i++ {
		err := s.db.Update(fn)
		if errors.Is(err, badger.ErrConflict) && i < 100 {
			continue
		}
		return err
	}
}

// updateIfWrites is update for an fn that may have nothing to write (it
// says whether it wrote): only a write is synced.
func (s *Store) updateIfWrites(fn func(txn *badger.Txn) (bool, error)) error {
	wrote := false
	err := s.updateTxn(func(txn *badger.Txn) (err error) {
		wrote, err = fn(txn)
		return err
	})
	if err != nil || !wrote {
		return err
	}
	return s.syncIndex()
}

// syncIndex makes the index's writes so far durable where badger does not
// sync them itself (checkpoint mode), in a round shared with concurrent
// callers (fsSyncer).
func (s *Store) syncIndex() error {
	if !s.sync || s.ckpt <= 0 {
		return nil
	}
	if err := s.indexSync.flush(); err != nil {
		return fmt.Errorf("sync index: %w", err)
	}
	return nil
}

// syncIndexFiles fdatasyncs badger's logs in dir: the log of every
// memtable and the value logs. Not badger's own DB.Sync: that syncs only
// the active memtable's log, and a memtable being flushed to a table
// keeps an unsynced one, whose loss at a power cut would take earlier
// writes and keep later ones. A log removed meanwhile was flushed to a
// table, which badger syncs.
func syncIndexFiles(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if ext := filepath.Ext(de.Name()); ext != ".mem" && ext != ".vlog" {
			continue
		}
		f, err := os.Open(filepath.Join(dir, de.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		err = fdatasync(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", de.Name(), err)
		}
	}
	return nil
}

// deleteKeys removes keys in batches (not atomically: every caller deletes
// records whose absence is safe at any point), durably.
func (s *Store) deleteKeys(keys [][]byte) error {
	if err := s.deleteBatch(keys); err != nil || len(keys) == 0 {
		return err
	}
	return s.syncIndex()
}

// deleteKeysLazy is deleteKeys for records whose coming back after a
// power cut is safe too.
func (s *Store) deleteKeysLazy(keys [][]byte) error {
	err := s.deleteBatch(keys)
	if err == nil && len(keys) > 0 {
		s.lazyWrites.Add(1)
	}
	return err
}

// deleteBatch deletes keys in write batches.
func (s *Store) deleteBatch(keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// deletePrefix removes every key with the given prefix.
func (s *Store) deletePrefix(prefix []byte) error {
	return s.deleteKeysWhere(string(prefix), func([]byte) bool { return true })
}

// deleteKeysWhere removes the keys with the given prefix for which drop
// is true, read in one transaction and deleted as deleteKeys does.
func (s *Store) deleteKeysWhere(prefix string, drop func(k []byte) bool) error {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, prefix, func(k []byte, _ *badger.Item) error {
			if drop(k) {
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	return s.deleteKeys(keys)
}

// findObject returns the records of every stored variant (permission) of
// the object with the given hash.
func findObject(txn *badger.Txn, hash string) ([]objRecord, error) {
	var out []objRecord
	err := scanKeys(txn, prefixObject+hash, func(k []byte, item *badger.Item) error {
		name := strings.TrimPrefix(string(k), prefixObject)
		if name != hash && !strings.HasPrefix(name, hash+".") {
			return nil
		}
		var r objRecord
		if err := item.Value(func(b []byte) error { return json.Unmarshal(b, &r) }); err != nil {
			return fmt.Errorf("index record %q: %w", k, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}
