package share

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/storkpm/stork/metadata"
)

// archivePkg is a package with what real archives hold: write bits,
// setuid, setgid, sticky, modes 600 and 777, non-root owners, absolute
// and escaping symlinks, names with backslashes and bytes that are not
// UTF-8, an empty directory, and two names for one content (a hard link
// in the archive).
func archivePkg(t testing.TB) *testPkg {
	return makePkg(t, testChunk,
		dir("bin", 0o755),
		file("bin/su", 0o4755, []byte("su binary\n")),
		file("bin/su-again", 0o4755, []byte("su binary\n")),
		owned(file("bin/chage", 0o2755, []byte("chage binary\n")), 0, 42),
		file("bin/plain", 0o755, []byte("su binary\n")),
		dir("etc", 0o755),
		file("etc/secret", 0o600, []byte("600\n")),
		file("etc/open", 0o777, []byte("777\n")),
		symlink("etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),
		owned(symlink("etc/up", "../../../etc/shadow"), 1000, 1000),
		file(`etc/system-systemd\x2dcryptsetup.slice`, 0o644, []byte("slice\n")),
		file("etc/caf\xe9", 0o644, []byte("latin-1\n")),
		dir("empty", 0o750),
		owned(dir("home", 0o755), 1000, 1000),
		owned(file("home/notes", 0o644, []byte("mine\n")), 1000, 1000),
		dir("tmp", 0o1777),
		owned(dir("var", 0o2775), 0, 8),
	)
}

// TestTreeKeepsModesAndOwners: a committed tree shows every entry with
// the archive's mode (setuid and setgid dropped from files: objects never
// carry them) and owner, symlinks with their targets as written; two
// names of one content under one mode and owner are one inode; trees/
// and objects/ are private to root; Verify finds nothing wrong.
func TestTreeKeepsModesAndOwners(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("owners need root")
	}
	p := archivePkg(t)
	s := openStore(t, t.TempDir())
	install(t, s, p, "pkg", "1")
	tree := s.TreePath(p.cid)
	checkOwnedTree(t, tree, p, false)
	a, _ := os.Lstat(filepath.Join(tree, "bin/su"))
	b, _ := os.Lstat(filepath.Join(tree, "bin/su-again"))
	if !os.SameFile(a, b) {
		t.Errorf("bin/su and bin/su-again (same content, mode, owner) are two inodes, want one")
	}
	noSetuidObjects(t, s)
	verifyClean(t, s)
}

// checkOwnedTree fails t unless every entry of p in root has its mode
// (with setuid and setgid on files only if setuid), owner and target.
func checkOwnedTree(t testing.TB, root string, p *testPkg, setuid bool) {
	t.Helper()
	for _, f := range p.files {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, f.path), &st); err != nil {
			t.Errorf("%q: %v", f.path, err)
			continue
		}
		want := f.mode
		if f.typ == metadata.TypeFile && !setuid {
			want &= 0o1777
		}
		if f.typ == metadata.TypeSymlink {
			want = 0o777
		}
		if st.Mode&0o7777 != want || st.Uid != f.uid || st.Gid != f.gid {
			t.Errorf("%q: mode %#o owner %d:%d, want %#o %d:%d", f.path, st.Mode&0o7777, st.Uid, st.Gid, want, f.uid, f.gid)
		}
		if f.typ == metadata.TypeSymlink {
			if got, err := os.Readlink(filepath.Join(root, f.path)); err != nil || got != f.target {
				t.Errorf("%q: symlink to %q (%v), want %q", f.path, got, err, f.target)
			}
		}
		if f.typ == metadata.TypeFile {
			if b, err := os.ReadFile(filepath.Join(root, f.path)); err != nil || string(b) != string(f.data) {
				t.Errorf("%q: content %q (%v), want %q", f.path, b, err, f.data)
			}
		}
	}
}

// noSetuidObjects fails t if any file under objects/ has setuid, setgid
// or sticky, or if objects/, trees/ or setuid/ is reachable by anyone but
// root.
func noSetuidObjects(t testing.TB, s *Store) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(s.path(objectsDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		if info, err := d.Info(); err == nil && info.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
			t.Errorf("object %s has mode %v: objects never carry setuid, setgid or sticky", p, info.Mode())
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Errorf("walk objects: %v, %d objects", err, n)
	}
	for _, d := range []string{objectsDir, treesDir, setuidDir} {
		if st, err := os.Stat(s.path(d)); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s/: %v, %v; want 0700", d, st.Mode(), err)
		}
	}
}

