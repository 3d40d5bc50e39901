package share

import (
	"container/list"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// Group commit.
//
// PutChunk verifies a chunk and writes it into its partial file (pwrite, no
// sync), then hands it to the store's committer and waits. The committer
// takes every chunk pending at that moment as one group and, in order:
//
//  1. makes the data durable: fdatasync of the one partial file it wrote
//     to, or one syncfs if it wrote to several or created any (lazily, at
//     their first chunk), which also makes their entries in partial/
//     durable;
//  2. records the presence of every chunk of the group in ONE badger
//     transaction (synced);
//  3. finalizes the files the group completed (see finalizeBatch: verify,
//     chmod, rename into objects/, one syncfs, one transaction).
//
// A chunk's presence is thus recorded only after its bytes (and the
// directory entry of its file) are durable, and PutChunk returns only once
// the record is durable. Concurrent PutChunks share the syncs; a lone
// caller pays one sync and one transaction for its chunk (and the
// finalizing of the file its chunk completes). With checkpoints
// (checkpoint.go) the group makes no sync and its transaction is not
// synced: the next checkpoint makes both durable, and a placed object
// carries a w/ key until then.

// maxGroup bounds the chunks of one group (and so one transaction).
const maxGroup = 512

// maxOpenPartials bounds the partial files a store holds open.
const maxOpenPartials = 64

type commitReq struct {
	pf   *partialFile
	c    cid.Cid
	n    int64 // bytes written (every index of c)
	off  int64 // offset of the first index of c
	ln   int64 // length of c
	done chan error
}

type committer struct {
	s    *Store
	reqs chan *commitReq
	stop chan struct{}
	wg   sync.WaitGroup

	groups, chunks atomic.Int64 // committed so far (for benchmarks)
}

func newCommitter(s *Store) *committer {
	cm := &committer{s: s, reqs: make(chan *commitReq, maxGroup), stop: make(chan struct{})}
	cm.wg.Add(1)
	go cm.run()
	return cm
}

func (cm *committer) close() {
	close(cm.stop)
	cm.wg.Wait()
}

// submit hands r to the committer and waits for its group to be durable.
func (cm *committer) submit(r *commitReq) error {
	r.done = make(chan error, 1)
	select {
	case cm.reqs <- r:
	case <-cm.stop:
		return ErrClosed
	}
	return <-r.done
}

func (cm *committer) run() {
	defer cm.wg.Done()
	group := make([]*commitReq, 0, maxGroup)
	for {
		select {
		case <-cm.stop:
			// Callers hold Store.life shared while they wait, and Close
			// stops the committer under it exclusively: nothing is pending.
			for {
				select {
				case r := <-cm.reqs:
					r.done <- ErrClosed
				default:
					return
				}
			}
		case r := <-cm.reqs:
			group = append(group[:0], r)
		drain:
			for len(group) < maxGroup {
				select {
				case r := <-cm.reqs:
					group = append(group, r)
				default:
					break drain
				}
			}
			cm.groups.Add(1)
			cm.chunks.Add(int64(len(group)))
			cm.s.commitGroup(group)
			clear(group)
		}
	}
}

// commitGroup makes a group of written chunks durable and recorded, then
// finalizes the files it completed, and answers every request.
//
// A file that this group's chunks complete (a small file: its only chunk)
// is finalized in the same round rather than after it: it is checked (see
// prepareObject), made read-only and renamed into objects/ before the
// sync, so that one sync makes its data, mode and new name durable
// together, and one transaction records the objects with the presence of
// the group's other chunks. A crash before that transaction leaves an
// unindexed object, which is verified before it is adopted, and no
// presence record for a chunk whose bytes might not be durable.
func (s *Store) commitGroup(group []*commitReq) {
	g := newGroupCommit(s, group)
	g.classify()
	defer g.resyncFailedFresh()
	g.placeEarly()
	g.sync()
	g.record()
	g.dropStale()
	g.settleEarly()
	g.finalizeCompleted()
	for _, r := range group {
		r.done <- g.errOf[r.pf]
	}
}

// groupCommit is one commitGroup round: the group's chunks by partial
// file, and what each step decided about them.
type groupCommit struct {
	s     *Store
	group []*commitReq
	// errOf is the error of each partial file the group wrote to (nil:
	// fine so far); dirty lists those files in order.
	errOf   map[*partialFile]error
	dirty   []*partialFile
	inGroup map[*partialFile][]cid.Cid
	created bool           // a file of the group was created since the last sync
	fresh   []*partialFile // files created since the last group
	early   []*partialFile // files completed by this group
	// placed holds the records of the early files renamed into objects/;
	// the others are unplaced, their stale presence keys in dropKeys.
	placed   map[*partialFile]*objRecord
	unplaced []*partialFile
	dropKeys [][]byte
	// recorded are the requests whose presence the transaction records.
	recorded []*commitReq
}

func newGroupCommit(s *Store, group []*commitReq) *groupCommit {
	g := &groupCommit{s: s, group: group, errOf: make(map[*partialFile]error),
		inGroup: make(map[*partialFile][]cid.Cid), placed: make(map[*partialFile]*objRecord)}
	for _, r := range group {
		if _, ok := g.errOf[r.pf]; !ok {
			g.errOf[r.pf] = nil
			g.dirty = append(g.dirty, r.pf)
		}
		g.inGroup[r.pf] = append(g.inGroup[r.pf], r.c)
	}
	return g
}

// classify notes the files created since the last group (their entries
// in partial/ need a sync) and the files this group completes (early).
func (g *groupCommit) classify() {
	for _, pf := range g.dirty {
		pf.mu.Lock()
		if pf.createdUnsynced {
			pf.createdUnsynced = false
			g.created = true
			g.fresh = append(g.fresh, pf)
		}
		if !pf.done && !pf.finalizing {
			n := len(pf.present)
			for _, c := range g.inGroup[pf] {
				if !pf.present[c] {
					n++
				}
			}
			if n == len(pf.index) {
				pf.finalizing = true
				g.early = append(g.early, pf)
			}
		}
		pf.mu.Unlock()
	}
}

// resyncFailedFresh makes the next group of a new file whose chunks
// failed sync partial/ again.
func (g *groupCommit) resyncFailedFresh() {
	for _, pf := range g.fresh {
		if g.errOf[pf] != nil {
			pf.mu.Lock()
			pf.createdUnsynced = true
			pf.mu.Unlock()
		}
	}
}

// placeEarly verifies each file the group completes and renames it into
// objects/ (prepareObject), not yet durably.
func (g *groupCommit) placeEarly() {
	for _, pf := range g.early {
		rec, bad, err := g.s.prepareObject(pf)
		switch {
		case err != nil:
			g.errOf[pf] = err
			g.unplaced = append(g.unplaced, pf)
		case len(bad) > 0:
			g.dropKeys = append(g.dropKeys, bad...)
			g.unplaced = append(g.unplaced, pf)
		default:
			g.placed[pf] = &rec
		}
	}
}

// sync makes the group's bytes durable. Several files (small ones), a new
// one or a placed object: one syncfs flushes them all, partial/ and
// objects/. A lone file (a large one): its fdatasync, and partial/ if a
// file was created in it.
func (g *groupCommit) sync() {
	s := g.s
	if !s.waitsForFiles() {
		return // checkpoints (checkpoint.go), or no syncs
	}
	useFS := len(g.dirty) > 1 || g.created || len(g.placed) > 0
	created := g.created
	if s.sync && useFS {
		if err := s.fsync.flush(); err != nil {
			for _, pf := range g.dirty {
				g.errOf[pf] = fmt.Errorf("partial file %s: sync: %w", pf.id, err)
			}
		}
		created = false
	}
	for _, pf := range g.dirty {
		if !s.sync || useFS {
			continue
		}
		f, err := s.fds.get(pf)
		if err == nil {
			err = fdatasync(f)
			s.fds.put(pf)
		}
		if err != nil {
			g.errOf[pf] = fmt.Errorf("partial file %s: sync: %w", pf.id, err)
		}
	}
	var dirErr error
	if created {
		dirErr = s.syncDir(s.path(partialDir))
	}
	if dirErr == nil {
		return
	}
	for _, pf := range g.dirty {
		if g.errOf[pf] == nil {
			g.errOf[pf] = fmt.Errorf("partial file %s: %w", pf.id, dirErr)
		}
	}
}

// record writes, in one transaction, the presence of every durable chunk
// that is not in a placed object, and the records of the placed objects.
// A group too big for one transaction takes one for the chunks and one
// per object.
func (g *groupCommit) record() {
	s := g.s
	for _, r := range g.group {
		if g.errOf[r.pf] == nil && g.placed[r.pf] == nil {
			g.recorded = append(g.recorded, r)
		}
	}
	var objs []*partialFile
	for _, pf := range g.early {
		if g.placed[pf] != nil && g.errOf[pf] == nil {
			objs = append(objs, pf)
		}
	}
	if len(g.recorded) == 0 && len(objs) == 0 {
		return
	}
	err := s.updateLazy(func(txn *badger.Txn) error { return g.recordIn(txn, objs, g.recorded) })
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = s.updateLazy(func(txn *badger.Txn) error { return g.recordIn(txn, nil, g.recorded) }); err == nil {
			for _, pf := range objs {
				g.recordAlone(pf)
			}
		}
	}
	if err == nil {
		return
	}
	for _, r := range g.recorded {
		if g.errOf[r.pf] == nil {
			g.errOf[r.pf] = fmt.Errorf("partial file %s: record chunks: %w", r.pf.id, err)
		}
	}
	for _, pf := range objs {
		if g.errOf[pf] == nil {
			// Placed but unindexed: adopted on next use.
			g.errOf[pf] = fmt.Errorf("object %s: record: %w", pf.hash, err)
		}
	}
	g.recorded = nil
}

