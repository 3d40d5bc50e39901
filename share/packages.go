package share

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// PackageInfo describes a package in the store.
type PackageInfo struct {
	ManifestCID cid.Cid
	Name        string
	Version     string
	State       PackageState
	Keep        bool  // kept without installs (see SetKeep)
	Size        int64 // bytes of all files (metadata.Manifest.TotalSize)
	Have        int64 // bytes of them the store holds
	Files       int   // file entries
	TreePath    string
	Installs    []string // VMs that installed it, sorted
}

// Install is one VM's use of a package.
type Install struct {
	VM          string
	ManifestCID cid.Cid
	Into        string // where the VM sees the tree
	Mode        string // a ViewMode
	Created     time.Time
}

// Package describes the package whose manifest is manifestCID.
func (s *Store) Package(manifestCID cid.Cid) (*PackageInfo, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	var info *PackageInfo
	err := s.db.View(func(txn *badger.Txn) (err error) {
		info, err = s.packageInfo(txn, manifestCID)
		return err
	})
	return info, err
}

// Packages describes every package in the store, sorted by name and version.
func (s *Store) Packages() ([]PackageInfo, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	var out []PackageInfo
	err := s.db.View(func(txn *badger.Txn) error {
		var cids []cid.Cid
		err := scanKeys(txn, prefixPackage, func(k []byte, _ *badger.Item) error {
			c, err := cid.Decode(strings.TrimPrefix(string(k), prefixPackage))
			if err == nil {
				cids = append(cids, c)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range cids {
			info, err := s.packageInfo(txn, c)
			if err != nil {
				return err
			}
			out = append(out, *info)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version < out[j].Version
	})
	return out, err
}

// Lookup describes the package registered as NAME@VERSION.
func (s *Store) Lookup(name, version string) (*PackageInfo, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	var info *PackageInfo
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(nameKey(name, version))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("package %s@%s: %w", name, version, ErrNotFound)
		}
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		c, err := cid.Decode(string(v))
		if err != nil {
			return fmt.Errorf("package %s@%s: index: %w", name, version, err)
		}
		info, err = s.packageInfo(txn, c)
		return err
	})
	return info, err
}

func (s *Store) packageInfo(txn *badger.Txn, c cid.Cid) (*PackageInfo, error) {
	key := c.String()
	var rec pkgRecord
	found, err := getJSON(txn, []byte(prefixPackage+key), &rec)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("package %s: %w", c, ErrNotFound)
	}
	m, _, err := s.manifestTxn(txn, c)
	if err != nil {
		return nil, err
	}
	info := &PackageInfo{ManifestCID: c, Name: rec.Name, Version: rec.Version, State: rec.State, Keep: rec.Keep, Size: m.TotalSize()}
	if rec.State == StateComplete {
		info.TreePath = s.TreePath(c)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != metadata.TypeFile {
			continue
		}
		info.Files++
		if rec.State == StateComplete {
			continue
		}
		n, err := haveBytes(txn, e, m.ChunkSize)
		if err != nil {
			return nil, err
		}
		info.Have += n
	}
	if rec.State == StateComplete {
		info.Have = info.Size
	}
	err = scanKeys(txn, prefixRef+key+"/", func(k []byte, _ *badger.Item) error {
		info.Installs = append(info.Installs, strings.TrimPrefix(string(k), prefixRef+key+"/"))
		return nil
	})
	return info, err
}

// haveBytes counts the bytes of e the store holds: all of them if its
// object exists, else those of the chunks recorded present.
func haveBytes(txn *badger.Txn, e *metadata.Entry, chunkSize int64) (int64, error) {
	recs, err := findObject(txn, e.Hash)
	if err != nil {
		return 0, err
	}
	if len(recs) > 0 {
		return e.Size, nil
	}
	id := partialID(e.Hash, e.Size)
	var n int64
	for j, cs := range e.Chunks {
		ok, err := exists(txn, presenceKey(id, cs))
		if err != nil {
			return 0, err
		}
		if ok {
			n += min(chunkSize, e.Size-int64(j)*chunkSize)
		}
	}
	return n, nil
}

// Manifest returns the manifest of a package in the store and its bytes.
func (s *Store) Manifest(manifestCID cid.Cid) (*metadata.Manifest, []byte, error) {
	if s.isClosed() {
		return nil, nil, ErrClosed
	}
	var m *metadata.Manifest
	var b []byte
	err := s.db.View(func(txn *badger.Txn) (err error) {
		m, b, err = s.manifestTxn(txn, manifestCID)
		return err
	})
	return m, b, err
}

