package share

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// flagsSupported reports whether dir's file system answers FS_IOC_GETFLAGS
// and keeps FS_TOPDIR_FL (ext2/3/4 do; tmpfs and others refuse it).
func flagsSupported(t *testing.T, dir string) bool {
	t.Helper()
	probe := filepath.Join(dir, "probe")
	if err := os.Mkdir(probe, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(probe)
	return markTopDir(probe) == nil && topDirFlag(probe)
}

// The store's directories where files are created (partial/ and tmp/)
// spread their sub-directories over the file system, at every Open (tmp/
// is made anew each time); the store works where the flag does not exist.
func TestOpenMarksCreateDirs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for round := 0; round < 2; round++ {
		s, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if flagsSupported(t, dir) {
			for _, d := range []string{partialDir, tmpDir} {
				if !topDirFlag(s.path(d)) {
					t.Errorf("round %d: %s has no FS_TOPDIR_FL after Open", round, d)
				}
			}
			if topDirFlag(s.path(objectsDir)) {
				t.Errorf("round %d: objects/ marked too: only where files are created", round)
			}
		} else {
			t.Logf("%s: no FS_TOPDIR_FL on this file system, checked only that Open works", dir)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// A file system without the flag: Open still works.
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() && unix.Access("/dev/shm", unix.W_OK) == nil {
		shm, err := os.MkdirTemp("/dev/shm", "stork-topdir-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(shm)
		s, err := Open(Config{Dir: shm})
		if err != nil {
			t.Fatalf("Open on /dev/shm: %v", err)
		}
		s.Close()
	}
}

// topDirFlag reports whether dir carries FS_TOPDIR_FL (false where the
// file system has no such flag).
func topDirFlag(dir string) bool {
	var flags uint32
	err := controlPath(dir, func(fd int) (err error) {
		flags, err = unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
		return err
	})
	return err == nil && flags&fsTopDirFlag != 0
}