// recordIn sets the presence and location keys of the chunks of recs and
// the records of the objects objs in txn.
func (g *groupCommit) recordIn(txn *badger.Txn, objs []*partialFile, recs []*commitReq) error {
	for _, r := range recs {
		cs := r.c.String()
		if err := txn.Set(presenceKey(r.pf.id, cs), []byte{}); err != nil {
			return err
		}
		if err := txn.Set(chunkLocKey(cs, r.pf.id), encodeLoc(r.off, r.ln)); err != nil {
			return err
		}
	}
	for _, pf := range objs {
		if err := g.s.setObjectRecord(txn, pf, g.placed[pf]); err != nil {
			return err
		}
	}
	return nil
}

// recordAlone records one placed object in a transaction of its own, or,
// for an object with too many chunks for one, in several (recordObject).
func (g *groupCommit) recordAlone(pf *partialFile) {
	s := g.s
	e := s.updateLazy(func(txn *badger.Txn) error { return g.recordIn(txn, []*partialFile{pf}, nil) })
	if errors.Is(e, badger.ErrTxnTooBig) {
		if e = s.recordObject(g.placed[pf], pf.id); e == nil {
			if e := s.deletePrefix([]byte(prefixPresence + pf.id + "/")); e != nil {
				s.log.Warn("drop presence records", "partial", pf.id, "err", e)
			}
		}
	}
	if e != nil {
		g.errOf[pf] = fmt.Errorf("object %s: record: %w", pf.hash, e)
	}
}