// manifestTxn returns a stored manifest, decoded once and then cached by
// CID (manifests are content-addressed and immutable). Callers must not
// modify the returned manifest.
func (s *Store) manifestTxn(txn *badger.Txn, c cid.Cid) (*metadata.Manifest, []byte, error) {
	s.mcMu.Lock()
	hit, ok := s.mcache[c]
	s.mcMu.Unlock()
	if ok {
		return hit.m, hit.b, nil
	}
	m, b, err := manifestTxn(txn, c, s.lim)
	if err != nil {
		return nil, nil, err
	}
	s.mcMu.Lock()
	if s.mcache == nil || len(s.mcache) >= maxCachedManifests {
		s.mcache = make(map[cid.Cid]cachedManifest)
	}
	s.mcache[c] = cachedManifest{m: m, b: b}
	s.mcMu.Unlock()
	return m, b, nil
}

type cachedManifest struct {
	m *metadata.Manifest
	b []byte
}

// maxCachedManifests bounds the decoded-manifest cache.
const maxCachedManifests = 64

func manifestTxn(txn *badger.Txn, c cid.Cid, lim metadata.Limits) (*metadata.Manifest, []byte, error) {
	item, err := txn.Get([]byte(prefixManifest + c.String()))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil, fmt.Errorf("package %s: manifest: %w", c, ErrNotFound)
	}
	if err != nil {
		return nil, nil, err
	}
	b, err := item.ValueCopy(nil)
	if err != nil {
		return nil, nil, err
	}
	m, err := metadata.DecodeManifest(b, lim)
	if err != nil {
		return nil, nil, fmt.Errorf("package %s: stored manifest: %w: %w", c, ErrBadManifest, err)
	}
	return m, b, nil
}

// SetKeep marks a package kept (GC leaves it even without installs) or not.
// BeginPackage sets it; RemovePackage clears it with the package.
func (s *Store) SetKeep(manifestCID cid.Cid, keep bool) error {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return ErrClosed
	}
	key := []byte(prefixPackage + manifestCID.String())
	return s.update(func(txn *badger.Txn) error {
		var rec pkgRecord
		found, err := getJSON(txn, key, &rec)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("package %s: %w", manifestCID, ErrNotFound)
		}
		rec.Keep = keep
		return setJSON(txn, key, &rec)
	})
}

// RemovePackage removes a package's record, manifest and tree at once. It
// refuses with ErrInUse while any VM install references it or a mount (a
// view) uses its tree. Its objects and partial files are left to GC, which
// removes those no other package uses.
func (s *Store) RemovePackage(manifestCID cid.Cid) error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.isClosed() {
		return ErrClosed
	}
	key := manifestCID.String()
	var vms []string
	var found bool
	err := s.db.View(func(txn *badger.Txn) (err error) {
		if found, err = exists(txn, []byte(prefixPackage+key)); err != nil || !found {
			return err
		}
		return scanKeys(txn, prefixRef+key+"/", func(k []byte, _ *badger.Item) error {
			vms = append(vms, strings.TrimPrefix(string(k), prefixRef+key+"/"))
			return nil
		})
	})
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("package %s: %w", manifestCID, ErrNotFound)
	}
	if len(vms) > 0 {
		return fmt.Errorf("package %s: %w: installed in VMs %s", manifestCID, ErrInUse, strings.Join(vms, ", "))
	}
	if err := s.refuseMounted(key); err != nil {
		return err
	}
	if _, err := s.dropPackage(key); err != nil {
		return fmt.Errorf("package %s: %w", manifestCID, err)
	}
	s.log.Info("package removed", "manifest", manifestCID)
	return nil
}

// deletePackageTxn deletes a package's records (not its tree).
func deletePackageTxn(txn *badger.Txn, key string) error {
	var rec pkgRecord
	found, err := getJSON(txn, []byte(prefixPackage+key), &rec)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("package %s: %w", key, ErrNotFound)
	}
	item, err := txn.Get(nameKey(rec.Name, rec.Version))
	if err == nil {
		if v, err := item.ValueCopy(nil); err == nil && string(v) == key {
			if err := txn.Delete(nameKey(rec.Name, rec.Version)); err != nil {
				return err
			}
		}
	}
	if err := txn.Delete([]byte(prefixManifest + key)); err != nil {
		return err
	}
	return txn.Delete([]byte(prefixPackage + key))
}

// dropDownload forgets the in-memory download of a removed package.
func (s *Store) dropDownload(key string) {
	s.mu.Lock()
	d := s.downloads[key]
	delete(s.downloads, key)
	s.mu.Unlock()
	if d != nil {
		d.removed.Store(true)
		d.release()
	}
}

