package share

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGCKeepsMountedTrees: a package no install record and no keep flag
// holds, whose tree a view mounts (bind or overlay), survives GC and
// RemovePackage with its objects; once unmounted, GC removes it.
func TestGCKeepsMountedTrees(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("views need root (mount(2))")
	}
	for _, mode := range []ViewMode{ViewBind, ViewOverlay} {
		t.Run(string(mode), func(t *testing.T) {
			r := rand.New(rand.NewSource(5))
			p := makePkg(t, testChunk, dir("bin", 0o755), file("bin/tool", 0o755, randBytes(r, 3*testChunk+7)), file("README", 0o644, []byte("read me")))
			s := openStore(t, t.TempDir())
			install(t, s, p, "tool", "1")
			if err := s.SetKeep(p.cid, false); err != nil {
				t.Fatal(err)
			}
			view := filepath.Join(t.TempDir(), "view")
			v := viewAt(s.TreePath(p.cid), view, mode, filepath.Join(t.TempDir(), "upper"))
			if err := MountView(v); err != nil {
				t.Fatal(err)
			}
			mounted := true
			defer func() {
				if mounted {
					_ = unix.Unmount(view, unix.MNT_DETACH)
				}
			}()

			res, err := s.GC(t.Context())
			if err != nil {
				t.Fatalf("GC = %v", err)
			}
			if res.Packages != 0 || res.Trees != 0 || res.Objects != 0 {
				t.Errorf("GC with the tree mounted = %+v, want nothing removed", *res)
			}
			checkTree(t, s.TreePath(p.cid), p)
			checkTree(t, view, p)
			if _, err := s.Package(p.cid); err != nil {
				t.Errorf("Package after GC = %v, want the mounted package kept", err)
			}
			verifyClean(t, s)
			if err := s.RemovePackage(p.cid); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), view) {
				t.Errorf("RemovePackage of a mounted tree = %v, want ErrInUse naming %s", err, view)
			}
			checkTree(t, view, p)

			if err := UnmountView(v); err != nil {
				t.Fatal(err)
			}
			mounted = false
			res, err = s.GC(t.Context())
			if err != nil {
				t.Fatalf("GC = %v", err)
			}
			if res.Packages != 1 || res.Trees != 1 || res.Objects != 2 {
				t.Errorf("GC once unmounted = %+v, want 1 package, its tree, 2 objects removed", *res)
			}
			if _, err := os.Stat(s.TreePath(p.cid)); !os.IsNotExist(err) {
				t.Errorf("tree after GC once unmounted: %v, want gone", err)
			}
		})
	}
}

// TestGCKeepsMountedOrphanTree: a tree with no record at all (as after an
// index loss) that a view mounts is not removed by GC.
func TestGCKeepsMountedOrphanTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("views need root (mount(2))")
	}
	s := openStore(t, t.TempDir())
	orphan := filepath.Join(s.path(treesDir), "bafyorphan")
	if err := os.MkdirAll(filepath.Join(orphan, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(orphan, "sub", "f"), []byte("data"), 0o444); err != nil {
		t.Fatal(err)
	}
	view := filepath.Join(t.TempDir(), "view")
	// A bind mount of a directory inside the tree counts too.
	if err := MountView(viewAt(filepath.Join(orphan, "sub"), view, ViewBind, "")); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(view, unix.MNT_DETACH)
	res, err := s.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Trees != 0 || len(res.InUse) != 1 || !strings.HasSuffix(res.InUse[0], view) {
		t.Errorf("GC = %+v, want the orphan tree kept and reported in use at %s", *res, view)
	}
	if b, err := os.ReadFile(filepath.Join(view, "f")); err != nil || string(b) != "data" {
		t.Errorf("view after GC: %q, %v", b, err)
	}
}

func TestParseMountLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		line string
		want MountInfo
		ok   bool
	}{
		{"bind with optional fields", `36 35 98:0 /store/trees/bafyx /vm/a\040b rw,nosuid master:1 - ext4 /dev/root rw,errors=continue`,
			MountInfo{ID: 36, Major: 98, Root: "/store/trees/bafyx", Point: "/vm/a b", FSType: "ext4", Source: "/dev/root", SuperOpts: "rw,errors=continue"}, true},
		{"overlay", `40 1 0:52 / /v/p rw shared:9 - overlay overlay rw,lowerdir=/d/trees/c1,upperdir=/u,workdir=/w`,
			MountInfo{ID: 40, Major: 0, Minor: 52, Root: "/", Point: "/v/p", FSType: "overlay", Source: "overlay", SuperOpts: "rw,lowerdir=/d/trees/c1,upperdir=/u,workdir=/w"}, true},
		{"no separator", `36 35 98:0 / / rw`, MountInfo{}, false},
		{"bad device", `36 35 x:0 / / rw - ext4 /dev/root rw`, MountInfo{}, false},
		{"short", `36 35 98:0 / - ext4 /dev/root rw`, MountInfo{}, false},
		{"bad id", `x 35 98:0 / / rw - ext4 /dev/root rw`, MountInfo{}, false},
		{"escaped source", `41 1 0:53 / /m rw - fuse a\040b rw,upperdir=/u\040v`,
			MountInfo{ID: 41, Minor: 53, Root: "/", Point: "/m", FSType: "fuse", Source: "a b", SuperOpts: `rw,upperdir=/u\040v`}, true},
	}
	for _, tt := range tests {
		got, ok := parseMountLine(tt.line)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s: parseMountLine = %+v, %v, want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
	if m, _ := parseMountLine(tests[len(tests)-1].line); m.Option("upperdir") != "/u v" || m.Option("lowerdir") != "" {
		t.Errorf("Option(upperdir) = %q, Option(lowerdir) = %q, want \"/u v\", \"\"", m.Option("upperdir"), m.Option("lowerdir"))
	}
	if got, want := overlayLowerDirs("rw,lowerdir=/a/b:/c\\040d,upperdir=/u,lowerdir+=/e/"), []string{"/a/b", "/c d", "/e"}; !reflect.DeepEqual(got, want) {
		t.Errorf("overlayLowerDirs = %q, want %q", got, want)
	}
	for _, c := range []struct{ dir, p, want string }{
		{"/s/trees", "/s/trees/c1", "c1"}, {"/s/trees", "/s/trees/c1/x/y", "c1"}, {"/s/trees", "/s/trees", ""},
		{"/s/trees", "/s/treesX/c", ""}, {"/", "/a/b", "a"}, {"/s/trees/", "/s/trees/c", "c"},
	} {
		if got := childOf(c.dir, c.p); got != c.want {
			t.Errorf("childOf(%q, %q) = %q, want %q", c.dir, c.p, got, c.want)
		}
	}
}

// TestGCRemovesOrphanTrees: GC removes a tree and a setuid variant that no
// package record names and no mount uses, and keeps the live package's.
func TestGCRemovesOrphanTrees(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir())
	p := makePkg(t, testChunk, file("x", 0o644, []byte("x")))
	install(t, s, p, "live", "1")
	if err := s.SetKeep(p.cid, true); err != nil {
		t.Fatal(err)
	}
	var orphans []string
	for _, d := range []string{treesDir, setuidDir} {
		o := filepath.Join(s.path(d), "bafyorphan")
		if err := os.MkdirAll(filepath.Join(o, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		orphans = append(orphans, o)
	}
	res, err := s.GC(t.Context())
	if err != nil {
		t.Fatalf("GC = %v", err)
	}
	if res.Trees != 2 || len(res.InUse) != 0 {
		t.Errorf("GC = %+v, want 2 trees removed, none in use", *res)
	}
	for _, o := range orphans {
		if _, err := os.Lstat(o); !os.IsNotExist(err) {
			t.Errorf("%s after GC: %v, want gone", o, err)
		}
	}
	if _, err := os.Stat(s.TreePath(p.cid)); err != nil {
		t.Errorf("live tree after GC: %v", err)
	}
}