// dropStale deletes the presence keys of chunks that no longer verify in
// the completed files that were not placed.
func (g *groupCommit) dropStale() {
	if err := g.s.deleteKeysLazy(g.dropKeys); err != nil {
		for _, pf := range g.unplaced {
			if g.errOf[pf] == nil {
				g.errOf[pf] = err
			}
		}
	}
}

// settleEarly marks the placed and recorded files done and forgets them;
// the others may be finalized again.
func (g *groupCommit) settleEarly() {
	s := g.s
	for _, pf := range g.early {
		done := g.placed[pf] != nil && g.errOf[pf] == nil
		pf.mu.Lock()
		pf.finalizing = false
		if done {
			pf.done = true
		}
		pf.mu.Unlock()
		if done {
			s.mu.Lock()
			if s.partials != nil && s.partials[pf.id] == pf {
				delete(s.partials, pf.id)
			}
			s.mu.Unlock()
			s.log.Debug("object stored", "object", s.ObjectPath(pf.hash, pf.v), "bytes", pf.size)
		}
	}
}

// finalizeCompleted marks the recorded chunks present and finalizes the
// files they complete (finalizeBatch).
func (g *groupCommit) finalizeCompleted() {
	var complete []*partialFile
	for _, r := range g.recorded {
		pf := r.pf
		pf.mu.Lock()
		if !pf.present[r.c] {
			pf.present[r.c] = true
			pf.have += r.n
		}
		if pf.complete() && !pf.done && !pf.finalizing {
			pf.finalizing = true
			complete = append(complete, pf)
		}
		pf.mu.Unlock()
	}
	if len(complete) == 0 {
		return
	}
	for pf, err := range g.s.finalizeBatch(complete) {
		if err != nil {
			g.errOf[pf] = err
		}
	}
}

