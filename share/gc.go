package share

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// GCResult says what GC removed.
type GCResult struct {
	Packages int   // package records
	Objects  int   // object files
	Trees    int   // package trees
	Partials int   // partial files
	Bytes    int64 // bytes of removed objects and partial files
}

// GC removes what nothing needs. A package is live while a VM install
// references it, while it is kept (SetKeep), or while its download is open
// in this process; other packages lose their records and trees. Then
// objects that no live package uses, partial files that no live unfinished
// package needs, their index records, and any file under objects/, trees/
// or partial/ the index does not know are removed. An unindexed object a
// live package needs (a crash came between its move and its record) is
// verified and kept instead. GC excludes every other store operation while
// it runs.
func (s *Store) GC(ctx context.Context) (*GCResult, error) {
	s.life.Lock()
	defer s.life.Unlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	res := &GCResult{}
	s.mu.Lock()
	open := make(map[string]bool, len(s.downloads))
	for k := range s.downloads {
		open[k] = true
	}
	s.mu.Unlock()

	// 1. Packages.
	type pkg struct {
		key string
		rec pkgRecord
	}
	var pkgs []pkg
	refs := make(map[string]bool)
	err := s.db.View(func(txn *badger.Txn) error {
		if err := scanKeys(txn, prefixRef, func(k []byte, _ *badger.Item) error {
			rest := strings.TrimPrefix(string(k), prefixRef)
			if i := strings.IndexByte(rest, '/'); i > 0 {
				refs[rest[:i]] = true
			}
			return nil
		}); err != nil {
			return err
		}
		return scanKeys(txn, prefixPackage, func(k []byte, item *badger.Item) error {
			var r pkgRecord
			if err := jsonUnmarshal(item, &r); err != nil {
				return err
			}
			pkgs = append(pkgs, pkg{strings.TrimPrefix(string(k), prefixPackage), r})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	liveObj := make(map[string]bool)      // object names live packages link
	wantHash := make(map[string]bool)     // hashes unfinished live packages need
	livePartial := make(map[string]bool)  // partial ids unfinished live packages need
	entries := make(map[string]metaEntry) // object name → an entry that names it
	liveTree := make(map[string]bool)     // trees of complete live packages
	for _, p := range pkgs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if !refs[p.key] && !p.rec.Keep && !open[p.key] {
			if err := s.update(func(txn *badger.Txn) error { return deletePackageTxn(txn, p.key) }); err != nil {
				return res, fmt.Errorf("gc: package %s: %w", p.key, err)
			}
			res.Packages++
			s.log.Info("gc: package removed", "package", p.rec.Name+"@"+p.rec.Version, "manifest", p.key)
			continue
		}
		c, err := cid.Decode(p.key)
		if err != nil {
			return res, fmt.Errorf("gc: package key %q: %w", p.key, err)
		}
		m, _, err := s.Manifest(c)
		if err != nil {
			return res, fmt.Errorf("gc: %w", err)
		}
		complete := p.rec.State == StateComplete
		if complete {
			liveTree[p.key] = true
		}
		for i := range m.Entries {
			e := &m.Entries[i]
			if e.Type != metadata.TypeFile {
				continue
			}
			name := objectName(e.Hash, ObjectPerm(e.Mode))
			liveObj[name] = true
			entries[name] = metaEntry{e, m.ChunkSize}
			if !complete {
				wantHash[e.Hash] = true
				livePartial[partialID(e.Hash, e.Size)] = true
			}
		}
	}

	// 2. Object records. A variant nobody links is still kept while an
	// unfinished package needs the content and no linked variant exists.
	var objs []objRecord
	if err := s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, prefixObject, func(k []byte, item *badger.Item) error {
			var r objRecord
			if err := jsonUnmarshal(item, &r); err != nil {
				return err
			}
			objs = append(objs, r)
			return nil
		})
	}); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	linkedHash := make(map[string]bool)
	for _, r := range objs {
		if liveObj[objectName(r.Hash, os.FileMode(r.Perm))] {
			linkedHash[r.Hash] = true
		}
	}
	indexed := make(map[string]bool) // object names kept
	keptHash := make(map[string]bool)
	for _, r := range objs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		name := objectName(r.Hash, os.FileMode(r.Perm))
		if liveObj[name] || (wantHash[r.Hash] && !linkedHash[r.Hash] && !keptHash[r.Hash]) {
			indexed[name] = true
			keptHash[r.Hash] = true
			continue
		}
		// Index first: a crash then leaves an unindexed file, which the
		// next GC removes, never a record without its file.
		if err := s.deleteKeys([][]byte{[]byte(prefixObject + name)}); err != nil {
			return res, fmt.Errorf("gc: object %s: %w", name, err)
		}
		if err := os.Remove(s.ObjectPath(r.Hash, os.FileMode(r.Perm))); err != nil && !os.IsNotExist(err) {
			s.log.Warn("gc: remove object", "object", name, "err", err)
		}
		res.Objects++
		res.Bytes += r.Size
	}

	// 3. Files under objects/ the index does not know.
	err = walkFiles(s.path(objectsDir), func(p string, size int64) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := filepath.Base(p)
		if indexed[name] {
			return nil
		}
		if me, ok := entries[name]; ok && filepath.Dir(p) == filepath.Dir(s.ObjectPath(me.e.Hash, ObjectPerm(me.e.Mode))) {
			rec := objRecord{Hash: me.e.Hash, Size: me.e.Size, Perm: uint32(ObjectPerm(me.e.Mode)), ChunkSize: me.chunkSize, Chunks: me.e.Chunks}
			if verifyObjectFile(p, &rec) == nil && s.recordObject(&rec, partialID(me.e.Hash, me.e.Size)) == nil {
				indexed[name] = true
				keptHash[me.e.Hash] = true
				s.log.Info("gc: adopted unindexed object", "object", name)
				return nil
			}
		}
		if err := os.Remove(p); err != nil {
			return err
		}
		res.Objects++
		res.Bytes += size
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("gc: objects: %w", err)
	}

	// 4. Partial files and their presence records.
	var stale [][]byte
	if err := s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, prefixPresence, func(k []byte, _ *badger.Item) error {
			if id, _, ok := splitPresenceKey(k); ok && (!livePartial[id] || keptHash[hashOfPartialID(id)]) {
				stale = append(stale, bytes.Clone(k))
			}
			return nil
		})
	}); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	if err := s.deleteKeys(stale); err != nil {
		return res, fmt.Errorf("gc: presence records: %w", err)
	}
	s.mu.Lock()
	inUse := make(map[string]bool, len(s.partials))
	for id := range s.partials {
		inUse[id] = true
	}
	s.mu.Unlock()
	err = walkFiles(s.path(partialDir), func(p string, size int64) error {
		id := filepath.Base(p)
		if inUse[id] || (livePartial[id] && !keptHash[hashOfPartialID(id)]) {
			return nil
		}
		if err := os.Remove(p); err != nil {
			return err
		}
		res.Partials++
		res.Bytes += size
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("gc: partial: %w", err)
	}

	// 5. Chunk locations that lead nowhere.
	stale = stale[:0]
	if err := s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, prefixChunkLoc, func(k []byte, _ *badger.Item) error {
			if _, id, ok := splitChunkLocKey(k); ok && !keptHash[hashOfPartialID(id)] && !livePartial[id] {
				stale = append(stale, bytes.Clone(k))
			}
			return nil
		})
	}); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	if err := s.deleteKeys(stale); err != nil {
		return res, fmt.Errorf("gc: chunk records: %w", err)
	}

	// 6. Trees.
	des, err := os.ReadDir(s.path(treesDir))
	if err != nil {
		return res, fmt.Errorf("gc: trees: %w", err)
	}
	for _, de := range des {
		if liveTree[de.Name()] {
			continue
		}
		if err := removeAll(s.path(treesDir, de.Name())); err != nil {
			return res, fmt.Errorf("gc: tree %s: %w", de.Name(), err)
		}
		res.Trees++
	}
	s.log.Info("gc done", "packages", res.Packages, "objects", res.Objects, "trees", res.Trees, "partials", res.Partials, "bytes", res.Bytes)
	return res, nil
}

