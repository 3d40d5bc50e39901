package share

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"

	"github.com/storkpm/stork/metadata"
)

// GCResult says what GC removed, and the trees it kept because views use
// them.
type GCResult struct {
	Packages int   // package records
	Objects  int   // object files
	Trees    int   // package trees
	Partials int   // partial files
	Bytes    int64 // bytes of removed objects and partial files
	// InUse lists "TREE: MOUNT POINT" for every tree GC kept only because
	// a mount (a view) uses it.
	InUse []string `json:",omitempty"`
}

// GCOptions says what else GC may remove.
type GCOptions struct {
	// Partial drops unfinished packages (and their partial files) that no
	// VM install references, no view uses and no download is filling,
	// even those kept (but not a package with a tree, waiting for a
	// repair): a download that failed (for lack of disk space, or
	// an origin that went away) keeps what it fetched so that a retry
	// resumes, until a GC with Partial releases it.
	Partial bool
}

// GC is GCWith without options.
func (s *Store) GC(ctx context.Context) (*GCResult, error) { return s.GCWith(ctx, GCOptions{}) }

// GCWith removes what nothing needs. A package is live while a VM install
// references it, while a mount (a view) uses its tree, while it is kept
// (SetKeep; unless opts.Partial and it is unfinished), or while its
// download is open in this process; other packages lose their trees (moved
// to tmp/ first, so that no tree is ever left without its record) and
// records. Then objects that no live package uses, partial files that no
// live unfinished package needs, their index records, and any file under
// objects/, trees/ or partial/ the index does not know are removed; a tree
// that a mount uses is never removed. An unindexed object a live package
// needs (a crash came between its move and its record) is verified and
// kept instead. GC excludes every other store operation while it runs.
func (s *Store) GCWith(ctx context.Context, opts GCOptions) (*GCResult, error) {
	s.life.Lock()
	defer s.life.Unlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	mounted, err := s.mountedTrees()
	if err != nil {
		return nil, fmt.Errorf("gc: cannot tell which trees views use: %w", err)
	}
	g := &gcRun{
		s: s, ctx: ctx, opts: opts, res: &GCResult{}, mounted: mounted,
		liveObj: make(map[string]bool), wantHash: make(map[string]bool), livePartial: make(map[string]bool),
		entries: make(map[string]metaEntry), liveTree: make(map[string]bool),
		indexed: make(map[string]bool), keptHash: make(map[string]bool),
	}
	for _, step := range []struct {
		name string
		fn   func() error
	}{
		{"packages", g.packages}, {"objects", g.objects}, {"unindexed objects", g.strayObjects},
		{"partial files", g.partials}, {"chunk records", g.chunkLocs}, {"trees", g.trees}, {"manifest files", g.manifests},
	} {
		if err := step.fn(); err != nil {
			return g.res, fmt.Errorf("gc: %s: %w", step.name, err)
		}
	}
	res := g.res
	s.log.Info("gc done", "packages", res.Packages, "objects", res.Objects, "trees", res.Trees, "partials", res.Partials, "bytes", res.Bytes, "in_use", len(res.InUse))
	return res, nil
}

// gcRun is one GC: what its steps found live so far.
type gcRun struct {
	s       *Store
	ctx     context.Context
	opts    GCOptions
	res     *GCResult
	mounted map[string][]string // tree → mount points using it

	liveObj     map[string]bool      // object names live packages link
	wantHash    map[string]bool      // hashes unfinished live packages need
	livePartial map[string]bool      // partial ids unfinished live packages need
	entries     map[string]metaEntry // object name → an entry that names it
	liveTree    map[string]bool      // trees of live packages
	indexed     map[string]bool      // object names kept
	keptHash    map[string]bool      // hashes with a kept object
}

type gcPackage struct {
	key string
	rec pkgRecord
}

