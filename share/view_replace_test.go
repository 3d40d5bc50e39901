package share

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// An upgrade switches a view at once: readers racing with ReplaceView see
// the old tree or the new, never a mix of the two and never nothing; a file
// of the old version held open keeps its old bytes; a new open sees the new
// version; one mount is left at the view's place.
func TestReplaceViewAtomic(t *testing.T) {
	for _, mode := range []ViewMode{ViewBind, ViewOverlay} {
		t.Run(string(mode), func(t *testing.T) {
			s, _, root := viewStore(t)
			v1 := makePkg(t, testChunk, file("a", 0o644, []byte("one-a\n")), file("b", 0o644, []byte("one-b\n")))
			v2 := makePkg(t, testChunk, file("a", 0o644, []byte("two-a\n")), file("b", 0o644, []byte("two-b\n")))
			install(t, s, v1, "up", "1")
			install(t, s, v2, "up", "2")
			at := filepath.Join(root, "vm1", "up")
			upper := func(p *testPkg) string {
				if mode != ViewOverlay {
					return ""
				}
				return filepath.Join(root, "overlays", p.cid.String())
			}
			old := viewAt(s.TreePath(v1.cid), at, mode, upper(v1))
			nw := viewAt(s.TreePath(v2.cid), at, mode, upper(v2))
			if err := MountView(old); err != nil {
				t.Fatalf("MountView(v1) = %v", err)
			}
			t.Cleanup(func() { unmountBelow(filepath.Dir(at)) })
			held, err := os.Open(filepath.Join(at, "a"))
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()

			var stop atomic.Bool
			var bad atomic.Value
			var wg sync.WaitGroup
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 1_000_000 && !stop.Load(); i++ {
						if err := readPair(at); err != nil {
							bad.Store(err)
							return
						}
					}
				}()
			}
			err = ReplaceView(old, nw)
			stop.Store(true)
			wg.Wait()
			if err != nil {
				t.Fatalf("ReplaceView = %v", err)
			}
			if e := bad.Load(); e != nil {
				t.Errorf("a reader during the switch: %v", e)
			}
			if b, err := io.ReadAll(held); err != nil || string(b) != "one-a\n" {
				t.Errorf("file held open across the upgrade reads %q, %v, want the old bytes", b, err)
			}
			if b, err := os.ReadFile(filepath.Join(at, "a")); err != nil || string(b) != "two-a\n" {
				t.Errorf("new open after the upgrade reads %q, %v, want the new bytes", b, err)
			}
			if err := CheckView(nw); err != nil {
				t.Errorf("CheckView(new) = %v", err)
			}
			if got := countMountsAt(t, at); got != 1 {
				t.Errorf("%d mounts at %s after the upgrade, want 1 (the old one detached)", got, at)
			}
		})
	}
}

// readPair reads a and b of the view: both from one version.
func readPair(at string) error {
	d, err := os.Open(at)
	if err != nil {
		return err
	}
	defer d.Close()
	a, err := readAt(int(d.Fd()), "a")
	if err != nil {
		return err
	}
	b, err := readAt(int(d.Fd()), "b")
	if err != nil {
		return err
	}
	if !bytes.Equal(a[:4], b[:4]) {
		return errors.New("a mix of versions: " + string(a) + " and " + string(b))
	}
	return nil
}

func readAt(dirfd int, name string) ([]byte, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return io.ReadAll(f)
}

func countMountsAt(t *testing.T, path string) int {
	t.Helper()
	ms, err := Mounts()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range ms {
		if m.Point == path {
			n++
		}
	}
	return n
}

// ReplaceView refuses a view that is not the one mounted there and leaves
// that mount alone.
func TestReplaceViewRefusesOtherMount(t *testing.T) {
	s, p, root := viewStore(t)
	v2 := makePkg(t, testChunk, file("x", 0o644, []byte("x\n")))
	install(t, s, v2, "other", "1")
	at := filepath.Join(root, "vm1", "pkg")
	cur := viewAt(s.TreePath(p.cid), at, ViewBind, "")
	if err := MountView(cur); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountBelow(filepath.Dir(at)) })
	claimed := viewAt(s.TreePath(v2.cid), at, ViewBind, "")
	if err := ReplaceView(claimed, cur); !errors.Is(err, ErrViewReplaced) {
		t.Errorf("ReplaceView(a view not mounted there) = %v, want ErrViewReplaced", err)
	}
	if err := CheckView(cur); err != nil {
		t.Errorf("the mount there after a refused replace: %v", err)
	}
}
