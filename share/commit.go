package share

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// Commit makes the package usable: it requires every file's object, builds
// the tree in tmp/ and renames it to trees/<manifest CID> in one step, then
// marks the package complete. It is idempotent. A package with files still
// missing gets ErrIncomplete naming the first such file.
func (d *Partial) Commit() error {
	d.commit.Lock()
	defer d.commit.Unlock()
	s := d.s
	s.life.RLock()
	defer s.life.RUnlock()
	if err := d.usable(); err != nil {
		return err
	}
	for _, f := range d.files {
		pf := f.pf
		if pf == nil {
			continue
		}
		pf.mu.Lock()
		done, missing := pf.done, len(pf.index)-len(pf.present)
		pf.mu.Unlock()
		if !done {
			return fmt.Errorf("package %s: file %q: %w: %d chunks missing", d.cid, d.m.Entries[f.entry].Path, ErrIncomplete, missing)
		}
	}
	if err := s.commitTree(d.cid, d.m); err != nil {
		return err
	}
	s.mu.Lock()
	if s.filling[d.cid.String()] == d {
		delete(s.filling, d.cid.String())
	}
	s.mu.Unlock()
	d.release()
	s.log.Info("package committed", "package", d.name+"@"+d.version, "manifest", d.cid, "tree", s.TreePath(d.cid))
	return nil
}

// commitTree builds the tree of a package whose objects all exist (making
// the variants its layout needs) and marks it complete. s.life is held.
func (s *Store) commitTree(c cid.Cid, m *metadata.Manifest) error {
	key := c.String()
	tree := s.TreePath(c)
	var rec pkgRecord
	if err := s.db.View(func(txn *badger.Txn) error {
		found, err := getJSON(txn, []byte(prefixPackage+key), &rec)
		if err == nil && !found {
			err = fmt.Errorf("package %s: %w", c, ErrNotFound)
		}
		return err
	}); err != nil {
		return err
	}
	_, statErr := os.Lstat(tree)
	if rec.State == StateComplete && statErr == nil {
		return nil
	}
	// A tree that exists keeps the layout it was built with; a new one
	// gets the current layout.
	layout := rec.Layout
	if statErr != nil {
		layout = s.newLayout
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != metadata.TypeFile {
			continue
		}
		if err := s.ensureObject(e, m.ChunkSize, variantOf(layout, e)); err != nil {
			return fmt.Errorf("package %s: file %q: %w", c, e.Path, err)
		}
	}
	if statErr != nil {
		if err := s.buildTree(c, m, tree, layout, false); err != nil {
			return fmt.Errorf("package %s: build tree: %w", c, err)
		}
	} else if err := s.relinkTrees(c, m, layout); err != nil {
		// The tree of a package made partial again (a damaged object was
		// quarantined): views bound to it see the repaired files.
		return fmt.Errorf("package %s: relink tree: %w", c, err)
	}
	err := s.updateLazy(func(txn *badger.Txn) error {
		found, err := updatePackageTxn(txn, key, func(r *pkgRecord) { r.State, r.Layout = StateComplete, layout })
		if err == nil && !found {
			err = fmt.Errorf("package %s: %w", c, ErrNotFound)
		}
		if err == nil {
			err = s.markUnsynced(txn, prefixUnsyncedPackage, key)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("package %s: mark complete: %w", c, err)
	}
	s.repaired(key)
	return nil
}

// ensureObject makes sure the object for e exists as variant v. If only
// other variants of the same content are stored, it copies one.
func (s *Store) ensureObject(e *metadata.Entry, chunkSize int64, v ObjectVariant) error {
	name := objectName(e.Hash, v)
	var recs []objRecord
	if err := s.db.View(func(txn *badger.Txn) (err error) {
		recs, err = findObject(txn, e.Hash)
		return err
	}); err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("object %s: %w", e.Hash, ErrIncomplete)
	}
	for _, r := range recs {
		if r.Size != e.Size {
			return fmt.Errorf("object %s: %w: stored with %d bytes, manifest says %d", e.Hash, ErrObjectCorrupt, r.Size, e.Size)
		}
		if objectName(r.Hash, r.variant()) == name {
			return nil
		}
	}
	src := recs[0]
	srcPath := s.ObjectPath(src.Hash, src.variant())
	rec := src
	rec.Perm, rec.UID, rec.GID = uint32(v.Perm), v.UID, v.GID
	rec.Ino, rec.Mtime = 0, 0
	tmp, err := s.copyToTmp(srcPath, v)
	if err != nil {
		return fmt.Errorf("object %s: copy as %s: %w", e.Hash, name, err)
	}
	if err := verifyObjectFile(tmp, &rec); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := s.placeObject(tmp, s.ObjectPath(e.Hash, v), &rec); err != nil {
		os.Remove(tmp)
		return err
	}
	return s.recordObject(&rec, partialID(e.Hash, e.Size))
}

// copyToTmp copies src into a new file under tmp/ as variant v (owner,
// then permission: chown clears setuid bits, so the mode comes last),
// synced.
func (s *Store) copyToTmp(src string, v ObjectVariant) (string, error) {
	return s.copyFile(src, s.path(tmpDir), "object-*", v.UID, v.GID, v.Perm)
}

// copyFile copies src into a new file in dir (named by pattern, as
// os.CreateTemp does) with owner uid:gid and mode, synced.
func (s *Store) copyFile(src, dir, pattern string, uid, gid uint32, mode os.FileMode) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, in)
	if err == nil && s.sync {
		err = out.Sync()
	}
	if err == nil && ownersApply {
		err = out.Chown(int(uid), int(gid))
	}
	if err == nil {
		err = out.Chmod(mode)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name())
		return "", err
	}
	return out.Name(), nil
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// buildTree builds the tree of c at dst: real directories, hard links to
// objects of the layout's variants, and symlinks (their targets as
// written: never followed), in tmp/ first. Then every entry gets its owner
// and directories their mode (layoutFull: the manifest's full mode;
// layoutReadOnly: without write bits), children before parents; the file
// system is synced and the tree renamed into place. With setuid, each file
// whose mode has setuid or setgid is a private copy carrying its full mode
// instead of a link to its object (see SetuidTree).
func (s *Store) buildTree(c cid.Cid, m *metadata.Manifest, dst string, layout int, setuid bool) error {
	var tmp string
	err := s.inScratch(c.String(), func(scratch string) error {
		tmp = filepath.Join(scratch, "tree-"+c.String()+"-"+randomSuffix())
		return os.Mkdir(tmp, 0o700)
	})
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = removeAll(tmp)
		}
	}()
	for i := range m.Entries {
		if err := s.makeEntry(tmp, &m.Entries[i], layout, setuid); err != nil {
			return err
		}
	}
	if err := finishDirs(tmp, m, layout); err != nil {
		return err
	}
	// A package's tree waits for no sync with checkpoints: its complete
	// record carries a w/ key (commitTree), which Open checks after a
	// power cut. A setuid variant, built at an install and checked by
	// nothing, is synced as without them.
	wait := s.waitsForFiles() || (s.sync && setuid)
	if wait {
		if err := s.fsync.flush(); err != nil {
			return err
		}
	}
	if err := renameNoReplace(tmp, dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // an earlier commit got there first
		}
		return err
	}
	ok = true
	if !wait {
		return nil
	}
	if parent := filepath.Dir(dst); parent != s.treesSync.dir {
		return s.syncDir(parent)
	}
	return s.treesSync.flush()
}