// AddInstall records that VM vm uses the package, seen at into through a
// view of the given mode. An install pins the package: neither GC nor
// RemovePackage removes it. Adding the same install again updates it.
func (s *Store) AddInstall(vm string, manifestCID cid.Cid, into string, mode string) error {
	if err := checkVM(vm); err != nil {
		return err
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return ErrClosed
	}
	key := manifestCID.String()
	return s.update(func(txn *badger.Txn) error {
		ok, err := exists(txn, []byte(prefixPackage+key))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("install %s in VM %s: package %w", manifestCID, vm, ErrNotFound)
		}
		rec := installRecord{VM: vm, ManifestCID: key, Into: into, Mode: mode, Created: time.Now().UTC()}
		if err := setJSON(txn, installKey(vm, key), &rec); err != nil {
			return err
		}
		return txn.Set([]byte(prefixRef+key+"/"+vm), []byte{})
	})
}

// RemoveInstall drops VM vm's install of the package.
func (s *Store) RemoveInstall(vm string, manifestCID cid.Cid) error {
	if err := checkVM(vm); err != nil {
		return err
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return ErrClosed
	}
	key := manifestCID.String()
	return s.update(func(txn *badger.Txn) error {
		ok, err := exists(txn, installKey(vm, key))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("install of %s in VM %s: %w", manifestCID, vm, ErrNotFound)
		}
		if err := txn.Delete(installKey(vm, key)); err != nil {
			return err
		}
		return txn.Delete([]byte(prefixRef + key + "/" + vm))
	})
}

// Installs lists VM vm's installs; vm "" lists every VM's.
func (s *Store) Installs(vm string) ([]Install, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	prefix := prefixInstall
	if vm != "" {
		prefix += vm + "\x00"
	}
	var out []Install
	err := s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, prefix, func(k []byte, item *badger.Item) error {
			var r installRecord
			if err := jsonUnmarshal(item, &r); err != nil {
				return err
			}
			c, err := cid.Decode(r.ManifestCID)
			if err != nil {
				return fmt.Errorf("install record %q: %w", k, err)
			}
			out = append(out, Install{VM: r.VM, ManifestCID: c, Into: r.Into, Mode: r.Mode, Created: r.Created})
			return nil
		})
	})
	return out, err
}

func installKey(vm, key string) []byte { return []byte(prefixInstall + vm + "\x00" + key) }

func checkVM(vm string) error {
	if vm == "" || len(vm) > 255 || strings.ContainsAny(vm, "/\x00") {
		return fmt.Errorf("VM id %q: %w: want 1 to 255 bytes, no '/' or NUL", vm, ErrInvalid)
	}
	return nil
}

// ReadChunk returns chunk c from an object or from a partial file where it
// is recorded present, re-verified against c. ErrNotFound if the store does
// not hold it (or holds only bytes that no longer verify).
func (s *Store) ReadChunk(c cid.Cid) ([]byte, error) { return s.ReadChunkInto(c, nil) }

