package share

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A VM controls everything below its root and may plant symlinks there to
// make the daemon (root) mount over, write into, chmod or remove a host
// directory. These tests plant them before and during MountView and
// UnmountView and check that nothing outside the VM's root changes.

// hostDir is a directory outside the VM's root, standing for /etc: its
// entries, modes and times are recorded so that any change shows.
type hostDir struct {
	path string
	snap map[string]string
}

func newHostDir(t *testing.T, path string) *hostDir {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(path, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "passwd"), []byte("root:x:0:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "sub", "shadow"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &hostDir{path: path}
	h.snap = h.snapshot(t)
	return h
}

func (h *hostDir) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(h.path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = info.Mode().String() + " " + info.ModTime().String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unchanged fails the test if anything in the host directory was created,
// removed, chmodded or modified, or if anything is mounted on or below it.
func (h *hostDir) unchanged(t *testing.T, when string) {
	t.Helper()
	now := h.snapshot(t)
	for p, was := range h.snap {
		if got, ok := now[p]; !ok {
			t.Errorf("%s: %s was removed", when, p)
		} else if got != was {
			t.Errorf("%s: %s changed: %s, was %s", when, p, got, was)
		}
	}
	for p := range now {
		if _, ok := h.snap[p]; !ok {
			t.Errorf("%s: %s was created", when, p)
		}
	}
	ms, err := Mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Point == h.path || strings.HasPrefix(m.Point, h.path+"/") {
			t.Errorf("%s: %s (%s) is mounted at %s, outside the VM's root", when, m.Source, m.FSType, m.Point)
		}
	}
}

// mountsOutside lists the mount points below under that are not below
// vmRoot: every view must be below its VM's root.
func mountsOutside(t *testing.T, under, vmRoot string) []string {
	t.Helper()
	ms, err := Mounts()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		if strings.HasPrefix(m.Point, under+"/") && !strings.HasPrefix(m.Point, vmRoot+"/") {
			out = append(out, m.Point)
		}
	}
	return out
}

// unmountBelow detaches every mount below dir (what a failed test left).
func unmountBelow(dir string) {
	ms, _ := Mounts()
	for i := len(ms) - 1; i >= 0; i-- {
		if strings.HasPrefix(ms[i].Point, dir+"/") {
			_ = unix.Unmount(ms[i].Point, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		}
	}
}

var viewModes = []ViewMode{ViewBind, ViewOverlay, ViewLink}

func TestViewRefusesSymlinksBelowRoot(t *testing.T) {
	s, p, base := viewStore(t)
	tree := s.TreePath(p.cid)
	for _, mode := range viewModes {
		for _, tc := range []struct {
			name  string
			plant string // made a symlink to the host directory
			path  string // the view's path below the root
		}{
			{"target", "opt/pkg", "opt/pkg"},
			{"into", "opt", "opt/pkg"},
			{"intermediate", "srv/a", "srv/a/b/pkg"},
			{"relative target", "pkg", "pkg"},
		} {
			t.Run(string(mode)+"/"+tc.name, func(t *testing.T) {
				dir := filepath.Join(base, "case-"+string(mode)+"-"+strings.ReplaceAll(tc.name, " ", "-"))
				vmRoot := filepath.Join(dir, "vm")
				host := newHostDir(t, filepath.Join(dir, "host"))
				t.Cleanup(func() { unmountBelow(dir) })
				link := filepath.Join(vmRoot, tc.plant)
				if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
					t.Fatal(err)
				}
				target := host.path
				if tc.name == "relative target" {
					target = "../host"
				}
				if err := os.Symlink(target, link); err != nil {
					t.Fatal(err)
				}
				v := View{Tree: tree, Root: vmRoot, Path: tc.path, Mode: mode, Upper: filepath.Join(dir, "upper")}
				if err := MountView(v); err == nil {
					t.Errorf("MountView(%s at %s, %s a symlink) = nil, want an error", mode, tc.path, tc.plant)
				}
				host.unchanged(t, "after MountView")
				if out := mountsOutside(t, dir, vmRoot); len(out) > 0 {
					t.Errorf("mounts outside the VM's root: %v", out)
				}
				err := UnmountView(v)
				if err != nil && !errors.Is(err, ErrViewReplaced) {
					t.Errorf("UnmountView = %v, want nil or ErrViewReplaced", err)
				}
				host.unchanged(t, "after UnmountView")
			})
		}
	}
}

