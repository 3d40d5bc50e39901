package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// debEntry is one entry of a test package's tree, made as root.
type debEntry struct {
	path     string
	mode     os.FileMode // permission bits and os.ModeSetuid etc.
	uid, gid int
	data     string // a file's content
	symlink  string // a symlink's target
	link     string // a hard link to this earlier path
	dir      bool
}

// buildTreeDeb builds dir/FILE with dpkg-deb --build from entries (a
// control file with the given fields), with the owners the entries have
// or, with rootOwner, --root-owner-group.
func buildTreeDeb(t *testing.T, dir, file, control string, rootOwner bool, entries []debEntry) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	writeFile(t, filepath.Join(root, "DEBIAN", "control"), []byte(control+"Architecture: all\nMaintainer: Stork Tests <tests@example.org>\nDescription: test package\n"), 0o644)
	for _, e := range entries {
		p := filepath.Join(root, e.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case e.dir:
			err = os.Mkdir(p, 0o700)
		case e.symlink != "":
			err = os.Symlink(e.symlink, p)
		case e.link != "":
			err = os.Link(filepath.Join(root, e.link), p)
		default:
			err = os.WriteFile(p, []byte(e.data), 0o600)
		}
		if err == nil && e.link == "" {
			err = os.Lchown(p, e.uid, e.gid)
		}
		if err == nil && e.symlink == "" && e.link == "" {
			err = os.Chmod(p, e.mode)
		}
		if err != nil {
			t.Fatalf("%s: %v", e.path, err)
		}
	}
	out := filepath.Join(dir, file)
	args := []string{"--build", "-Zxz", root, out}
	if rootOwner {
		args = append([]string{"--root-owner-group"}, args...)
	}
	if b, err := exec.Command("dpkg-deb", args...).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb %s: %v: %s", strings.Join(args, " "), err, b)
	}
	return out
}

// treeEntries is every kind of entry a real package holds that trees must
// carry unchanged.
var treeEntries = []debEntry{
	{path: "bin", dir: true, mode: 0o755},
	{path: "bin/su", mode: os.ModeSetuid | 0o755, data: "#!/bin/sh\necho su\n"},
	{path: "bin/su-link", link: "bin/su"},
	{path: "bin/chage", mode: os.ModeSetgid | 0o755, gid: 42, data: "#!/bin/sh\necho chage\n"},
	{path: "etc", dir: true, mode: 0o755},
	{path: "etc/localtime", symlink: "/usr/share/zoneinfo/Etc/UTC"},
	{path: "etc/os-release", symlink: "../usr/lib/os-release"},
	{path: "etc/escape", symlink: "../../../../../etc/shadow"},
	{path: "etc/secret", mode: 0o600, data: "mode 600\n"},
	{path: "etc/open", mode: 0o777, data: "mode 777\n"},
	{path: `etc/system-systemd\x2dcryptsetup.slice`, mode: 0o644, data: "backslash\n"},
	{path: "etc/caf\xe9", mode: 0o644, data: "latin-1 name\n"},
	{path: "usr/lib", dir: true, mode: 0o755},
	{path: "usr/lib/os-release", mode: 0o644, data: "ID=test\n"},
	{path: "tmp", dir: true, mode: os.ModeSticky | 0o777},
	{path: "var/mail", dir: true, mode: os.ModeSetgid | 0o775, gid: 8},
	{path: "var/empty", dir: true, mode: 0o755},
}

