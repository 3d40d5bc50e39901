package share

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// BeginPackage registers NAME@VERSION with the given manifest and returns
// its Partial. It checks that manifestBytes hash to manifestCID and that
// they decode and validate (metadata.DecodeManifest with the store's
// limits), stores them in the index, and marks the package kept (see
// SetKeep). It is idempotent: asking again for a package being filled
// returns the same Partial; asking for a committed one returns a Partial
// with nothing missing whose Commit does nothing.
func (s *Store) BeginPackage(name, version string, manifestCID cid.Cid, manifestBytes []byte) (*Partial, error) {
	if name == "" || version == "" || hasNUL(name) || hasNUL(version) {
		return nil, fmt.Errorf("package %q@%q: %w: empty name or version, or NUL", name, version, ErrInvalid)
	}
	if got := metadata.SumCID(manifestBytes); !got.Equals(manifestCID) {
		return nil, fmt.Errorf("package %s@%s: manifest %s: %w: %w: bytes hash to %s", name, version, manifestCID, ErrBadManifest, metadata.ErrHashMismatch, got)
	}
	m, err := metadata.DecodeManifest(manifestBytes, s.lim)
	if err != nil {
		return nil, fmt.Errorf("package %s@%s: %w: %w", name, version, ErrBadManifest, err)
	}
	key := manifestCID.String()
	defer s.lockBegin(key)()
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	// The manifest and its name are in files before the index names
	// them, not yet synced (partialFiles): Open writes them again from
	// the index if a power cut lost them, and they are on disk before
	// the package is complete, for Rebuild.
	if err := s.saveManifest(manifestCID, manifestBytes, name, version, false); err != nil {
		return nil, fmt.Errorf("package %s@%s: %w", name, version, err)
	}
	err = s.updateLazy(func(txn *badger.Txn) error {
		var rec pkgRecord
		found, err := getJSON(txn, []byte(prefixPackage+key), &rec)
		if err != nil {
			return err
		}
		if !found {
			rec = pkgRecord{Name: name, Version: version, State: StatePartial, Created: time.Now().UTC()}
			if err := txn.Set([]byte(prefixManifest+key), manifestBytes); err != nil {
				return err
			}
		}
		rec.addName(name, version)
		rec.Keep = true
		if err := setJSON(txn, []byte(prefixPackage+key), &rec); err != nil {
			return err
		}
		return txn.Set(nameKey(name, version), []byte(key))
	})
	if err != nil {
		return nil, fmt.Errorf("package %s@%s: record: %w", name, version, err)
	}
	s.mu.Lock()
	d := s.filling[key]
	s.mu.Unlock()
	if d != nil {
		return d, nil
	}
	d, err = s.newPartial(manifestCID, m, name, version)
	if err != nil {
		return nil, fmt.Errorf("package %s@%s (%s): %w", name, version, manifestCID, err)
	}
	s.mu.Lock()
	s.filling[key] = d
	s.mu.Unlock()
	s.log.Info("package download started", "package", name+"@"+version, "manifest", manifestCID, "bytes", d.total)
	return d, nil
}

// beginLock is the lock of one package's BeginPackage calls, held or
// awaited by n of them.
type beginLock struct {
	mu sync.Mutex
	n  int
}

// lockBegin locks BeginPackage for the package key and returns the unlock.
func (s *Store) lockBegin(key string) func() {
	s.beginMu.Lock()
	if s.beginning == nil {
		s.beginning = make(map[string]*beginLock)
	}
	l := s.beginning[key]
	if l == nil {
		l = &beginLock{}
		s.beginning[key] = l
	}
	l.n++
	s.beginMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.beginMu.Lock()
		if l.n--; l.n == 0 {
			delete(s.beginning, key)
		}
		s.beginMu.Unlock()
	}
}

func hasNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// Partial is a package the store holds in part (StatePartial) while its
// chunks are written into it, until Commit makes it complete. Its methods
// are safe for concurrent use; in particular many goroutines may call PutChunk at
// once, with the same chunk or different ones.
type Partial struct {
	s       *Store
	cid     cid.Cid
	m       *metadata.Manifest
	name    string
	version string
	total   int64
	files   []*dlFile             // distinct files, in manifest order
	uses    map[cid.Cid][]*dlFile // the files a chunk belongs to
	refs    map[cid.Cid]metadata.ChunkRef
	commit  sync.Mutex  // serialises Commit
	removed atomic.Bool // RemovePackage dropped the package
}