// packages removes the packages nothing needs and notes what the others use.
func (g *gcRun) packages() error {
	s := g.s
	s.mu.Lock()
	open := make(map[string]bool, len(s.filling))
	for k := range s.filling {
		open[k] = true
	}
	s.mu.Unlock()
	pkgs, refs, err := s.packageRecords()
	if err != nil {
		return err
	}
	for _, p := range pkgs {
		if err := g.ctx.Err(); err != nil {
			return err
		}
		complete := p.rec.State == StateComplete
		// A partial package with a tree was complete: it waits to be
		// fetched again (damage.go), it is not an unfinished download.
		_, terr := os.Lstat(s.path(treesDir, p.key))
		kept := p.rec.Keep && (complete || !g.opts.Partial || terr == nil)
		if !refs[p.key] && !kept && !open[p.key] && len(g.mounted[p.key]) == 0 {
			hadTree, err := s.dropPackage(p.key)
			if err != nil {
				return fmt.Errorf("package %s: %w", p.key, err)
			}
			g.res.Packages++
			if hadTree {
				g.res.Trees++
			}
			s.log.Info("gc: package removed", "package", p.rec.Name+"@"+p.rec.Version, "manifest", p.key, "state", p.rec.State)
			continue
		}
		c, err := cid.Decode(p.key)
		if err != nil {
			return fmt.Errorf("package key %q: %w", p.key, err)
		}
		m, _, err := s.Manifest(c)
		if err != nil {
			return err
		}
		g.liveTree[p.key] = true
		for i := range m.Entries {
			e := &m.Entries[i]
			if e.Type != metadata.TypeFile {
				continue
			}
			v := variantOf(p.rec.Layout, e)
			name := objectName(e.Hash, v)
			g.liveObj[name] = true
			g.entries[name] = metaEntry{e, m.ChunkSize, v}
			if !complete {
				g.wantHash[e.Hash] = true
				g.livePartial[partialID(e.Hash, e.Size)] = true
			}
		}
	}
	return nil
}

// packageRecords reads every package record and which packages VM installs
// reference.
func (s *Store) packageRecords() ([]gcPackage, map[string]bool, error) {
	var pkgs []gcPackage
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
		return scanPackages(txn, func(key string, r *pkgRecord) error {
			pkgs = append(pkgs, gcPackage{key, *r})
			return nil
		})
	})
	return pkgs, refs, err
}

// dropPackage removes a package: its tree is moved into tmp/ first (so
// that no tree is left without a record: see checkIndex), then its
// records go, then the tree. It reports whether there was a tree. s.life
// is held exclusively.
func (s *Store) dropPackage(key string) (bool, error) {
	aside, err := s.moveTreeAside(key)
	if err != nil {
		return false, err
	}
	err = s.update(func(txn *badger.Txn) error {
		if err := txn.Delete([]byte(prefixRepair + key)); err != nil {
			return err
		}
		return deletePackageTxn(txn, key)
	})
	if err != nil {
		if aside != "" {
			_ = os.Rename(aside, s.path(treesDir, key))
		}
		return false, err
	}
	s.dropPartial(key)
	s.removeManifest(key)
	if err := removeAll(s.path(setuidDir, key)); err != nil {
		s.log.Warn("remove setuid tree", "manifest", key, "err", err)
	}
	if aside != "" {
		return true, removeAll(aside)
	}
	return false, nil
}

// moveTreeAside renames trees/<key> into tmp/ and returns where it went
// ("" if there was no tree).
func (s *Store) moveTreeAside(key string) (string, error) {
	aside := s.path(tmpDir, "drop-"+key+"-"+randomSuffix())
	err := os.Rename(s.path(treesDir, key), aside)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("move tree aside: %w", err)
	}
	return aside, nil
}

// objects removes object records and files no live package uses. A
// variant nobody links is still kept while an unfinished package needs
// the content and no linked variant exists.
func (g *gcRun) objects() error {
	s := g.s
	var objs []objRecord
	if err := s.db.View(func(txn *badger.Txn) error {
		return scanJSON(txn, prefixObject, func(_ []byte, r *objRecord) error {
			objs = append(objs, *r)
			return nil
		})
	}); err != nil {
		return err
	}
	linkedHash := make(map[string]bool)
	for _, r := range objs {
		if g.liveObj[objectName(r.Hash, r.variant())] {
			linkedHash[r.Hash] = true
		}
	}
	for _, r := range objs {
		if err := g.ctx.Err(); err != nil {
			return err
		}
		name := objectName(r.Hash, r.variant())
		if g.liveObj[name] || (g.wantHash[r.Hash] && !linkedHash[r.Hash] && !g.keptHash[r.Hash]) {
			g.indexed[name] = true
			g.keptHash[r.Hash] = true
			continue
		}
		// Index first: a crash then leaves an unindexed file, which the
		// next GC removes, never a record without its file.
		if err := s.deleteKeys([][]byte{[]byte(prefixObject + name)}); err != nil {
			return fmt.Errorf("object %s: %w", name, err)
		}
		if err := os.Remove(s.ObjectPath(r.Hash, r.variant())); err != nil && !os.IsNotExist(err) {
			s.log.Warn("gc: remove object", "object", name, "err", err)
		}
		g.res.Objects++
		g.res.Bytes += r.Size
	}
	return nil
}