// TestEndToEndDebTrees builds .debs with dpkg-deb covering what real
// packages hold (epochs, ~ and + in versions, absolute and escaping
// symlinks, backslashes and bytes that are not UTF-8 in names, setuid,
// setgid, sticky, modes 600 and 777, hard links, empty directories, owners
// other than root), publishes them with `stork repo add *.deb`, installs
// them through a daemon process into bind, overlay and link views, and
// compares every view with dpkg-deb -x (content, type, mode, owner,
// symlink target); `stork get` as root writes the same tree.
func TestEndToEndDebTrees(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("owners and views need root")
	}
	base, err := os.MkdirTemp("", "stork-debtrees-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, "mode=0755"); err != nil {
		t.Skipf("cannot mount: %v", err)
	}
	defer unix.Unmount(base, unix.MNT_DETACH)

	debs := t.TempDir()
	owned := append(append([]debEntry{}, treeEntries...),
		debEntry{path: "home", dir: true, mode: 0o755},
		debEntry{path: "home/user", dir: true, mode: 0o750, uid: 1000, gid: 1000},
		debEntry{path: "home/user/notes", mode: 0o644, uid: 1000, gid: 1000, data: "owned by 1000\n"})
	trees := buildTreeDeb(t, debs, "trees_2.0~rc1+b1-1_all.deb", "Package: trees\nVersion: 1:2.0~rc1+b1-1\nDepends: rootfiles (>= 2.3)\n", false, owned)
	rootfiles := buildTreeDeb(t, debs, "rootfiles_2.3+dfsg-1_all.deb", "Package: rootfiles\nVersion: 2.3+dfsg-1\n", true, treeEntries)
	var linkable []debEntry // no file anyone but root may write
	for _, e := range treeEntries {
		if e.path != "etc/open" {
			linkable = append(linkable, e)
		}
	}
	linkfiles := buildTreeDeb(t, debs, "linkfiles_0.9_all.deb", "Package: linkfiles\nVersion: 0.9\n", true, linkable)

	r := newRepo(t)
	paths, _ := filepath.Glob(filepath.Join(debs, "*.deb"))
	out := stork(t, append([]string{"repo", "add", "--dir", r.dir, "--key", r.key}, paths...)...)
	for _, want := range []string{"added trees@1:2.0~rc1+b1-1 ", "added rootfiles@2.3+dfsg-1 ", "added linkfiles@0.9 "} {
		if !strings.Contains(out, want) {
			t.Fatalf("repo add printed %q, want %q", out, want)
		}
	}
	url := serve(t, r.dir)
	data := filepath.Join(base, "data")
	d := startDaemonProc(t, data, url, r.root)
	defer d.stop(t)

	roots := map[string]string{}
	for _, vm := range []struct {
		id   string
		args []string
	}{
		{"vm-bind", []string{"--mode", "bind", "--allow-setuid"}},
		{"vm-overlay", []string{"--mode", "overlay"}},
		{"vm-link", []string{"--mode", "link", "--unprivileged"}},
	} {
		roots[vm.id] = filepath.Join(base, "roots", vm.id)
		stork(t, append([]string{"vm", "add", "--data", data, vm.id, "--allow", "*", "--root", roots[vm.id]}, vm.args...)...)
	}
	defer func() {
		for _, vm := range []string{"vm-bind", "vm-overlay", "vm-link"} {
			_, _, _ = storkRun(t, "vm", "remove", "--data", data, vm)
		}
	}()
	stork(t, "install", "--data", data, "--vm", "vm-bind", "--mode", "bind", "trees@>= 1:2.0~rc1")
	stork(t, "install", "--data", data, "--vm", "vm-overlay", "--mode", "overlay", "trees")
	stork(t, "install", "--data", data, "--vm", "vm-link", "--mode", "link", "linkfiles")
	// A link farm shares the objects' inodes: a file uid 1000 or everyone
	// may write cannot be farmed.
	storkFail(t, "writable by its owner (uid 1000)", "install", "--data", data, "--vm", "vm-link", "--mode", "link", "trees")
	storkFail(t, "writable by everyone", "install", "--data", data, "--vm", "vm-link", "--mode", "link", "rootfiles")

	checkView(t, trees, filepath.Join(roots["vm-bind"], "trees"), false)
	checkView(t, rootfiles, filepath.Join(roots["vm-bind"], "rootfiles"), false) // a dependency
	checkView(t, trees, filepath.Join(roots["vm-overlay"], "trees"), true)
	checkView(t, linkfiles, filepath.Join(roots["vm-link"], "linkfiles"), true)

	for vm, want := range map[string]string{"vm-bind": "ok, setuid applied", "vm-overlay": "ok, setuid dropped", "vm-link": "ok, setuid dropped"} {
		if list := stork(t, "list", "--data", data, "--vm", vm); !strings.Contains(list, want) {
			t.Errorf("stork list --vm %s = %s, want %q", vm, list, want)
		}
	}
	noSetuidBelow(t, filepath.Join(data, "store", "objects"))

	// stork get, as root, writes the archive's tree.
	got := filepath.Join(t.TempDir(), "trees")
	stork(t, "get", "--repo", url, "--root", r.root, "--state", filepath.Join(t.TempDir(), "state"), "--out", got, "trees")
	want, err := expectDeb(trees, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	gotTree, err := scanTree(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffTrees(want, gotTree, false) {
		t.Errorf("stork get trees: %s", d)
	}
}
