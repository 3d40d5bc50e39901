package share

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// relinkTrees relinks the tree of c (relinkTree) and its setuid variant,
// if any: a variant no view mounts is removed (SetuidTree builds it again
// when a view needs it), a mounted one is relinked like the tree.
// s.life is held.
func (s *Store) relinkTrees(c cid.Cid, m *metadata.Manifest, layout int) error {
	if err := s.relinkTree(s.TreePath(c), m, layout, false); err != nil {
		return err
	}
	variant := s.setuidTreePath(c)
	if _, err := os.Lstat(variant); err != nil {
		return nil
	}
	tms, err := s.TreeMounts()
	if err != nil {
		return err
	}
	mounted := false
	for _, tm := range tms {
		mounted = mounted || (tm.Setuid && tm.Tree == c.String())
	}
	if !mounted {
		return removeAll(variant)
	}
	return s.relinkTree(variant, m, layout, true)
}

// relinkTree makes the existing tree at tree match its manifest again, in
// place: every file entry that is not a hard link to its object (the
// object was quarantined and fetched again: a new inode), every missing
// or wrong symlink and every missing directory is put right, each file
// and symlink replaced by one rename. With setuid (a setuid variant
// tree), files with setuid or setgid are private copies and left alone. A
// view that bind-mounts the tree shows the tree's directories, so it shows
// the new files at once; an overlay view looks its lower layer up once and
// may show the old file until the kernel drops that cached entry (or the
// view is mounted again); a link view holds its own links to the old
// inodes and must be installed again. Every object exists (commitTree
// made sure). s.life is held.
func (s *Store) relinkTree(tree string, m *metadata.Manifest, layout int, setuid bool) error {
	fixed := 0
	for i := range m.Entries {
		e := &m.Entries[i]
		p := filepath.Join(tree, filepath.FromSlash(e.Path))
		st, err := os.Lstat(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		switch e.Type {
		case metadata.TypeDir:
			if err == nil && st.IsDir() {
				continue
			}
			if err == nil {
				if err := inWritableDir(filepath.Dir(p), func() error { return removeAll(p) }); err != nil {
					return err
				}
			}
			err = inWritableDir(filepath.Dir(p), func() error {
				if err := os.Mkdir(p, 0o700); err != nil {
					return err
				}
				if layout != layoutReadOnly {
					if err := lchown(p, e.UID, e.GID); err != nil {
						return err
					}
				}
				return os.Chmod(p, dirMode(layout, e.Mode))
			})
		case metadata.TypeSymlink:
			if t, lerr := os.Readlink(p); lerr == nil && t == e.Target {
				continue
			}
			err = s.replaceEntry(p, func(tmp string) error {
				if err := os.Symlink(e.Target, tmp); err != nil || layout == layoutReadOnly {
					return err
				}
				return lchown(tmp, e.UID, e.GID)
			})
		case metadata.TypeFile:
			if setuid && e.Mode&0o6000 != 0 && err == nil {
				continue
			}
			obj := s.ObjectPath(e.Hash, variantOf(layout, e))
			ost, oerr := os.Lstat(obj)
			if oerr != nil {
				return oerr
			}
			if err == nil && os.SameFile(st, ost) {
				continue
			}
			err = s.replaceEntry(p, func(tmp string) error { return os.Link(obj, tmp) })
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("entry %q: %w", e.Path, err)
		}
		fixed++
	}
	if fixed > 0 {
		s.log.Info("tree relinked", "tree", tree, "entries", fixed)
		if s.sync {
			return s.fsync.flush()
		}
	}
	return nil
}

// replaceEntry creates a new entry with mk at a temporary name beside p
// and renames it over p.
func (s *Store) replaceEntry(p string, mk func(tmp string) error) error {
	tmp := filepath.Join(filepath.Dir(p), ".stork-relink-"+randomSuffix())
	return inWritableDir(filepath.Dir(p), func() error {
		if err := mk(tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			os.Remove(tmp)
			return err
		}
		return nil
	})
}

// inWritableDir runs fn, and if fn is refused permission in the read-only
// tree directory dir, makes dir writable by its owner for a second try and
// restores its mode after.
func inWritableDir(dir string, fn func() error) error {
	err := fn()
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	st, serr := os.Lstat(dir)
	if serr != nil {
		return err
	}
	if err := os.Chmod(dir, st.Mode()|0o200); err != nil {
		return err
	}
	defer os.Chmod(dir, st.Mode())
	return fn()
}