// dlFile is one distinct file (hash and size) of a Partial.
type dlFile struct {
	id    string
	entry int          // the first entry holding this file
	count int          // how many entries hold it
	size  int64        // bytes
	pf    *partialFile // nil when the object already existed
	// released: the download no longer holds pf (guarded by Store.mu).
	released bool
}

// partialFile is a file being assembled under partial/, shared by every
// download that needs it.
type partialFile struct {
	id        string
	hash      string
	size      int64
	chunkSize int64
	v         ObjectVariant // what the object becomes
	chunks    []cid.Cid
	digests   [][]byte
	index     map[cid.Cid][]int // chunk → its indices in the file
	refs      int               // downloads holding it; guarded by Store.mu

	mu sync.Mutex // guards the fields below
	// fresh: the file is not on disk yet (or void); it is created at its
	// size when first opened (Store.fds), which sets createdUnsynced until
	// a commit group has synced partial/.
	fresh           bool
	createdUnsynced bool
	finalizing      bool             // finalizeBatch owns the file
	present         map[cid.Cid]bool // durably written and recorded
	have            int64            // bytes of the present chunks
	inflight        map[cid.Cid]chan struct{}
	done            bool // the object is in objects/ and recorded

	// wmu serialises this process's writes to the file with the stamps
	// taken around them (it nests inside no other lock but the fd pin).
	wmu sync.Mutex
	// stamp is the file as this process last left it (after its last
	// write); untrusted: something else may have written to the file
	// (its stamp moved between two of our writes, or after the last), or
	// it holds chunks recorded by an earlier process. Finalize trusts a
	// file whose every chunk this process verified in memory and wrote,
	// and which nobody touched since, without reading it back; any other
	// file is read back and every chunk checked.
	stamp     fileStamp
	untrusted bool
}

func (pf *partialFile) chunkLen(j int) int64 {
	off := int64(j) * pf.chunkSize
	if off+pf.chunkSize > pf.size {
		return pf.size - off
	}
	return pf.chunkSize
}

func (pf *partialFile) complete() bool { return len(pf.present) == len(pf.index) }

// newPartial builds the in-memory state of a Partial: for every distinct
// file, nothing if its object exists, else its partial file with the chunks
// already recorded present.
func (s *Store) newPartial(c cid.Cid, m *metadata.Manifest, name, version string) (*Partial, error) {
	d := &Partial{
		s: s, cid: c, m: m, name: name, version: version,
		total: m.TotalSize(),
		uses:  make(map[cid.Cid][]*dlFile),
		refs:  make(map[cid.Cid]metadata.ChunkRef),
	}
	byID := make(map[string]*dlFile)
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != metadata.TypeFile {
			continue
		}
		id := partialID(e.Hash, e.Size)
		if f := byID[id]; f != nil {
			f.count++
			continue
		}
		pf, err := s.acquirePartial(id, e, m.ChunkSize)
		if err != nil {
			d.release()
			return nil, err
		}
		f := &dlFile{id: id, entry: i, count: 1, size: e.Size, pf: pf}
		byID[id] = f
		d.files = append(d.files, f)
	}
	for _, r := range m.ChunkRefs() {
		f := byID[partialID(m.Entries[r.Entry].Hash, m.Entries[r.Entry].Size)]
		if us := d.uses[r.CID]; len(us) == 0 || us[len(us)-1] != f {
			d.uses[r.CID] = append(us, f)
		}
		if _, ok := d.refs[r.CID]; !ok {
			d.refs[r.CID] = r
		}
	}
	// A crash after the last presence record but before the move into
	// objects/ leaves a complete partial file: finish it now.
	// (Empty files are complete at once.) All of them in one batch.
	var fin []*partialFile
	for _, f := range d.files {
		if f.pf == nil {
			continue
		}
		f.pf.mu.Lock()
		if !f.pf.done && !f.pf.finalizing && f.pf.complete() {
			f.pf.finalizing = true
			fin = append(fin, f.pf)
		}
		f.pf.mu.Unlock()
	}
	if len(fin) > 0 {
		var errs []error
		for _, err := range s.finalizeBatch(fin) {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			d.release()
			return nil, err
		}
	}
	return d, nil
}