// TestViewUninstallAfterVMReplacedIt: the VM replaces a directory of its
// view (or on the way to it) by a symlink to a host directory after the
// view is made; removing the view removes only what is below the root.
func TestViewUninstallAfterVMReplacedIt(t *testing.T) {
	s, p, base := viewStore(t)
	tree := s.TreePath(p.cid)
	for _, mode := range viewModes {
		t.Run(string(mode), func(t *testing.T) {
			dir := filepath.Join(base, "swap-"+string(mode))
			vmRoot := filepath.Join(dir, "vm")
			host := newHostDir(t, filepath.Join(dir, "host"))
			t.Cleanup(func() { unmountBelow(dir) })
			v := View{Tree: tree, Root: vmRoot, Path: "opt/pkg", Mode: mode, Upper: filepath.Join(dir, "upper")}
			if err := MountView(v); err != nil {
				t.Fatalf("MountView = %v", err)
			}
			if err := CheckView(v); err != nil {
				t.Errorf("CheckView after MountView = %v", err)
			}
			opt := filepath.Join(vmRoot, "opt")
			if mode == ViewLink {
				// A directory of the farm itself becomes a symlink.
				bin := filepath.Join(opt, "pkg", "bin")
				if err := os.Chmod(filepath.Join(opt, "pkg"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.RemoveAll(bin); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(host.path, bin); err != nil {
					t.Fatal(err)
				}
			} else {
				// The directory holding the mount point moves away.
				if err := os.Rename(opt, opt+".moved"); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(host.path, opt); err != nil {
					t.Fatal(err)
				}
				if err := CheckView(v); !errors.Is(err, ErrViewReplaced) {
					t.Errorf("CheckView with %s a symlink = %v, want ErrViewReplaced", opt, err)
				}
			}
			err := UnmountView(v)
			if err != nil && !errors.Is(err, ErrViewReplaced) {
				t.Errorf("UnmountView = %v, want nil or ErrViewReplaced", err)
			}
			host.unchanged(t, "after UnmountView")
			checkTree(t, tree, p)
		})
	}
}

// TestViewSymlinkRace swaps a directory on the way to the view for a
// symlink to a host directory, back and forth, while views are made and
// removed (bounded: 200 swaps or 10 s).
func TestViewSymlinkRace(t *testing.T) {
	s, p, base := viewStore(t)
	tree := s.TreePath(p.cid)
	for _, mode := range viewModes {
		for _, swap := range []string{"opt", "opt/pkg"} {
			t.Run(string(mode)+"/"+strings.ReplaceAll(swap, "/", "-"), func(t *testing.T) {
				dir := filepath.Join(base, "race-"+string(mode)+"-"+strings.ReplaceAll(swap, "/", "-"))
				vmRoot := filepath.Join(dir, "vm")
				host := newHostDir(t, filepath.Join(dir, "host"))
				t.Cleanup(func() { unmountBelow(dir) })
				if err := os.MkdirAll(filepath.Join(vmRoot, swap), 0o755); err != nil {
					t.Fatal(err)
				}
				v := View{Tree: tree, Root: vmRoot, Path: "opt/pkg", Mode: mode, Upper: filepath.Join(dir, "upper")}
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					racer(filepath.Join(vmRoot, swap), host.path, stop)
				}()
				deadline := time.Now().Add(10 * time.Second)
				made := 0
				for i := 0; i < 200 && time.Now().Before(deadline); i++ {
					if MountView(v) == nil {
						made++
					}
					_ = UnmountView(v)
				}
				close(stop)
				wg.Wait()
				t.Logf("%d of the views were made while the VM swapped %s", made, swap)
				host.unchanged(t, "after the race")
				if out := mountsOutside(t, dir, vmRoot); len(out) > 0 {
					t.Errorf("mounts outside the VM's root: %v", out)
				}
			})
		}
	}
}

// racer swaps the directory at path for a symlink to target and back
// until stop closes (at most 100,000 times and for at most 10 s).
func racer(path, target string, stop <-chan struct{}) {
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 100_000 && time.Now().Before(deadline); i++ {
		select {
		case <-stop:
			return
		default:
		}
		moved := path + ".real"
		if os.Rename(path, moved) != nil {
			continue
		}
		_ = os.Symlink(target, path)
		time.Sleep(20 * time.Microsecond)
		_ = os.Remove(path)
		_ = os.Rename(moved, path)
	}
}