// strayObjects removes files under objects/ the index does not know, but
// adopts (verified) those a live package needs.
func (g *gcRun) strayObjects() error {
	s := g.s
	return walkFiles(s.path(objectsDir), func(p string, size int64) error {
		if err := g.ctx.Err(); err != nil {
			return err
		}
		name := filepath.Base(p)
		if g.indexed[name] {
			return nil
		}
		if me, ok := g.entries[name]; ok && filepath.Dir(p) == filepath.Dir(s.ObjectPath(me.e.Hash, me.v)) {
			rec := objRecord{Hash: me.e.Hash, Size: me.e.Size, Perm: uint32(me.v.Perm), UID: me.v.UID, GID: me.v.GID, ChunkSize: me.chunkSize, Chunks: me.e.Chunks}
			if verifyObjectFile(p, &rec) == nil && s.recordObject(&rec, partialID(me.e.Hash, me.e.Size)) == nil {
				g.indexed[name] = true
				g.keptHash[me.e.Hash] = true
				s.log.Info("gc: adopted unindexed object", "object", name)
				return nil
			}
		}
		if err := os.Remove(p); err != nil {
			return err
		}
		g.res.Objects++
		g.res.Bytes += size
		return nil
	})
}

// partials removes partial files and presence records no live unfinished
// package needs.
func (g *gcRun) partials() error {
	s := g.s
	if err := s.deleteKeysWhere(prefixPresence, func(k []byte) bool {
		id, _, ok := splitPresenceKey(k)
		return ok && (!g.livePartial[id] || g.keptHash[hashOfPartialID(id)])
	}); err != nil {
		return fmt.Errorf("presence records: %w", err)
	}
	s.mu.Lock()
	inUse := make(map[string]bool, len(s.partials))
	for id := range s.partials {
		inUse[id] = true
	}
	s.mu.Unlock()
	return walkFiles(s.path(partialDir), func(p string, size int64) error {
		id := filepath.Base(p)
		if inUse[id] || (g.livePartial[id] && !g.keptHash[hashOfPartialID(id)]) {
			return nil
		}
		if err := os.Remove(p); err != nil {
			return err
		}
		g.res.Partials++
		g.res.Bytes += size
		return nil
	})
}

// chunkLocs removes chunk locations that lead nowhere.
func (g *gcRun) chunkLocs() error {
	return g.s.deleteKeysWhere(prefixChunkLoc, func(k []byte) bool {
		_, id, ok := splitChunkLocKey(k)
		return ok && !g.keptHash[hashOfPartialID(id)] && !g.livePartial[id]
	})
}

// trees removes every tree of no live package, and the setuid variant of
// every such tree, except those a mount uses. A live package keeps its
// variant (built once, used by every view that applies setuid). The
// mounts that keep a package's trees are reported in InUse once, with its
// plain tree: g.mounted lists a variant's mounts under the package's CID.
func (g *gcRun) trees() error {
	if err := g.sweepTrees(treesDir, "tree", true); err != nil {
		return err
	}
	return g.sweepTrees(setuidDir, "setuid tree", false)
}

// sweepTrees removes the trees under dir (treesDir or setuidDir) of no
// live package that no mount uses; what names them in errors and logs.
// report adds the trees kept for a mount to InUse.
func (g *gcRun) sweepTrees(dir, what string, report bool) error {
	s := g.s
	des, err := os.ReadDir(s.path(dir))
	if err != nil {
		return err
	}
	for _, de := range des {
		name := de.Name()
		if g.liveTree[name] {
			continue
		}
		if points := g.mounted[name]; len(points) > 0 {
			if report {
				for _, p := range points {
					g.res.InUse = append(g.res.InUse, name+": "+p)
				}
			}
			s.log.Warn("gc: "+what+" kept: a view uses it", "tree", s.path(dir, name), "mounts", points)
			continue
		}
		if err := removeAll(s.path(dir, name)); err != nil {
			return fmt.Errorf("%s %s: %w", what, name, err)
		}
		g.res.Trees++
	}
	return nil
}

