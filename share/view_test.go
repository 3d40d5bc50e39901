package share

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// viewStore returns a store on a fresh tmpfs (so that overlayfs works
// whatever file system the test directory is on) holding one committed
// package, and the package. It skips unless root can mount.
func viewStore(t *testing.T) (*Store, *testPkg, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("views need root")
	}
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "mode=0755"); err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("cannot mount: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	p := makePkg(t, testChunk,
		dir("bin", 0o755), file("bin/tool", 0o755, []byte("#!/bin/sh\necho tool\n")),
		file("data", 0o644, []byte("data\n")), symlink("link", "data"))
	s := openStore(t, filepath.Join(root, "store"))
	install(t, s, p, "pkg", "1")
	return s, p, root
}

// attacks are what a VM might try on its view of a package.
var attacks = []struct {
	name string
	do   func(view string) error
}{
	{"write", func(v string) error { return os.WriteFile(filepath.Join(v, "data"), []byte("evil"), 0o644) }},
	{"append", func(v string) error {
		f, err := os.OpenFile(filepath.Join(v, "bin/tool"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.Write([]byte("rm -rf /\n"))
		f.Close()
		return err
	}},
	{"truncate", func(v string) error { return os.Truncate(filepath.Join(v, "data"), 0) }},
	{"chmod", func(v string) error { return os.Chmod(filepath.Join(v, "data"), 0o666) }},
	{"chown", func(v string) error { return os.Chown(filepath.Join(v, "data"), 1000, 1000) }},
	{"unlink", func(v string) error { return os.Remove(filepath.Join(v, "bin/tool")) }},
	{"rename", func(v string) error { return os.Rename(filepath.Join(v, "data"), filepath.Join(v, "moved")) }},
	{"create", func(v string) error { return os.WriteFile(filepath.Join(v, "bin/new"), []byte("x"), 0o755) }},
	{"mkdir", func(v string) error { return os.Mkdir(filepath.Join(v, "newdir"), 0o755) }},
	{"symlink", func(v string) error { return os.Symlink("/etc/passwd", filepath.Join(v, "bin/pw")) }},
	{"chmod dir", func(v string) error { return os.Chmod(filepath.Join(v, "bin"), 0o777) }},
}

func TestViewBindIsReadOnly(t *testing.T) {
	s, p, root := viewStore(t)
	view := filepath.Join(root, "vm1", "pkg")
	v := viewAt(s.TreePath(p.cid), view, ViewBind, "")
	if err := MountView(v); err != nil {
		t.Fatalf("MountView(bind) = %v", err)
	}
	t.Cleanup(func() { unix.Unmount(view, unix.MNT_DETACH) })
	checkTree(t, view, p)
	for _, a := range attacks {
		if err := a.do(view); !errors.Is(err, unix.EROFS) {
			t.Errorf("%s through a bind view: err = %v, want EROFS", a.name, err)
		}
	}
	checkTree(t, s.TreePath(p.cid), p)
	verifyClean(t, s)
	if err := UnmountView(v); err != nil {
		t.Fatalf("UnmountView = %v", err)
	}
	if _, err := os.Stat(filepath.Join(view, "data")); !os.IsNotExist(err) {
		t.Errorf("view still shows the tree after UnmountView: %v", err)
	}
}

func TestViewOverlayCopiesUp(t *testing.T) {
	s, p, root := viewStore(t)
	view, upper := filepath.Join(root, "vm1", "pkg"), filepath.Join(root, "vm1", "upper")
	v := viewAt(s.TreePath(p.cid), view, ViewOverlay, upper)
	if err := MountView(v); err != nil {
		t.Fatalf("MountView(overlay) = %v", err)
	}
	t.Cleanup(func() { unix.Unmount(view, unix.MNT_DETACH) })
	checkTree(t, view, p)
	for _, a := range attacks {
		if err := a.do(view); err != nil {
			t.Errorf("%s through an overlay view: %v, want it to succeed in the VM's layer", a.name, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(upper, "upper", "bin", "tool")); len(b) == 0 {
		// unlinked after append: a whiteout is there instead
		if _, err := os.Lstat(filepath.Join(upper, "upper", "bin", "tool")); err != nil {
			t.Errorf("no trace of the VM's changes in its upper directory: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(upper, "upper", "bin", "new")); err != nil {
		t.Errorf("created file not in the upper directory: %v", err)
	}
	// The store did not change.
	checkTree(t, s.TreePath(p.cid), p)
	verifyClean(t, s)
	if err := UnmountView(v); err != nil {
		t.Fatalf("UnmountView = %v", err)
	}
}

func TestViewLinkSharesInodes(t *testing.T) {
	t.Parallel()
	p := makePkg(t, testChunk, dir("bin", 0o755), file("bin/tool", 0o755, []byte("tool")),
		file("data", 0o644, []byte("data\n")), symlink("link", "data"))
	s := openStore(t, t.TempDir())
	install(t, s, p, "pkg", "1")
	view := filepath.Join(s.Dir(), "views", "vm1", "pkg") // the store's file system
	v := viewAt(s.TreePath(p.cid), view, ViewLink, "")
	if err := MountView(v); err != nil {
		t.Fatalf("MountView(link) = %v", err)
	}
	checkTree(t, view, p)
	for _, e := range p.m.Entries {
		if e.Type != "file" {
			continue
		}
		a, err := os.Stat(filepath.Join(view, e.Path))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.Stat(s.ObjectPath(e.Hash, EntryVariant(&e)))
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(a, b) {
			t.Errorf("%s in the link view is not the object's inode", e.Path)
		}
	}
	if err := MountView(v); !errors.Is(err, ErrInvalid) {
		t.Errorf("MountView(link) over a non-empty directory = %v, want ErrInvalid", err)
	}
	if err := UnmountView(v); err != nil {
		t.Fatalf("UnmountView(link) = %v", err)
	}
	if _, err := os.Lstat(view); !os.IsNotExist(err) {
		t.Errorf("link view still there after UnmountView: %v", err)
	}
	checkTree(t, s.TreePath(p.cid), p)
	verifyClean(t, s)
}

func TestParseViewMode(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want ViewMode
		err  error
	}{{"bind", ViewBind, nil}, {"overlay", ViewOverlay, nil}, {"link", ViewLink, nil}, {"copy", "", ErrInvalid}} {
		if got, err := ParseViewMode(tt.in); got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("ParseViewMode(%q) = %q, %v, want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// The overlay's upper layer holds the VM's own changes: no other local
// user may read it, so the directory that holds upper/ and work/ is 0700.
func TestViewOverlayUpperIsPrivate(t *testing.T) {
	s, p, root := viewStore(t)
	upper := filepath.Join(root, "overlays", "vm1", p.cid.String())
	v := View{Tree: s.TreePath(p.cid), Root: filepath.Join(root, "vm1"), Path: "pkg", Mode: ViewOverlay, Upper: upper}
	if err := MountView(v); err != nil {
		t.Fatalf("MountView(overlay) = %v", err)
	}
	t.Cleanup(func() { _ = UnmountView(v) })
	st, err := os.Stat(upper)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o700 {
		t.Errorf("overlay upper directory %s has mode %v, want 0700", upper, got)
	}
	if err := os.WriteFile(filepath.Join(v.At(), "secret"), []byte("vm data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(upper, "upper", "secret")); err != nil {
		t.Errorf("the VM's file is not in its upper layer: %v", err)
	}
}

// A mount at a view's place that is not the view (another tree, another
// file system) is reported and left alone.
func TestViewOtherMountLeftAlone(t *testing.T) {
	s, p, root := viewStore(t)
	v := View{Tree: s.TreePath(p.cid), Root: filepath.Join(root, "vm1"), Path: "pkg", Mode: ViewBind}
	if err := os.MkdirAll(v.At(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", v.At(), "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(v.At(), unix.MNT_DETACH) })
	if err := CheckView(v); !errors.Is(err, ErrViewReplaced) {
		t.Errorf("CheckView over a tmpfs = %v, want ErrViewReplaced", err)
	}
	if err := MountView(v); !errors.Is(err, unix.EBUSY) {
		t.Errorf("MountView over a mount point = %v, want EBUSY", err)
	}
	if err := UnmountView(v); !errors.Is(err, ErrViewReplaced) {
		t.Errorf("UnmountView of a tmpfs = %v, want ErrViewReplaced", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(v.At(), &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Errorf("the tmpfs at %s was unmounted (statfs type %#x, %v)", v.At(), st.Type, err)
	}
}
