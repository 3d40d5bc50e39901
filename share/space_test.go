package share

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFullFileSystemKeepsIndexReserve: a download larger than the store's
// file system fails with ENOSPC while indexReserve bytes are still free,
// so that the index can go on recording (badger writes through a memory
// map, and a page it cannot get kills the process); the store then drops
// the failed download and takes a package that fits.
func TestFullFileSystemKeepsIndexReserve(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=40m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	free := func() int64 {
		var st unix.Statfs_t
		if err := unix.Statfs(root, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Bavail) * st.Bsize
	}
	s := openStore(t, filepath.Join(root, "store"))
	r := rand.New(rand.NewSource(1))
	huge := makePkg(t, 1<<20, file("huge", 0o644, randBytes(r, int(free()))))
	d, err := s.BeginPackage("huge", "1", huge.cid, huge.bytes)
	if err != nil {
		t.Fatal(err)
	}
	err = putAllErr(d, huge, 4, 1)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("putting a package larger than the file system = %v, want ENOSPC", err)
	}
	if f := free(); f < indexReserve/2 {
		t.Errorf("%d bytes free after the failed download, want about indexReserve (%d) kept for the index", f, indexReserve)
	}
	d.Close()
	if _, err := s.GCWith(t.Context(), GCOptions{Partial: true}); err != nil {
		t.Fatalf("GC --partial on the full file system = %v", err)
	}
	small := makePkg(t, testChunk, file("small", 0o644, randBytes(r, 1<<20)))
	install(t, s, small, "small", "1")
}