// release drops the download's hold on its partial files.
// Lock order is pf.mu before s.mu (finalize), so files are closed after
// s.mu is released.
func (d *Partial) release() {
	s := d.s
	var unused []*partialFile
	s.mu.Lock()
	for _, f := range d.files {
		pf := f.pf
		if pf == nil || f.released {
			continue
		}
		f.released = true
		if pf.refs--; pf.refs > 0 {
			continue
		}
		if s.partials[pf.id] == pf {
			delete(s.partials, pf.id)
		}
		unused = append(unused, pf)
	}
	s.mu.Unlock()
	for _, pf := range unused {
		s.fds.drop(pf)
	}
}

// acquirePartial returns the shared partial file for id, opening it if
// needed, or nil if the object already exists.
func (s *Store) acquirePartial(id string, e *metadata.Entry, chunkSize int64) (*partialFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if pf := s.partials[id]; pf != nil {
		pf.refs++
		return pf, nil
	}
	var recs []objRecord
	if err := s.db.View(func(txn *badger.Txn) (err error) {
		recs, err = findObject(txn, e.Hash)
		return err
	}); err != nil {
		return nil, err
	}
	if len(recs) > 0 {
		return nil, nil
	}
	if s.adopt(e, chunkSize) {
		return nil, nil
	}
	pf, err := s.openPartial(id, e, chunkSize)
	if err != nil {
		return nil, err
	}
	pf.refs = 1
	s.partials[id] = pf
	return pf, nil
}

// adopt records an object file that was moved into objects/ just before a
// crash, before its index record was written, if it verifies; a file that
// does not verify is removed.
func (s *Store) adopt(e *metadata.Entry, chunkSize int64) bool {
	for _, v := range []ObjectVariant{EntryVariant(e), variantOf(layoutReadOnly, e), {Perm: 0o444}} {
		p := s.ObjectPath(e.Hash, v)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		rec := objRecord{Hash: e.Hash, Size: e.Size, Perm: uint32(v.Perm), UID: v.UID, GID: v.GID, ChunkSize: chunkSize, Chunks: e.Chunks}
		if err := verifyObjectFile(p, &rec); err != nil {
			s.log.Warn("removing unindexed object that fails verification", "object", p, "err", err)
			_ = os.Remove(p)
			continue
		}
		if err := s.recordObject(&rec, partialID(e.Hash, e.Size)); err != nil {
			s.log.Warn("record adopted object", "object", p, "err", err)
			return false
		}
		s.log.Info("adopted unindexed object", "object", p)
		return true
	}
	return false
}

