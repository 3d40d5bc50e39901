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
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// lostFoundDir holds trees Rebuild could not attribute to a package (no
// manifest or no name on disk or from Lookup): lost+found/<manifest CID>.
// Nothing removes them; a view that uses one keeps working.
const lostFoundDir = "lost+found"

// oldIndexDir is where Rebuild moves the index it replaces.
const oldIndexDir = "index.lost"

// NameVersion is one name a package is registered under.
type NameVersion struct{ Name, Version string }

// RebuildLookup finds the names and manifest bytes of a manifest CID the
// disk has no (usable) record of, e.g. from signed repository metadata.
// It returns an error wrapping ErrNotFound if it does not know the CID.
type RebuildLookup func(ctx context.Context, c cid.Cid) ([]NameVersion, []byte, error)

// RebuildReport says what Rebuild recovered.
type RebuildReport struct {
	OldIndex  string   // where the replaced index went ("" if there was none)
	Packages  []string // "NAME@VERSION CID STATE" for every package recorded
	Objects   int      // objects verified and recorded
	Damaged   []string // objects that failed verification, now in quarantine/
	Missing   int      // files manifests need whose object is not on disk
	LostTrees []string // trees moved to lost+found/: no manifest or name found
}

// Rebuild recreates the index of the store in cfg.Dir from its files, with
// no other process using the store: the old index (if any) is moved to
// index.lost/, replacing an earlier one; every manifest under manifests/
// (checked against its CID) with its names becomes a package record, kept
// (SetKeep) since what used it is unknown; every object its manifest names
// is re-hashed and recorded, or quarantined if it fails; a package is
// complete if all its objects are good and its tree matches its manifest,
// else partial (its next download fetches what is missing and relinks its
// tree). A tree with no manifest or names on disk is looked up (if lookup
// is not nil), else moved to lost+found/. VM installs are not recovered
// here (see node). The store keeps its id.
func Rebuild(ctx context.Context, cfg Config, lookup RebuildLookup) (*RebuildReport, error) {
	rep := &RebuildReport{}
	idx := filepath.Join(cfg.Dir, indexDir)
	if _, err := os.Stat(idx); err == nil {
		rep.OldIndex = filepath.Join(cfg.Dir, oldIndexDir)
		if err := removeAll(rep.OldIndex); err != nil {
			return nil, fmt.Errorf("rebuild %s: %w", cfg.Dir, err)
		}
		if err := os.Rename(idx, rep.OldIndex); err != nil {
			return nil, fmt.Errorf("rebuild %s: move the old index aside: %w", cfg.Dir, err)
		}
	}
	s, err := open(cfg, false)
	if err != nil {
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	defer s.Close()
	rb := &rebuild{s: s, ctx: ctx, rep: rep, lookup: lookup, objects: make(map[string]bool), quarantined: make(map[string]bool)}
	if err := rb.run(); err != nil {
		return rep, fmt.Errorf("rebuild %s: %w", cfg.Dir, err)
	}
	sort.Strings(rep.Packages)
	sort.Strings(rep.Damaged)
	sort.Strings(rep.LostTrees)
	s.log.Info("index rebuilt", "dir", cfg.Dir, "packages", len(rep.Packages), "objects", rep.Objects,
		"damaged", len(rep.Damaged), "missing", rep.Missing, "lost_trees", len(rep.LostTrees))
	return rep, nil
}

type rebuild struct {
	s       *Store
	ctx     context.Context
	rep     *RebuildReport
	lookup  RebuildLookup
	objects map[string]bool // object name → verified good
	// quarantined: object names that failed verification.
	quarantined map[string]bool
}

func (rb *rebuild) run() error {
	s := rb.s
	if err := rb.keepStoreID(); err != nil {
		return err
	}
	keys, err := rb.manifestKeys()
	if err != nil {
		return err
	}
	trees, err := os.ReadDir(s.path(treesDir))
	if err != nil {
		return err
	}
	for _, de := range trees {
		if !keys[de.Name()] {
			keys[de.Name()] = true // looked up, or moved to lost+found
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, key := range sorted {
		if err := rb.ctx.Err(); err != nil {
			return err
		}
		if err := rb.pkg(key); err != nil {
			return fmt.Errorf("package %s: %w", key, err)
		}
	}
	return nil
}

// keepStoreID records the store's id (from store-id, or a new one) in the
// new index.
func (rb *rebuild) keepStoreID() error {
	s := rb.s
	id, err := readFileMax(s.path(storeIDFile), 128)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if id = []byte(strings.TrimSpace(string(id))); len(id) == 0 {
		if id, err = s.newStoreID(); err != nil {
			return err
		}
		return s.writeFileAtomic(s.path(storeIDFile), append(id, '\n'))
	}
	return s.update(func(txn *badger.Txn) error { return txn.Set(keyStoreID, id) })
}

// manifestKeys lists the manifest CIDs under manifests/.
func (rb *rebuild) manifestKeys() (map[string]bool, error) {
	des, err := os.ReadDir(rb.s.path(manifestsDir))
	if err != nil {
		return nil, err
	}
	keys := make(map[string]bool)
	for _, de := range des {
		if n := de.Name(); !strings.HasSuffix(n, namesSuffix) && !strings.HasPrefix(n, ".") {
			keys[n] = true
		}
	}
	return keys, nil
}

// pkg recovers the package of manifest key, or moves its tree to
// lost+found/.
func (rb *rebuild) pkg(key string) error {
	s := rb.s
	c, cerr := cid.Decode(key)
	var m *metadata.Manifest
	var b []byte
	var names []NameVersion
	if cerr == nil {
		m, b, names = rb.manifestAndNames(c)
	}
	if m == nil || len(names) == 0 {
		return rb.lose(key)
	}
	_, terr := os.Lstat(s.TreePath(c))
	layout := currentLayout
	if terr == nil {
		layout = s.treeLayout(c)
	}
	good := true
	var damaged []string
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != metadata.TypeFile {
			continue
		}
		v := variantOf(layout, e)
		if !rb.object(e, m.ChunkSize, v) {
			good = false
			if name := objectName(e.Hash, v); rb.quarantined[name] {
				damaged = append(damaged, name)
			}
		}
	}
	reason := ""
	if len(damaged) > 0 {
		reason = "object " + damaged[0] + " failed verification in the index rebuild"
	}
	if terr == nil {
		if problems := s.checkTree(c, m, layout, false); len(problems) > 0 {
			s.log.Warn("rebuild: tree differs from its manifest; it is relinked by the next download", "manifest", key, "problem", problems[0])
			good = false
			if reason == "" {
				reason = problems[0]
			}
		}
	}
	state := StatePartial
	if good && terr == nil {
		state = StateComplete
	}
	err := s.update(func(txn *badger.Txn) error {
		rec := pkgRecord{Name: names[0].Name, Version: names[0].Version, State: state, Keep: true, Created: time.Now().UTC(), Layout: layout}
		for _, n := range names[1:] {
			rec.addName(n.Name, n.Version)
		}
		if err := setJSON(txn, []byte(prefixPackage+key), &rec); err != nil {
			return err
		}
		if err := txn.Set([]byte(prefixManifest+key), b); err != nil {
			return err
		}
		for _, n := range names {
			if err := txn.Set(nameKey(n.Name, n.Version), []byte(key)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if terr == nil && reason != "" {
		// A package that had its tree: the daemon fetches it again at
		// start, not only when asked.
		if err := s.markRepair(key, damaged, reason); err != nil {
			return err
		}
	}
	for _, n := range names {
		rb.rep.Packages = append(rb.rep.Packages, fmt.Sprintf("%s@%s %s %s", n.Name, n.Version, key, state))
	}
	return nil
}

// manifestAndNames reads the manifest and names of c from manifests/, or
// from the lookup (and then saves them there).
func (rb *rebuild) manifestAndNames(c cid.Cid) (*metadata.Manifest, []byte, []NameVersion) {
	s := rb.s
	m, b, err := s.readManifestFile(c)
	var names []NameVersion
	if err == nil {
		nf, nerr := s.readNames(c.String())
		if nerr == nil {
			for _, n := range nf.Names {
				names = append(names, NameVersion{n.Name, n.Version})
			}
			return m, b, names
		}
		err = nerr
	}
	if !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("rebuild: manifest files unusable", "manifest", c, "err", err)
	}
	if rb.lookup == nil {
		return nil, nil, nil
	}
	names, b, err = rb.lookup(rb.ctx, c)
	if err == nil && len(names) > 0 {
		for _, n := range names {
			if err = s.saveManifest(c, b, n.Name, n.Version, true); err != nil {
				break
			}
		}
	}
	if err == nil {
		m, b, err = s.readManifestFile(c)
	}
	if err != nil {
		s.log.Warn("rebuild: manifest not found", "manifest", c, "err", err)
		return nil, nil, nil
	}
	return m, b, names
}

// object re-hashes and records the object of e (once per object name); a
// bad one is quarantined. It reports whether the object is good.
func (rb *rebuild) object(e *metadata.Entry, chunkSize int64, v ObjectVariant) bool {
	s := rb.s
	name := objectName(e.Hash, v)
	if ok, seen := rb.objects[name]; seen {
		return ok
	}
	p := s.ObjectPath(e.Hash, v)
	rec := objRecord{Hash: e.Hash, Size: e.Size, Perm: uint32(v.Perm), UID: v.UID, GID: v.GID, ChunkSize: chunkSize, Chunks: e.Chunks}
	ok := false
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		rb.rep.Missing++
	} else if err := verifyObjectFile(p, &rec); err != nil {
		dst, qerr := s.quarantineFile(p, name)
		s.log.Warn("rebuild: object fails verification; quarantined", "object", name, "err", err, "quarantine", dst, "quarantine_err", qerr)
		rb.rep.Damaged = append(rb.rep.Damaged, err.Error())
		rb.quarantined[name] = true
	} else if err := s.recordObject(&rec, partialID(e.Hash, e.Size)); err != nil {
		s.log.Warn("rebuild: record object", "object", name, "err", err)
	} else {
		ok = true
		rb.rep.Objects++
	}
	rb.objects[name] = ok
	return ok
}

// treeLayout tells the layout of the existing tree of c by its root
// directory's mode: 0555 in the read-only layout, 0755 in the full one.
func (s *Store) treeLayout(c cid.Cid) int {
	st, err := os.Lstat(s.TreePath(c))
	if err == nil && st.Mode().Perm() == os.FileMode(rootDirMode(layoutReadOnly)) {
		return layoutReadOnly
	}
	return layoutFull
}

// lose moves the tree of key (if any) to lost+found/.
func (rb *rebuild) lose(key string) error {
	s := rb.s
	src := s.path(treesDir, key)
	if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := os.MkdirAll(s.path(lostFoundDir), 0o700); err != nil {
		return err
	}
	dst := s.path(lostFoundDir, key)
	if _, err := os.Lstat(dst); err == nil {
		dst += "." + randomSuffix()
	}
	if err := os.Rename(src, dst); err != nil {
		return err
	}
	s.log.Warn("rebuild: tree without manifest or name moved to lost+found", "tree", dst)
	rb.rep.LostTrees = append(rb.rep.LostTrees, dst)
	return nil
}