// setObjectRecord indexes a placed object and where its chunks are, and
// drops the presence records of its partial file.
func (s *Store) setObjectRecord(txn *badger.Txn, pf *partialFile, rec *objRecord) error {
	name := objectName(rec.Hash, rec.variant())
	if err := setJSON(txn, []byte(prefixObject+name), rec); err != nil {
		return err
	}
	if err := s.markUnsynced(txn, prefixUnsyncedObject, name); err != nil {
		return err
	}
	seen := make(map[cid.Cid]bool)
	for j, c := range pf.chunks {
		if seen[c] {
			continue
		}
		seen[c] = true
		cs := c.String()
		if err := txn.Set(chunkLocKey(cs, pf.id), encodeLoc(int64(j)*rec.ChunkSize, pf.chunkLen(j))); err != nil {
			return err
		}
		if err := txn.Delete(presenceKey(pf.id, cs)); err != nil {
			return err
		}
	}
	return nil
}

// finalizeBatch moves complete partial files into objects/; each must have
// finalizing set (by the caller, under its mu). It re-reads each file that
// is not trusted (see partialFile.stamp): chunks that no longer verify
// (the disk changed under us) lose their presence record and will be
// fetched again; the whole file must then hash
// (metadata.FileHash) to its name. Every verified file is made read-only
// and renamed into objects/; one syncfs makes all of it durable (the data
// was synced by its commit groups), and then one transaction
// records the objects and drops their presence records. A crash between
// the rename and the record leaves an unindexed object that BeginPackage
// adopts after verifying it.
func (s *Store) finalizeBatch(pfs []*partialFile) map[*partialFile]error {
	errs := make(map[*partialFile]error)
	type placed struct {
		pf  *partialFile
		rec objRecord
	}
	var ok []placed
	var dropKeys [][]byte
	for _, pf := range pfs {
		rec, bad, err := s.prepareObject(pf)
		if err != nil {
			errs[pf] = err
			continue
		}
		if len(bad) > 0 {
			dropKeys = append(dropKeys, bad...)
			continue
		}
		ok = append(ok, placed{pf, rec})
	}
	if len(ok) > 0 && s.waitsForFiles() {
		// The files' data is synced (each group). One syncfs makes every
		// file's mode and both directories durable, for less than an
		// fsync per file and directory, even for one file.
		err := s.fsync.flush()
		if err != nil {
			for _, p := range ok {
				errs[p.pf] = fmt.Errorf("partial file %s: sync: %w", p.pf.id, err)
			}
			ok = nil
		}
	}
	if len(ok) > 0 {
		err := s.updateLazy(func(txn *badger.Txn) error {
			for _, p := range ok {
				if err := s.setObjectRecord(txn, p.pf, &p.rec); err != nil {
					return err
				}
			}
			return nil
		})
		if errors.Is(err, badger.ErrTxnTooBig) {
			// Record one object at a time (each its own transaction).
			err = nil
			for _, p := range ok {
				if e := s.recordObject(&p.rec, p.pf.id); e != nil {
					err = e
				} else if e := s.deletePrefix([]byte(prefixPresence + p.pf.id + "/")); e != nil {
					s.log.Warn("drop presence records", "partial", p.pf.id, "err", e)
				}
			}
		}
		if err != nil {
			// The objects are placed but unindexed: adopted on next use.
			for _, p := range ok {
				errs[p.pf] = fmt.Errorf("object %s: record: %w", p.rec.Hash, err)
			}
		}
	}
	if err := s.deleteKeysLazy(dropKeys); err != nil {
		for _, pf := range pfs {
			if errs[pf] == nil {
				errs[pf] = err
			}
		}
	}
	placedOK := make(map[*partialFile]bool)
	for _, p := range ok {
		if errs[p.pf] == nil {
			placedOK[p.pf] = true
		}
	}
	for _, pf := range pfs {
		pf.mu.Lock()
		pf.finalizing = false
		if placedOK[pf] {
			pf.done = true
		}
		pf.mu.Unlock()
		if placedOK[pf] {
			s.mu.Lock()
			if s.partials != nil && s.partials[pf.id] == pf {
				delete(s.partials, pf.id)
			}
			s.mu.Unlock()
			s.log.Debug("object stored", "object", s.ObjectPath(pf.hash, pf.v), "bytes", pf.size)
		}
	}
	return errs
}