// ReadChunkInto is ReadChunk into buf when it has the capacity (and, for
// direct I/O, the alignment); it returns the chunk, in buf or not.
func (s *Store) ReadChunkInto(c cid.Cid, buf []byte) ([]byte, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	if l, ok := s.places.get(c); ok {
		// Whatever hashes to c is c: a stale place fails the check.
		if data, err := s.readPlace(c, l, buf); err == nil {
			return data, nil
		}
		s.places.drop(c)
	}
	cs := c.String()
	type found struct {
		chunkPlace
		rec *objRecord // the object's record, nil for a partial file
	}
	var locs []found
	err := s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, prefixChunkLoc+cs+"/", func(k []byte, item *badger.Item) error {
			_, id, ok := splitChunkLocKey(k)
			if !ok {
				return nil
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			off, n, ok := decodeLoc(v)
			if !ok {
				return nil
			}
			recs, err := findObject(txn, hashOfPartialID(id))
			if err != nil {
				return err
			}
			for i := range recs {
				r := &recs[i]
				locs = append(locs, found{chunkPlace{path: s.ObjectPath(r.Hash, os.FileMode(r.Perm)), off: off, n: n}, r})
			}
			if len(recs) == 0 {
				if ok, err := exists(txn, presenceKey(id, cs)); err != nil {
					return err
				} else if ok {
					locs = append(locs, found{chunkPlace: chunkPlace{path: s.partialPath(id), off: off, n: n, partial: true}})
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for _, l := range locs {
		data, err := s.readPlace(c, l.chunkPlace, buf)
		if err != nil {
			if errors.Is(err, metadata.ErrHashMismatch) {
				s.log.Warn("stored chunk fails verification", "chunk", c, "path", l.path)
			} else {
				s.log.Debug("read chunk", "chunk", c, "path", l.path, "err", err)
			}
			continue
		}
		if l.rec != nil {
			// The rest of the object's chunks are served from it too:
			// one index lookup (one record decoded) per object, not per chunk.
			s.places.putObject(l.path, l.rec)
			s.places.put(c, l.chunkPlace)
		}
		return data, nil
	}
	return nil, fmt.Errorf("chunk %s: %w", c, ErrNotFound)
}

// readPlace reads chunk c at l and checks it against c, unless l is in an
// object this process verified in full and whose file has not been written
// since (same inode, size and modification time: placeCache.verified).
func (s *Store) readPlace(c cid.Cid, l chunkPlace, buf []byte) ([]byte, error) {
	data, st, err := s.readChunkAt(l.path, l.off, l.n, buf)
	if err != nil {
		return nil, err
	}
	if !l.partial && s.places.unchanged(l.path, st) {
		return data, nil
	}
	if err := metadata.VerifyCID(c, data); err != nil {
		return nil, err
	}
	return data, nil
}

// chunkPlace is where a chunk's bytes are: a file, an offset, a length.
type chunkPlace struct {
	path    string
	off, n  int64
	partial bool
}

// placeCache remembers where ReadChunk found chunks in objects, so that
// serving them skips the index (an iterator seek, an object record
// decoded: most of ReadChunk's CPU for a 4 KiB chunk, and 0.6 ms for a
// record of 1,000 chunks). It needs no invalidation: ReadChunk checks what
// it reads against the CID, and a place that no longer holds the chunk
// fails and is looked up again.
//
// It also remembers the objects this process verified in full as it stored
// them (every chunk hashed when it arrived, the file untouched by anyone
// else since: see prepareObject) with the file's stamp then. A chunk read
// from such an object whose file still has that inode, size and
// modification time is not hashed again before it is uploaded: a write or
// truncate by anyone moves the modification time (hard links into package
// trees and views move only the change time, which is why that is not
// compared). What it does not catch is someone setting the time back on
// purpose, or the disk returning other bytes than were written (bit rot);
// the receiver's own check still keeps such a chunk out of its store (and
// bans this host for that package), as a BitTorrent peer would. A restart
// forgets it all: objects from an earlier run are checked chunk by chunk.
// Bounded: each map is emptied when full.
type placeCache struct {
	mu   sync.Mutex
	m    map[cid.Cid]chunkPlace
	good map[string]fileStamp // object path -> its stamp when verified
}

const (
	maxPlaces   = 1 << 16
	maxVerified = 1 << 14
)

func (pc *placeCache) get(c cid.Cid) (chunkPlace, bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	l, ok := pc.m[c]
	return l, ok
}

func (pc *placeCache) put(c cid.Cid, l chunkPlace) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.m == nil || len(pc.m) >= maxPlaces {
		pc.m = make(map[cid.Cid]chunkPlace)
	}
	pc.m[c] = l
}

// putObject records the place of every chunk of the object at path (its
// chunks at multiples of the chunk size), unless it has a quarter of the
// cache's room or more.
func (pc *placeCache) putObject(path string, rec *objRecord) {
	if len(rec.Chunks) >= maxPlaces/4 || rec.ChunkSize <= 0 {
		return
	}
	places := make([]cid.Cid, len(rec.Chunks))
	for j, cs := range rec.Chunks {
		c, err := cid.Decode(cs)
		if err != nil {
			return
		}
		places[j] = c
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.m == nil || len(pc.m)+len(places) > maxPlaces {
		pc.m = make(map[cid.Cid]chunkPlace)
	}
	for j, c := range places {
		off := int64(j) * rec.ChunkSize
		pc.m[c] = chunkPlace{path: path, off: off, n: min(rec.ChunkSize, rec.Size-off)}
	}
}

func (pc *placeCache) drop(c cid.Cid) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	delete(pc.m, c)
}

// verified records that the object file at path holds exactly its
// content while its stamp is st.
func (pc *placeCache) verified(path string, st fileStamp) {
	if !st.ok {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.good == nil || len(pc.good) >= maxVerified {
		pc.good = make(map[string]fileStamp)
	}
	pc.good[path] = st
}

// unchanged reports whether the object file at path was verified and
// has not been written since.
func (pc *placeCache) unchanged(path string, st fileStamp) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	v, ok := pc.good[path]
	return ok && v.sameContent(st)
}

// HasChunk reports whether the store holds chunk c, in an object or
// recorded present in a partial file, without reading it. ReadChunk still
// re-verifies the bytes before it returns them.
func (s *Store) HasChunk(c cid.Cid) bool {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return false
	}
	cs := c.String()
	found := false
	_ = s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, prefixChunkLoc+cs+"/", func(k []byte, _ *badger.Item) error {
			if found {
				return nil
			}
			_, id, ok := splitChunkLocKey(k)
			if !ok {
				return nil
			}
			recs, err := findObject(txn, hashOfPartialID(id))
			if err != nil {
				return err
			}
			if len(recs) > 0 {
				found = true
				return nil
			}
			ok, err = exists(txn, presenceKey(id, cs))
			found = err == nil && ok
			return err
		})
	})
	return found
}