func (s *Store) openPartial(id string, e *metadata.Entry, chunkSize int64) (*partialFile, error) {
	pf := &partialFile{
		id: id, hash: e.Hash, size: e.Size, chunkSize: chunkSize, v: EntryVariant(e),
		index:    make(map[cid.Cid][]int),
		present:  make(map[cid.Cid]bool),
		inflight: make(map[cid.Cid]chan struct{}),
	}
	for j, cs := range e.Chunks {
		c, dg, err := metadata.ParseCID(cs)
		if err != nil {
			return nil, fmt.Errorf("file %s: %w", e.Path, err)
		}
		pf.chunks = append(pf.chunks, c)
		pf.digests = append(pf.digests, dg)
		pf.index[c] = append(pf.index[c], j)
	}
	// The file is opened only to write or finalize (Store.fds), and
	// created lazily at its first chunk: starting a download of many
	// files costs no fsync and holds no descriptor.
	st, err := os.Lstat(s.partialPath(id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("partial file %s: %w", id, err)
	}
	if err != nil || !st.Mode().IsRegular() || st.Size() != e.Size {
		// Records without their data (or with a file of the wrong size)
		// are void.
		if err := s.deletePrefix([]byte(prefixPresence + id + "/")); err != nil {
			return nil, fmt.Errorf("partial file %s: %w", id, err)
		}
		pf.fresh = true
		return pf, nil
	}
	// Chunks an earlier process recorded are checked again at finalize.
	pf.untrusted = true
	err = s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, prefixPresence+id+"/", func(k []byte, _ *badger.Item) error {
			_, cs, ok := splitPresenceKey(k)
			if !ok {
				return nil
			}
			c, err := cid.Decode(cs)
			if err != nil {
				return nil
			}
			if idx := pf.index[c]; len(idx) > 0 && !pf.present[c] {
				pf.present[c] = true
				for _, j := range idx {
					pf.have += pf.chunkLen(j)
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("partial file %s: %w", id, err)
	}
	return pf, nil
}

// Close ends a download that will not be committed (it failed): it is no
// longer open, so that a GC with GCOptions.Partial may drop the package,
// and its partial files are released. What it stored stays for the next
// BeginPackage to resume. Using the Partial after Close fails; Close
// after Commit does nothing.
func (d *Partial) Close() {
	s := d.s
	key := d.cid.String()
	s.mu.Lock()
	if s.filling[key] != d {
		s.mu.Unlock()
		return
	}
	delete(s.filling, key)
	s.mu.Unlock()
	d.removed.Store(true)
	d.release()
}

// ManifestCID returns the CID of the package's manifest.
func (d *Partial) ManifestCID() cid.Cid { return d.cid }

// Manifest returns the package's manifest. The caller must not modify it.
func (d *Partial) Manifest() *metadata.Manifest { return d.m }

// Missing lists the distinct chunks still needed, each once, in manifest
// order. A file whose object exists (from any package) needs none, nor does
// a chunk recorded present in its partial file.
func (d *Partial) Missing() []metadata.ChunkRef {
	seen := make(map[cid.Cid]bool)
	var out []metadata.ChunkRef
	for _, f := range d.files {
		pf := f.pf
		if pf == nil {
			continue
		}
		pf.mu.Lock()
		if !pf.done {
			for j, c := range pf.chunks {
				if pf.present[c] || seen[c] {
					continue
				}
				seen[c] = true
				out = append(out, metadata.ChunkRef{CID: c, Entry: f.entry, Index: j, Offset: int64(j) * pf.chunkSize, Length: pf.chunkLen(j)})
			}
		}
		pf.mu.Unlock()
	}
	return out
}

// Have reports whether the store holds chunk c of this package (in an
// object or recorded present in a partial file), so that it can be served.
func (d *Partial) Have(c cid.Cid) bool {
	for _, f := range d.uses[c] {
		pf := f.pf
		if pf == nil {
			return true
		}
		pf.mu.Lock()
		ok := pf.done || pf.present[c]
		pf.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// Bytes returns how many bytes of the package's files the store holds and
// the total (metadata.Manifest.TotalSize).
func (d *Partial) Bytes() (have, total int64) {
	for _, f := range d.files {
		n := f.size
		if pf := f.pf; pf != nil {
			pf.mu.Lock()
			if !pf.done {
				n = pf.have
			}
			pf.mu.Unlock()
		}
		have += n * int64(f.count)
	}
	return have, d.total
}

// PutChunk stores chunk c. It first checks data against c and the length
// the manifest gives it; a chunk that fails is refused with ErrChunkCorrupt
// and nothing is written. Otherwise the data is written at every offset of
// every partial file that uses it and made durable, and only then recorded
// present. A file that gets its last chunk is verified whole and moved into
// objects/. Storing a chunk already present does nothing.
func (d *Partial) PutChunk(c cid.Cid, data []byte) error {
	ref, ok := d.refs[c]
	if !ok {
		return fmt.Errorf("package %s: chunk %s: %w", d.cid, c, ErrUnknownChunk)
	}
	if err := ref.Verify(data); err != nil {
		return fmt.Errorf("package %s: %w: %w", d.cid, ErrChunkCorrupt, err)
	}
	return d.putVerified(c, data)
}

// PutVerifiedChunk is PutChunk for a caller that has already checked data
// against c (swarm.VerifiedChunkSink): it skips hashing it again (the
// length is still checked). The caller vouches for the bytes: a file whose
// chunks were all verified in memory and written by this process, and
// that nothing else touched since, becomes an object without being read
// back (see partialFile.stamp). ReadChunk still re-verifies what it
// serves.
func (d *Partial) PutVerifiedChunk(c cid.Cid, data []byte) error {
	if _, ok := d.refs[c]; !ok {
		return fmt.Errorf("package %s: chunk %s: %w", d.cid, c, ErrUnknownChunk)
	}
	return d.putVerified(c, data)
}

// usable reports why d may not be written or committed: the store is
// closed, or RemovePackage dropped the package. The caller holds
// d.s.life.
func (d *Partial) usable() error {
	if d.s.isClosed() {
		return ErrClosed
	}
	if d.removed.Load() {
		return fmt.Errorf("package %s: %w: removed", d.cid, ErrNotFound)
	}
	return nil
}

func (d *Partial) putVerified(c cid.Cid, data []byte) error {
	s := d.s
	s.life.RLock()
	defer s.life.RUnlock()
	if err := d.usable(); err != nil {
		return err
	}
	var errs []error
	for _, f := range d.uses[c] {
		if f.pf == nil {
			continue
		}
		if err := s.put(f.pf, c, data); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// put writes chunk c into pf unless it is there already. Concurrent puts of
// one chunk write it once: the later ones wait for the first. It returns
// once the chunk is durable and recorded (by a commit group).
func (s *Store) put(pf *partialFile, c cid.Cid, data []byte) error {
	for {
		pf.mu.Lock()
		if pf.done {
			pf.mu.Unlock()
			return nil
		}
		if pf.present[c] {
			fin := pf.complete() && !pf.finalizing // a previous finalize failed: retry
			if fin {
				pf.finalizing = true
			}
			pf.mu.Unlock()
			if fin {
				return s.finalizeBatch([]*partialFile{pf})[pf]
			}
			return nil
		}
		if ch := pf.inflight[c]; ch != nil {
			pf.mu.Unlock()
			<-ch
			continue
		}
		ch := make(chan struct{})
		pf.inflight[c] = ch
		pf.mu.Unlock()

		err := s.writeChunk(pf, c, data)

		pf.mu.Lock()
		delete(pf.inflight, c)
		close(ch)
		pf.mu.Unlock()
		return err
	}
}

// writeChunk writes data at every index of c in pf, then has a commit
// group make it durable and record it present (and finalize the file if
// that completes it).
func (s *Store) writeChunk(pf *partialFile, c cid.Cid, data []byte) error {
	idx := pf.index[c]
	var n int64
	for _, j := range idx {
		if want := pf.chunkLen(j); int64(len(data)) != want {
			return fmt.Errorf("file %s: chunk %s at index %d: %w: %w: %d bytes, want %d", pf.hash, c, j, ErrChunkCorrupt, metadata.ErrHashMismatch, len(data), want)
		}
	}
	release, err := s.claimSpace(int64(len(data)) * int64(len(idx)))
	if err != nil {
		return fmt.Errorf("partial file %s: write chunk %s: %w", pf.id, c, err)
	}
	f, err := s.fds.get(pf)
	if err != nil {
		release()
		return err
	}
	offs := make([]int64, len(idx))
	for k, j := range idx {
		offs[k] = int64(j) * pf.chunkSize
	}
	var df *os.File
	if s.directOK(len(data), offs...) {
		df = s.fds.getDirect(pf)
	}
	pf.wmu.Lock()
	if pf.stamp.ok && !fstamp(f).same(pf.stamp) {
		pf.untrusted = true // written to by someone else since our last write
	}
	err = nil
	if df != nil {
		if err = writeDirect(df, data, offs); isDirectErr(err) {
			s.noDirect.Store(true)
			err = nil
			df = nil
		}
	}
	for _, off := range offs {
		if df != nil || err != nil {
			break
		}
		_, err = f.WriteAt(data, off)
	}
	release() // written: the file system counts it now
	if err != nil {
		pf.wmu.Unlock()
		s.fds.put(pf)
		return fmt.Errorf("partial file %s: write chunk %s: %w", pf.id, c, err)
	}
	n = int64(len(data)) * int64(len(offs))
	pf.stamp = fstamp(f)
	if !pf.stamp.ok {
		pf.untrusted = true
	}
	pf.wmu.Unlock()
	s.fds.put(pf)
	return s.cm.submit(&commitReq{pf: pf, c: c, n: n, off: int64(idx[0]) * pf.chunkSize, ln: int64(len(data))})
}

// placeObject atomically moves a verified, synced, read-only file src to
// dst under objects/ without ever replacing a good object: if dst exists
// and is indexed or verifies, src is dropped instead.
func (s *Store) placeObject(src, dst string, rec *objRecord) error {
	if err := s.moveObject(src, dst, rec); err != nil {
		return err
	}
	if err := s.syncDir(filepath.Dir(dst)); err != nil {
		return err
	}
	return s.syncDir(filepath.Dir(src))
}

// moveObject is placeObject without making the move durable.
func (s *Store) moveObject(src, dst string, rec *objRecord) error {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("object %s: %w", rec.Hash, err)
	}
	err := renameNoReplace(src, dst)
	if errors.Is(err, fs.ErrExist) {
		var indexed bool
		if verr := s.db.View(func(txn *badger.Txn) (err error) {
			indexed, err = exists(txn, []byte(prefixObject+filepath.Base(dst)))
			return err
		}); verr != nil {
			return verr
		}
		if indexed || verifyObjectFile(dst, rec) == nil {
			err = os.Remove(src)
		} else {
			s.log.Warn("replacing unindexed object that fails verification", "object", dst)
			err = os.Rename(src, dst)
		}
	}
	if err != nil {
		return fmt.Errorf("object %s: %w", rec.Hash, err)
	}
	return nil
}

// recordObject indexes an object, just verified, and where its chunks are.
func (s *Store) recordObject(rec *objRecord, id string) error {
	name := objectName(rec.Hash, rec.variant())
	if rec.Ino == 0 {
		rec.setStamp(lstamp(s.ObjectPath(rec.Hash, rec.variant())))
	}
	if rec.Verified == 0 {
		rec.Verified = s.now().UnixNano()
	}
	err := s.update(func(txn *badger.Txn) error {
		if err := setJSON(txn, []byte(prefixObject+name), rec); err != nil {
			return err
		}
		return s.markUnsynced(txn, prefixUnsyncedObject, name)
	})
	if err != nil {
		return fmt.Errorf("object %s: record: %w", name, err)
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	seen := make(map[string]bool)
	for j, c := range rec.Chunks {
		if seen[c] {
			continue
		}
		seen[c] = true
		off := int64(j) * rec.ChunkSize
		n := min(rec.ChunkSize, rec.Size-off)
		if err := wb.Set(chunkLocKey(c, id), encodeLoc(off, n)); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// checkContent reads size bytes of r in chunkSize pieces and compares
// piece j with the sha2-256 digest want[j]. It returns the digests read and
// the indices that differ.
func checkContent(r io.ReaderAt, size, chunkSize int64, want [][]byte) (digests [][]byte, bad []int, err error) {
	if n := (size + chunkSize - 1) / chunkSize; n != int64(len(want)) {
		return nil, nil, fmt.Errorf("%w: %d chunks for %d bytes", ErrObjectCorrupt, len(want), size)
	}
	buf := make([]byte, min(chunkSize, max(size, 1)))
	for j := range want {
		off := int64(j) * chunkSize
		n := min(chunkSize, size-off)
		if _, err := r.ReadAt(buf[:n], off); err != nil {
			return nil, nil, fmt.Errorf("read at %d: %w", off, err)
		}
		sum := sha256.Sum256(buf[:n])
		digests = append(digests, sum[:])
		if string(sum[:]) != string(want[j]) {
			bad = append(bad, j)
		}
	}
	return digests, bad, nil
}

// verifyObjectFile checks that the file at p is the object rec describes:
// size, permission (never setuid, setgid or sticky), owner and content.
func verifyObjectFile(p string, rec *objRecord) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("object %s: %w: not a regular file", p, ErrObjectCorrupt)
	}
	if st.Size() != rec.Size {
		return fmt.Errorf("object %s: %w: %d bytes, want %d", p, ErrObjectCorrupt, st.Size(), rec.Size)
	}
	if perm := st.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky); perm != os.FileMode(rec.Perm) {
		return fmt.Errorf("object %s: %w: mode %#o, want %#o", p, ErrObjectCorrupt, perm, rec.Perm)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && !sameOwner(sys.Uid, sys.Gid, rec.UID, rec.GID) {
		return fmt.Errorf("object %s: %w: owner %d:%d, want %d:%d", p, ErrObjectCorrupt, sys.Uid, sys.Gid, rec.UID, rec.GID)
	}
	want := make([][]byte, len(rec.Chunks))
	for j, cs := range rec.Chunks {
		_, dg, err := metadata.ParseCID(cs)
		if err != nil {
			return fmt.Errorf("object %s: %w", p, err)
		}
		want[j] = dg
	}
	digests, bad, err := checkContent(f, rec.Size, rec.ChunkSize, want)
	if err != nil {
		return fmt.Errorf("object %s: %w", p, err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("object %s: %w: chunk %d (%s) differs", p, ErrObjectCorrupt, bad[0], rec.Chunks[bad[0]])
	}
	if got := metadata.FileHash(digests).String(); got != rec.Hash {
		return fmt.Errorf("object %s: %w: hashes to %s", p, ErrObjectCorrupt, got)
	}
	return nil
}

// jsonUnmarshal is used where a record is read through an iterator.
func jsonUnmarshal(item *badger.Item, v any) error {
	return item.Value(func(b []byte) error {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("index record %q: %w", item.Key(), err)
		}
		return nil
	})
}

var _ metadata.ChunkSink = (*Partial)(nil)