// prepareObject verifies a complete partial file, makes it read-only and
// renames it into objects/ (not yet durably). It returns the object's
// record, or the presence keys of chunks that no longer verify (which are
// then no longer present in memory).
func (s *Store) prepareObject(pf *partialFile) (objRecord, [][]byte, error) {
	rec := objRecord{Hash: pf.hash, Size: pf.size, Perm: uint32(pf.v.Perm), UID: pf.v.UID, GID: pf.v.GID, ChunkSize: pf.chunkSize}
	f, err := s.fds.get(pf)
	if err != nil {
		return rec, nil, fmt.Errorf("partial file %s: %w", pf.id, err)
	}
	// Every chunk of a trusted file was verified in memory before this
	// process wrote it, and the file is the inode at its path, unchanged
	// since our last write: its content is known without a second read.
	pf.wmu.Lock()
	trusted := len(pf.chunks) > 0 && !pf.untrusted && fstamp(f).same(pf.stamp) &&
		lstamp(s.partialPath(pf.id)).sameInode(pf.stamp)
	pf.wmu.Unlock()
	var digests [][]byte
	var bad []int
	if trusted {
		digests = pf.digests
	} else {
		digests, bad, err = checkContent(f, pf.size, pf.chunkSize, pf.digests)
	}
	if err == nil && len(bad) == 0 {
		// Owner first: chown clears setuid bits (objects never have them,
		// but the order is the one that is always right).
		if ownersApply {
			err = f.Chown(int(pf.v.UID), int(pf.v.GID))
		}
		if err == nil {
			err = f.Chmod(pf.v.Perm)
		}
	}
	checked := fstamp(f) // the inode whose content was verified, with its final mode
	rec.Verified = s.now().UnixNano()
	s.fds.put(pf)
	if err != nil {
		return rec, nil, fmt.Errorf("partial file %s: %w", pf.id, err)
	}
	if len(bad) > 0 {
		var keys [][]byte
		pf.wmu.Lock()
		pf.untrusted = true // the next finalize reads it all back again
		pf.wmu.Unlock()
		pf.mu.Lock()
		for _, j := range bad {
			c := pf.chunks[j]
			if pf.present[c] {
				delete(pf.present, c)
				for _, k := range pf.index[c] {
					pf.have -= pf.chunkLen(k)
				}
				keys = append(keys, presenceKey(pf.id, c.String()))
			}
		}
		pf.mu.Unlock()
		s.log.Warn("partial file changed on disk; fetching its bad chunks again", "partial", pf.id, "chunks", len(keys))
		return rec, keys, nil
	}
	if got := metadata.FileHash(digests).String(); got != pf.hash {
		return rec, nil, fmt.Errorf("file %s: %w: content hashes to %s", pf.hash, ErrObjectCorrupt, got)
	}
	for _, c := range pf.chunks {
		rec.Chunks = append(rec.Chunks, c.String())
	}
	s.fds.drop(pf)
	src, dst := s.partialPath(pf.id), s.ObjectPath(pf.hash, pf.v)
	if err := s.moveObject(src, dst, &rec); err != nil {
		return rec, nil, err
	}
	if st := lstamp(dst); st.sameContent(checked) {
		// Ours (not an object already there): uploads of its chunks
		// need not hash them again while it stays unwritten (placeCache).
		s.places.verified(dst, st)
		s.places.putObject(dst, &rec)
		rec.setStamp(st)
	}
	return rec, nil, nil
}