// TestSetuidTree: the setuid variant of a tree holds private copies of
// the setuid and setgid files with their full modes and owners, and links
// to the objects for everything else; it is built once, checked by
// Verify, kept by GC while its package lives and removed with it. A
// package without such files has no variant.
func TestSetuidTree(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("owners need root")
	}
	p := archivePkg(t)
	plain := makePkg(t, testChunk, file("x", 0o755, []byte("x")))
	s := openStore(t, t.TempDir())
	install(t, s, p, "pkg", "1")
	install(t, s, plain, "plain", "1")
	st, err := s.SetuidTree(p.cid)
	if err != nil {
		t.Fatalf("SetuidTree = %v", err)
	}
	if st != s.setuidTreePath(p.cid) {
		t.Fatalf("SetuidTree = %s, want %s", st, s.setuidTreePath(p.cid))
	}
	checkOwnedTree(t, st, p, true)
	checkOwnedTree(t, s.TreePath(p.cid), p, false)
	for _, f := range []string{"etc/secret", "home/notes", "bin/plain"} {
		a, _ := os.Lstat(filepath.Join(st, f))
		b, _ := os.Lstat(filepath.Join(s.TreePath(p.cid), f))
		if !os.SameFile(a, b) {
			t.Errorf("%s: a copy in the setuid tree, want the object's inode", f)
		}
	}
	a, _ := os.Lstat(filepath.Join(st, "bin/su"))
	b, _ := os.Lstat(filepath.Join(s.TreePath(p.cid), "bin/su"))
	if os.SameFile(a, b) {
		t.Errorf("bin/su: the setuid tree links the object, want a private copy")
	}
	if again, err := s.SetuidTree(p.cid); err != nil || again != st {
		t.Errorf("SetuidTree again = %s, %v", again, err)
	}
	if got, err := s.SetuidTree(plain.cid); err != nil || got != s.TreePath(plain.cid) {
		t.Errorf("SetuidTree(no setuid files) = %s, %v, want the tree %s", got, err, s.TreePath(plain.cid))
	}
	noSetuidObjects(t, s)
	verifyClean(t, s)
	// Verify looks at the variant too.
	if err := os.Chmod(filepath.Join(st, "bin/su"), 0o755); err != nil {
		t.Fatal(err)
	}
	if problems, _ := s.Verify(t.Context()); len(problems) != 1 || !strings.Contains(problems[0], "setuid tree") {
		t.Errorf("Verify after a chmod in the setuid tree = %q, want one problem there", problems)
	}
	os.Chmod(filepath.Join(st, "bin/su"), os.ModeSetuid|0o755)
	if err := s.SetKeep(p.cid, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(st); err != nil {
		t.Errorf("GC removed the setuid tree of a live package: %v", err)
	}
	if err := s.RemovePackage(p.cid); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(st); !os.IsNotExist(err) {
		t.Errorf("setuid tree after RemovePackage: %v, want gone", err)
	}
}

// TestViewsApplySetuidOnlyWhenAsked: bind and overlay views show the
// archive's modes and owners; a view of the setuid variant mounted with
// Setuid shows setuid and setgid and has no nosuid flag; every other view
// has nosuid and shows the files without the bits. Bind views stay
// read-only by their mount; an overlay view writes where the modes let it
// and never into the store.
func TestViewsApplySetuidOnlyWhenAsked(t *testing.T) {
	s, _, root := viewStore(t)
	p := archivePkg(t)
	install(t, s, p, "archive", "1")
	suid, err := s.SetuidTree(p.cid)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		mode   ViewMode
		setuid bool
	}{
		{"bind", ViewBind, false}, {"bind setuid", ViewBind, true},
		{"overlay", ViewOverlay, false}, {"overlay setuid", ViewOverlay, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			view := filepath.Join(root, "vm-"+strings.ReplaceAll(tt.name, " ", "-"), "archive")
			tree := s.TreePath(p.cid)
			if tt.setuid {
				tree = suid
			}
			v := viewAt(tree, view, tt.mode, filepath.Join(root, "upper-"+strings.ReplaceAll(tt.name, " ", "-")))
			v.Setuid = tt.setuid
			if err := MountView(v); err != nil {
				t.Fatalf("MountView = %v", err)
			}
			defer UnmountView(v)
			checkOwnedTree(t, view, p, tt.setuid)
			var sfs unix.Statfs_t
			if err := unix.Statfs(view, &sfs); err != nil {
				t.Fatal(err)
			}
			if nosuid := sfs.Flags&unix.ST_NOSUID != 0; nosuid == tt.setuid {
				t.Errorf("view mounted with nosuid = %v, want %v", nosuid, !tt.setuid)
			}
			err := os.WriteFile(filepath.Join(view, "etc/open"), []byte("changed\n"), 0)
			switch tt.mode {
			case ViewBind:
				if !errors.Is(err, unix.EROFS) {
					t.Errorf("write through a bind view = %v, want EROFS", err)
				}
			case ViewOverlay:
				if err != nil {
					t.Errorf("write to a 0777 file through an overlay view = %v, want it to work", err)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(s.TreePath(p.cid), "etc/open")); string(b) != "777\n" {
				t.Errorf("the store's etc/open = %q after a write through a view", b)
			}
		})
	}
	verifyClean(t, s)
}

