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
func (d *Download) Commit() error {
	d.commit.Lock()
	defer d.commit.Unlock()
	s := d.s
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return ErrClosed
	}
	if d.removed.Load() {
		return fmt.Errorf("package %s: %w: removed", d.cid, ErrNotFound)
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
	if s.downloads[d.cid.String()] == d {
		delete(s.downloads, d.cid.String())
	}
	s.mu.Unlock()
	d.release()
	s.log.Info("package committed", "package", d.name+"@"+d.version, "manifest", d.cid, "tree", s.TreePath(d.cid))
	return nil
}

// commitTree builds the tree of a package whose objects all exist (making
// permission variants where needed) and marks it complete. s.life is held.
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
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != metadata.TypeFile {
			continue
		}
		if err := s.ensureObject(e, m.ChunkSize); err != nil {
			return fmt.Errorf("package %s: file %q: %w", c, e.Path, err)
		}
	}
	if statErr != nil {
		if err := s.buildTree(c, m); err != nil {
			return fmt.Errorf("package %s: build tree: %w", c, err)
		}
	} else if err := s.relinkTree(c, m); err != nil {
		// The tree of a package made partial again (a damaged object was
		// quarantined): views bound to it see the repaired files.
		return fmt.Errorf("package %s: relink tree: %w", c, err)
	}
	err := s.update(func(txn *badger.Txn) error {
		var rec pkgRecord
		found, err := getJSON(txn, []byte(prefixPackage+key), &rec)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("package %s: %w", c, ErrNotFound)
		}
		rec.State = StateComplete
		return setJSON(txn, []byte(prefixPackage+key), &rec)
	})
	if err != nil {
		return fmt.Errorf("package %s: mark complete: %w", c, err)
	}
	s.repaired(key)
	return nil
}

// ensureObject makes sure the object for e exists with e's permission. If
// only another permission of the same content is stored, it copies it.
func (s *Store) ensureObject(e *metadata.Entry, chunkSize int64) error {
	perm := ObjectPerm(e.Mode)
	name := objectName(e.Hash, perm)
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
		if objectName(r.Hash, os.FileMode(r.Perm)) == name {
			return nil
		}
	}
	src := recs[0]
	srcPath := s.ObjectPath(src.Hash, os.FileMode(src.Perm))
	rec := src
	rec.Perm = uint32(perm)
	tmp, err := s.copyToTmp(srcPath, perm)
	if err != nil {
		return fmt.Errorf("object %s: copy for mode %#o: %w", e.Hash, perm, err)
	}
	if err := verifyObjectFile(tmp, &rec); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := s.placeObject(tmp, s.ObjectPath(e.Hash, perm), &rec); err != nil {
		os.Remove(tmp)
		return err
	}
	return s.recordObject(&rec, partialID(e.Hash, e.Size))
}

// copyToTmp copies src into a new file under tmp/ with permission perm,
// synced.
func (s *Store) copyToTmp(src string, perm os.FileMode) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.CreateTemp(s.path(tmpDir), "object-*")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, in)
	if err == nil && s.sync {
		err = out.Sync()
	}
	if err == nil {
		err = out.Chmod(perm)
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

// buildTree builds trees/<c>: real directories, hard links to objects and
// symlinks, in tmp/ first; directories then get their manifest mode minus
// the write bits (the tree root 0555), the file system is synced, and the
// tree is renamed into place.
func (s *Store) buildTree(c cid.Cid, m *metadata.Manifest) error {
	tmp := s.path(tmpDir, "tree-"+c.String()+"-"+randomSuffix())
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = removeAll(tmp)
		}
	}()
	for i := range m.Entries {
		e := &m.Entries[i]
		p := filepath.Join(tmp, filepath.FromSlash(e.Path))
		var err error
		switch e.Type {
		case metadata.TypeDir:
			err = os.Mkdir(p, 0o700)
		case metadata.TypeFile:
			err = os.Link(s.ObjectPath(e.Hash, ObjectPerm(e.Mode)), p)
		case metadata.TypeSymlink:
			err = os.Symlink(e.Target, p)
		default:
			err = fmt.Errorf("entry %q: %w", e.Path, metadata.ErrUnsupportedEntry)
		}
		if err != nil {
			return err
		}
	}
	// Children before parents, so that a directory is still searchable
	// while its children are changed.
	for i := len(m.Entries) - 1; i >= 0; i-- {
		e := &m.Entries[i]
		if e.Type != metadata.TypeDir {
			continue
		}
		if err := os.Chmod(filepath.Join(tmp, filepath.FromSlash(e.Path)), dirMode(e.Mode)); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o555); err != nil {
		return err
	}
	if s.sync {
		if err := syncFS(tmp); err != nil {
			return err
		}
	}
	dst := s.path(treesDir, c.String())
	if err := renameNoReplace(tmp, dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // an earlier commit got there first
		}
		return err
	}
	ok = true
	return s.syncDir(s.path(treesDir))
}

// dirMode is the mode a tree directory gets: the manifest's bits without
// any write bit, so that no one but root can change the store through it.
func dirMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o555)
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	return mode
}