// fdCache is a small LRU of open partial files. get opens (creating, for a
// file not yet on disk) and pins; put unpins. Only unpinned files are
// closed to make room, so the cache may exceed its size while more files
// than that are in use at once.
type fdCache struct {
	s    *Store
	max  int
	mu   sync.Mutex
	lru  *list.List // of *fdEntry, most recent first
	byPF map[*partialFile]*list.Element
}

type fdEntry struct {
	pf     *partialFile
	f      *os.File
	direct *os.File // O_DIRECT writes (direct_linux.go), opened at the first
	pins   int
}

func (e *fdEntry) close() error {
	if e.direct != nil {
		e.direct.Close()
	}
	return e.f.Close()
}

// getDirect returns pf's O_DIRECT descriptor, opening it if needed; pf
// must be pinned (get). Nil if the file system refuses O_DIRECT.
func (c *fdCache) getDirect(pf *partialFile) *os.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.byPF[pf]
	if el == nil {
		return nil
	}
	e := el.Value.(*fdEntry)
	if e.direct == nil && !c.s.noDirect.Load() {
		df, err := openDirect(c.s.partialPath(pf.id), e.f)
		if isDirectErr(err) {
			c.s.noDirect.Store(true)
		}
		e.direct = df
	}
	return e.direct
}

func newFDCache(s *Store, max int) *fdCache {
	return &fdCache{s: s, max: max, lru: list.New(), byPF: make(map[*partialFile]*list.Element)}
}

func (c *fdCache) get(pf *partialFile) (*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.byPF[pf]; el != nil {
		e := el.Value.(*fdEntry)
		e.pins++
		c.lru.MoveToFront(el)
		return e.f, nil
	}
	f, err := c.s.openPartialFile(pf)
	if err != nil {
		return nil, err
	}
	e := &fdEntry{pf: pf, f: f, pins: 1}
	c.byPF[pf] = c.lru.PushFront(e)
	for el := c.lru.Back(); el != nil && c.lru.Len() > c.max; {
		prev := el.Prev()
		if e := el.Value.(*fdEntry); e.pins == 0 {
			e.close()
			delete(c.byPF, e.pf)
			c.lru.Remove(el)
		}
		el = prev
	}
	return f, nil
}

func (c *fdCache) put(pf *partialFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.byPF[pf]; el != nil {
		el.Value.(*fdEntry).pins--
	}
}

// drop closes pf's file if it is open and unpinned.
func (c *fdCache) drop(pf *partialFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.byPF[pf]; el != nil {
		if e := el.Value.(*fdEntry); e.pins == 0 {
			e.close()
			delete(c.byPF, pf)
			c.lru.Remove(el)
		}
	}
}

// closeAll closes every file (at Close: nothing is pinned).
func (c *fdCache) closeAll() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for el := c.lru.Front(); el != nil; el = el.Next() {
		errs = append(errs, el.Value.(*fdEntry).close())
	}
	c.lru.Init()
	clear(c.byPF)
	return errors.Join(errs...)
}

// open returns how many partial files are open (for tests).
func (c *fdCache) open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// openPartialFile opens pf's file, creating it at its size if it is not on
// disk yet (lazily, at its first chunk).
func (s *Store) openPartialFile(pf *partialFile) (*os.File, error) {
	p := s.partialPath(pf.id)
	pf.mu.Lock()
	defer pf.mu.Unlock()
	if !pf.fresh {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("partial file %s: %w", pf.id, err)
		}
		return f, nil
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		// Its sub-directory's first file (made durable with it: a new
		// partial file's group syncs the file system).
		if err = os.MkdirAll(filepath.Dir(p), 0o700); err == nil {
			f, err = os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("partial file %s: %w", pf.id, err)
	}
	if err := f.Truncate(pf.size); err != nil {
		f.Close()
		return nil, fmt.Errorf("partial file %s: %w", pf.id, err)
	}
	pf.fresh = false
	pf.createdUnsynced = true
	return f, nil
}