// TestLinkViewRefusesFilesOthersMayWrite: a link farm shares the object
// inodes, so a file another user or group may write is refused; a
// root-owned tree with write bits is farmed; a farm never applies setuid.
func TestLinkViewRefusesFilesOthersMayWrite(t *testing.T) {
	s, _, root := viewStore(t)
	mine := makePkg(t, testChunk, dir("d", 0o755), owned(file("d/f", 0o644, []byte("user-owned\n")), 1000, 1000))
	rootOwned := makePkg(t, testChunk, dir("d", 0o755), file("d/f", 0o644, []byte("root-owned\n")), file("d/s", 0o4755, []byte("s\n")))
	install(t, s, mine, "mine", "1")
	install(t, s, rootOwned, "root-owned", "1")
	v := viewAt(s.TreePath(mine.cid), filepath.Join(root, "vm-link", "mine"), ViewLink, "")
	if err := MountView(v); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "uid 1000") {
		t.Errorf("link view of a user-owned writable file = %v, want %v naming the owner", err, ErrInvalid)
	}
	if _, err := os.Lstat(v.At()); !os.IsNotExist(err) {
		t.Errorf("refused link view left %s: %v", v.At(), err)
	}
	ok := viewAt(s.TreePath(rootOwned.cid), filepath.Join(root, "vm-link", "root-owned"), ViewLink, "")
	if err := MountView(ok); err != nil {
		t.Fatalf("link view of a root-owned tree = %v", err)
	}
	if st, err := os.Stat(filepath.Join(ok.At(), "d/s")); err != nil || st.Mode()&os.ModeSetuid != 0 {
		t.Errorf("d/s in a link view: %v, %v; want no setuid", st.Mode(), err)
	}
	ok.Setuid = true
	if err := MountView(ok); !errors.Is(err, ErrInvalid) {
		t.Errorf("link view with setuid = %v, want %v", err, ErrInvalid)
	}
}

// TestOpensStoreWrittenBefore: a store whose trees were built before
// modes and owners were carried (objects and directories without write
// bits) opens, verifies, keeps its objects through GC, serves new
// packages of the same content with their own object variants, and
// survives an index rebuild, which tells the old layout by the tree.
func TestOpensStoreWrittenBefore(t *testing.T) {
	t.Parallel()
	if !ownersApply {
		t.Skip("earlier versions built read-only trees only as root (a 0555 directory cannot be renamed by its owner)")
	}
	data := t.TempDir()
	p := makePkg(t, testChunk, dir("d", 0o755), file("d/f", 0o644, []byte("shared\n")), file("d/x", 0o755, []byte("exec\n")))
	s, err := Open(Config{Dir: data})
	if err != nil {
		t.Fatal(err)
	}
	s.newLayout = layoutReadOnly
	install(t, s, p, "old", "1")
	if st, err := os.Stat(filepath.Join(s.TreePath(p.cid), "d/f")); err != nil || st.Mode().Perm() != 0o444 {
		t.Fatalf("old layout: d/f is %v, %v; want 0444", st.Mode(), err)
	}
	s.Close()

	s = openStore(t, data)
	verifyClean(t, s)
	if err := s.SetKeep(p.cid, true); err != nil {
		t.Fatal(err)
	}
	// GC may drop object variants no tree links (the download's, copied
	// for the old layout), nothing the old tree needs.
	if res, err := s.GC(t.Context()); err != nil || res.Packages != 0 || res.Trees != 0 {
		t.Fatalf("GC of a store written before = %+v, %v; want no package or tree removed", res, err)
	}
	verifyClean(t, s)
	if res, err := s.CheckPackage(p.cid); err != nil || res.Repairing() {
		t.Fatalf("CheckPackage(old tree) = %+v, %v", res, err)
	}
	q := makePkg(t, testChunk, dir("e", 0o755), file("e/f", 0o644, []byte("shared\n")))
	install(t, s, q, "new", "1")
	if st, err := os.Stat(filepath.Join(s.TreePath(q.cid), "e/f")); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("new package sharing content: e/f is %v, %v; want 0644", st.Mode(), err)
	}
	if st, err := os.Stat(filepath.Join(s.TreePath(p.cid), "d/f")); err != nil || st.Mode().Perm() != 0o444 {
		t.Errorf("old package after a new one shares its content: d/f is %v, %v; want 0444", st.Mode(), err)
	}
	verifyClean(t, s)
	s.Close()

	if _, err := Rebuild(t.Context(), Config{Dir: data}, nil); err != nil {
		t.Fatalf("Rebuild = %v", err)
	}
	s = openStore(t, data)
	verifyClean(t, s)
	for _, c := range []*testPkg{p, q} {
		info, err := s.Package(c.cid)
		if err != nil || info.State != StateComplete {
			t.Errorf("after Rebuild: %v, %v; want complete", info, err)
		}
	}
}
