package share

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

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

// watchCreates watches dir for names created or moved in, and returns
// the function that reads them.
func watchCreates(t *testing.T, dir string) func() []string {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}
	return func() []string {
		var names []string
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if n <= 0 || err != nil {
				return names
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				names = append(names, string(bytes.TrimRight(name, "\x00")))
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}
}

// Downloads write their manifest files and build their trees in tmp/'s
// fanout directories (inScratch), not side by side in manifests/ and
// tmp/: concurrent downloads of small packages then do not all create in
// one directory. manifests/ sees only the final names arrive.
func TestScratchSpreadsCreates(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir())
	inManifests := watchCreates(t, s.path(manifestsDir))
	inTmp := watchCreates(t, s.path(tmpDir))
	r := rand.New(rand.NewSource(7))
	var want []string
	for i := 0; i < 4; i++ {
		p := makePkg(t, 1<<16, file("f", 0o644, randBytes(r, 1000+i)))
		d, err := s.BeginPackage("p", fmt.Sprint(i), p.cid, p.bytes)
		if err != nil {
			t.Fatal(err)
		}
		putAll(t, d, p, 2, int64(i))
		if err := d.Commit(); err != nil {
			t.Fatal(err)
		}
		want = append(want, p.cid.String(), p.cid.String()+namesSuffix)
	}
	got := inManifests()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("names created in manifests/ = %q, want only the final names %q", got, want)
	}
	fanouts := make(map[string]bool)
	for _, name := range want {
		fanouts[fanout(strings.TrimSuffix(name, namesSuffix))] = true
	}
	for _, name := range inTmp() {
		if !fanouts[name] {
			t.Errorf("tmp/%s created: want only the fanout directories of the packages' CIDs, %v", name, fanouts)
		}
	}
}

// A fanout directory of tmp/ removed while the store is open is made
// again: the next write there does not fail.
func TestScratchRemadeIfRemoved(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir())
	r := rand.New(rand.NewSource(8))
	for i := 0; i < 3; i++ {
		p := makePkg(t, 1<<16, file("f", 0o644, randBytes(r, 500)))
		d, err := s.BeginPackage("p", fmt.Sprint(i), p.cid, p.bytes)
		if err != nil {
			t.Fatalf("package %d: %v", i, err)
		}
		putAll(t, d, p, 1, int64(i))
		if err := d.Commit(); err != nil {
			t.Fatalf("package %d: %v", i, err)
		}
		checkTree(t, s.TreePath(p.cid), p)
		des, err := os.ReadDir(s.path(tmpDir))
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range des {
			if err := os.RemoveAll(s.path(tmpDir, de.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
}
