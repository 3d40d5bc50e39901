package share

import (
	"fmt"
	"os"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"

	"github.com/storkpm/stork/metadata"
)

// Setuid and setgid. Objects never carry either bit (a store object is
// shared by every tree and view of the host, and a VM must not gain
// privileges from a package its policy does not trust that far), so a
// tree under trees/ shows its setuid and setgid files without them. A
// view for a VM whose policy allows setuid shows the setuid variant of
// the tree instead: setuid/<CID>/, built once per host and package when
// a view first needs it, where each file with setuid or setgid is a
// private copy carrying its full mode and owner and everything else is
// linked as in the tree. setuid/ is private to root (0700), so the bits
// take effect only through a view mounted without nosuid.

// setuidTreePath is where the setuid variant of c's tree lives.
func (s *Store) setuidTreePath(c cid.Cid) string { return s.path(setuidDir, c.String()) }

// SetuidTreePath returns where the setuid variant of c's tree lives
// (setuid/<CID>), whether it is built or not: see SetuidTree.
func (s *Store) SetuidTreePath(c cid.Cid) string { return s.setuidTreePath(c) }

// hasSetuid reports whether any file of m has setuid or setgid.
func hasSetuid(m *metadata.Manifest) bool {
	for i := range m.Entries {
		if e := &m.Entries[i]; e.Type == metadata.TypeFile && e.Mode&0o6000 != 0 {
			return true
		}
	}
	return false
}

// SetuidTree returns the tree a view that applies setuid and setgid shows
// for the complete package c: its setuid variant, built now if it does not
// exist yet, or the tree itself if no file of the package has either bit.
func (s *Store) SetuidTree(c cid.Cid) (string, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return "", ErrClosed
	}
	var rec pkgRecord
	err := s.db.View(func(txn *badger.Txn) error {
		found, err := getJSON(txn, []byte(prefixPackage+c.String()), &rec)
		if err == nil && !found {
			err = fmt.Errorf("package %s: %w", c, ErrNotFound)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	if rec.State != StateComplete {
		return "", fmt.Errorf("package %s: %w: %s, not complete", c, ErrIncomplete, rec.State)
	}
	m, _, err := s.Manifest(c)
	if err != nil {
		return "", err
	}
	if !hasSetuid(m) {
		return s.TreePath(c), nil
	}
	dst := s.setuidTreePath(c)
	s.setuidMu.Lock()
	defer s.setuidMu.Unlock()
	if _, err := os.Lstat(dst); err == nil {
		return dst, nil
	}
	if err := s.buildTree(c, m, dst, rec.Layout, true); err != nil {
		return "", fmt.Errorf("package %s: build setuid tree: %w", c, err)
	}
	s.log.Info("setuid tree built", "manifest", c, "tree", dst)
	return dst, nil
}

// checkSetuidCopy checks the private copy of e (setuid or setgid) in a
// setuid tree, stat'ed as st: a regular file with its full mode, its
// owner and its content.
func checkSetuidCopy(root int, e *metadata.Entry, st *unix.Stat_t, layout int, chunkSize int64) error {
	want := uint32(variantOf(layout, e).Perm) | e.Mode&0o6000
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%w: not a regular file", ErrObjectCorrupt)
	case st.Mode&0o7777 != want:
		return fmt.Errorf("%w: mode %#o, want %#o", ErrObjectCorrupt, st.Mode&0o7777, want)
	case !sameOwner(st.Uid, st.Gid, e.UID, e.GID):
		return fmt.Errorf("%w: owner %d:%d, want %d:%d", ErrObjectCorrupt, st.Uid, st.Gid, e.UID, e.GID)
	case st.Size != e.Size:
		return fmt.Errorf("%w: %d bytes, want %d", ErrObjectCorrupt, st.Size, e.Size)
	}
	fd, err := openBeneath(root, e.Path, unix.O_RDONLY|unix.O_NOFOLLOW)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), e.Path)
	defer f.Close()
	want32 := make([][]byte, len(e.Chunks))
	for j, cs := range e.Chunks {
		_, dg, err := metadata.ParseCID(cs)
		if err != nil {
			return err
		}
		want32[j] = dg
	}
	_, bad, err := checkContent(f, e.Size, chunkSize, want32)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: chunk %d differs", ErrObjectCorrupt, bad[0])
	}
	return nil
}