// makeEntry creates e below the tree directory root, whose directories
// are all still owner-writable directories made by this store: the path
// of e passes through no symlink (every parent of an entry is a directory
// entry).
func (s *Store) makeEntry(root string, e *metadata.Entry, layout int, setuid bool) error {
	p := filepath.Join(root, filepath.FromSlash(e.Path))
	var err error
	switch e.Type {
	case metadata.TypeDir:
		err = os.Mkdir(p, 0o700)
	case metadata.TypeFile:
		obj := s.ObjectPath(e.Hash, variantOf(layout, e))
		if setuid && e.Mode&0o6000 != 0 {
			err = s.setuidCopy(obj, p, e, layout)
		} else {
			err = os.Link(obj, p)
		}
	case metadata.TypeSymlink:
		err = os.Symlink(e.Target, p)
		if err == nil && layout != layoutReadOnly {
			err = lchown(p, e.UID, e.GID)
		}
	default:
		err = fmt.Errorf("entry %q: %w", e.Path, metadata.ErrUnsupportedEntry)
	}
	return err
}

// setuidCopy writes a private copy of the object obj at p with e's owner
// and its permission bits of the layout plus e's setuid and setgid bits.
func (s *Store) setuidCopy(obj, p string, e *metadata.Entry, layout int) error {
	v := variantOf(layout, e)
	mode := v.Perm
	if e.Mode&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if e.Mode&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	tmp, err := s.copyFile(obj, filepath.Dir(p), ".stork-setuid-*", e.UID, e.GID, mode)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// finishDirs gives the directories of the tree at root their owners and
// modes, children before parents, so that a directory is still searchable
// while its children are changed; the root of the tree gets 0755 (0555 in
// the read-only layout) and root's ownership.
func finishDirs(root string, m *metadata.Manifest, layout int) error {
	for i := len(m.Entries) - 1; i >= 0; i-- {
		e := &m.Entries[i]
		if e.Type != metadata.TypeDir {
			continue
		}
		p := filepath.Join(root, filepath.FromSlash(e.Path))
		if layout != layoutReadOnly {
			if err := lchown(p, e.UID, e.GID); err != nil {
				return err
			}
		}
		if err := os.Chmod(p, dirMode(layout, e.Mode)); err != nil {
			return err
		}
	}
	rootMode := os.FileMode(0o755)
	if layout == layoutReadOnly {
		rootMode = 0o555
	}
	return os.Chmod(root, rootMode)
}

// dirMode is the mode a tree directory of the given layout gets for
// manifest mode m: all of it (layoutFull), or without any write bit
// (layoutReadOnly).
func dirMode(layout int, m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if layout == layoutReadOnly {
		mode &= 0o555
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o4000 != 0 && layout != layoutReadOnly {
		mode |= os.ModeSetuid
	}
	return mode
}