// manifests removes manifest files and names sidecars of packages the
// index does not record.
func (g *gcRun) manifests() error {
	s := g.s
	des, err := os.ReadDir(s.path(manifestsDir))
	if err != nil {
		return err
	}
	return s.db.View(func(txn *badger.Txn) error {
		for _, de := range des {
			key := strings.TrimSuffix(de.Name(), namesSuffix)
			ok, err := exists(txn, []byte(prefixPackage+key))
			if err != nil {
				return err
			}
			if !ok {
				if err := os.Remove(s.path(manifestsDir, de.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
		}
		return nil
	})
}

type metaEntry struct {
	e         *metadata.Entry
	chunkSize int64
	v         ObjectVariant
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

// Verify re-hashes every object and checks every committed tree, and its
// setuid variant if any, against its manifest (each file the very object
// inode, or for a setuid or setgid file of a variant a private copy with
// the right content; each symlink its target; each directory and symlink
// its mode and owner), never following a symlink of a tree. It returns one
// line per problem, sorted; none means the store is sound.
func (s *Store) Verify(ctx context.Context) ([]string, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	var objs []objRecord
	var pkgs []gcPackage
	err := s.db.View(func(txn *badger.Txn) error {
		if err := scanJSON(txn, prefixObject, func(_ []byte, r *objRecord) error {
			objs = append(objs, *r)
			return nil
		}); err != nil {
			return err
		}
		return scanPackages(txn, func(key string, r *pkgRecord) error {
			if r.State == StateComplete {
				pkgs = append(pkgs, gcPackage{key, *r})
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
		if err := verifyObjectFile(s.ObjectPath(r.Hash, r.variant()), r); err != nil {
			problems = append(problems, err.Error())
		}
	}
	for _, p := range pkgs {
		if err := ctx.Err(); err != nil {
			return problems, err
		}
		c, err := cid.Decode(p.key)
		if err != nil {
			problems = append(problems, fmt.Sprintf("package %q: bad key", p.key))
			continue
		}
		m, _, err := s.Manifest(c)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		problems = append(problems, s.checkTree(c, m, p.rec.Layout, false)...)
		if _, err := os.Lstat(s.setuidTreePath(c)); err == nil {
			problems = append(problems, s.checkTree(c, m, p.rec.Layout, true)...)
		}
	}
	sort.Strings(problems)
	return problems, nil
}

// checkTree compares a committed tree of the given layout (its setuid
// variant, if setuid) with its manifest. Every entry is looked at through
// descriptors below the tree's root, following no symlink.
func (s *Store) checkTree(c cid.Cid, m *metadata.Manifest, layout int, setuid bool) []string {
	tree, what := s.TreePath(c), "tree"
	if setuid {
		tree, what = s.setuidTreePath(c), "setuid tree"
	}
	var out []string
	bad := func(p, format string, a ...any) {
		out = append(out, fmt.Sprintf("%s %s: %q: %s", what, c, p, fmt.Sprintf(format, a...)))
	}
	root, err := openRoot(tree)
	if err != nil {
		return []string{fmt.Sprintf("%s %s: %v", what, c, err)}
	}
	defer unix.Close(root)
	var st unix.Stat_t
	if err := unix.Fstat(root, &st); err != nil {
		return []string{fmt.Sprintf("%s %s: %v", what, c, err)}
	}
	if want := rootDirMode(layout); st.Mode&0o7777 != want || !sameOwner(st.Uid, st.Gid, 0, 0) {
		bad(".", "mode %#o owner %d:%d, want %#o 0:0", st.Mode&0o7777, st.Uid, st.Gid, want)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		st, err := lstatBeneath(root, e.Path)
		if err != nil {
			bad(e.Path, "%v", err)
			continue
		}
		s.checkTreeEntry(root, e, &st, layout, setuid, m.ChunkSize, bad)
	}
	return out
}

// checkTreeEntry checks one entry of a tree, stat'ed as st, against e.
func (s *Store) checkTreeEntry(root int, e *metadata.Entry, st *unix.Stat_t, layout int, setuid bool, chunkSize int64, bad func(p, format string, a ...any)) {
	owned := func() {
		if layout != layoutReadOnly && !sameOwner(st.Uid, st.Gid, e.UID, e.GID) {
			bad(e.Path, "owner %d:%d, want %d:%d", st.Uid, st.Gid, e.UID, e.GID)
		}
	}
	switch e.Type {
	case metadata.TypeDir:
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			bad(e.Path, "not a directory")
			return
		}
		if want := unixMode(dirMode(layout, e.Mode)); st.Mode&0o7777 != want {
			bad(e.Path, "mode %#o, want %#o", st.Mode&0o7777, want)
		}
		owned()
	case metadata.TypeSymlink:
		if t, err := readlinkBeneath(root, e.Path); err != nil || t != e.Target {
			bad(e.Path, "symlink to %q, want %q", t, e.Target)
		}
		owned()
	case metadata.TypeFile:
		if setuid && e.Mode&0o6000 != 0 {
			if err := checkSetuidCopy(root, e, st, layout, chunkSize); err != nil {
				bad(e.Path, "%v", err)
			}
			return
		}
		v := variantOf(layout, e)
		var ost unix.Stat_t
		if err := unix.Lstat(s.ObjectPath(e.Hash, v), &ost); err != nil || ost.Dev != st.Dev || ost.Ino != st.Ino {
			bad(e.Path, "not a link to object %s", objectName(e.Hash, v))
		}
	}
}

// rootDirMode is the mode of a tree's root directory in the given layout.
func rootDirMode(layout int) uint32 {
	if layout == layoutReadOnly {
		return 0o555
	}
	return 0o755
}

// unixMode turns an os.FileMode's permission and special bits into mode_t
// bits.
func unixMode(m os.FileMode) uint32 {
	mode := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		mode |= unix.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		mode |= unix.S_ISVTX
	}
	return mode
}