type metaEntry struct {
	e         *metadata.Entry
	chunkSize int64
}

// walkFiles calls fn for every non-directory under root.
func walkFiles(root string, fn func(p string, size int64) error) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		var size int64
		if info, err := d.Info(); err == nil {
			size = info.Size()
		}
		return fn(p, size)
	})
}

// Verify re-hashes every object and checks every committed tree against its
// manifest (each file the very object inode, each symlink its target, no
// directory writable). It returns one line per problem, sorted; none means
// the store is sound.
func (s *Store) Verify(ctx context.Context) ([]string, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	var objs []objRecord
	var pkgs []string
	err := s.db.View(func(txn *badger.Txn) error {
		if err := scanKeys(txn, prefixObject, func(k []byte, item *badger.Item) error {
			var r objRecord
			if err := jsonUnmarshal(item, &r); err != nil {
				return err
			}
			objs = append(objs, r)
			return nil
		}); err != nil {
			return err
		}
		return scanKeys(txn, prefixPackage, func(k []byte, item *badger.Item) error {
			var r pkgRecord
			if err := jsonUnmarshal(item, &r); err != nil {
				return err
			}
			if r.State == StateComplete {
				pkgs = append(pkgs, strings.TrimPrefix(string(k), prefixPackage))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	var problems []string
	for i := range objs {
		if err := ctx.Err(); err != nil {
			return problems, err
		}
		r := &objs[i]
		if err := verifyObjectFile(s.ObjectPath(r.Hash, os.FileMode(r.Perm)), r); err != nil {
			problems = append(problems, err.Error())
		}
	}
	for _, key := range pkgs {
		if err := ctx.Err(); err != nil {
			return problems, err
		}
		c, err := cid.Decode(key)
		if err != nil {
			problems = append(problems, fmt.Sprintf("package %q: bad key", key))
			continue
		}
		m, _, err := s.Manifest(c)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		problems = append(problems, s.checkTree(c, m)...)
	}
	sort.Strings(problems)
	return problems, nil
}

// checkTree compares a committed tree with its manifest.
func (s *Store) checkTree(c cid.Cid, m *metadata.Manifest) []string {
	tree := s.TreePath(c)
	var out []string
	bad := func(p, format string, a ...any) {
		out = append(out, fmt.Sprintf("tree %s: %q: %s", c, p, fmt.Sprintf(format, a...)))
	}
	if st, err := os.Lstat(tree); err != nil {
		return []string{fmt.Sprintf("tree %s: %v", c, err)}
	} else if st.Mode().Perm()&0o222 != 0 {
		bad(".", "writable (mode %v)", st.Mode())
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		p := filepath.Join(tree, filepath.FromSlash(e.Path))
		st, err := os.Lstat(p)
		if err != nil {
			bad(e.Path, "%v", err)
			continue
		}
		switch e.Type {
		case metadata.TypeDir:
			if !st.IsDir() {
				bad(e.Path, "not a directory")
			} else if st.Mode().Perm()&0o222 != 0 {
				bad(e.Path, "writable (mode %v)", st.Mode())
			}
		case metadata.TypeSymlink:
			if t, err := os.Readlink(p); err != nil || t != e.Target {
				bad(e.Path, "symlink to %q, want %q", t, e.Target)
			}
		case metadata.TypeFile:
			ost, err := os.Lstat(s.ObjectPath(e.Hash, ObjectPerm(e.Mode)))
			if err != nil || !os.SameFile(st, ost) {
				bad(e.Path, "not a link to object %s", objectName(e.Hash, ObjectPerm(e.Mode)))
			}
		}
	}
	return out
}
