package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestEndToEndDebCyclesAndProvides builds .debs with dpkg-deb whose
// dependencies form cycles (libc6 <-> libgcc-s1, as in Debian) and name
// virtual packages (awk, a versioned perl module, alternatives of two
// virtual names), publishes them with `stork repo add *.deb`, installs
// the root through a daemon with its dependencies into a VM registered
// with --mode overlay (no --mode on the install: the VM's mode is used),
// and compares every view with dpkg-deb -x.
func TestEndToEndDebCyclesAndProvides(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("overlay views need root")
	}
	base, err := os.MkdirTemp("", "stork-deps-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, "mode=0755"); err != nil {
		t.Skipf("cannot mount: %v", err)
	}
	defer unix.Unmount(base, unix.MNT_DETACH)

	debs := t.TempDir()
	specs := []debSpec{
		{"libc6_2.36-9_amd64.deb", "libc6", "2.36-9", "Depends: libgcc-s1\n"},
		{"libgcc-s1_12.2.0-14_amd64.deb", "libgcc-s1", "12.2.0-14", "Depends: gcc-12-base (= 12.2.0-14), libc6 (>= 2.35)\n"},
		{"gcc-12-base_12.2.0-14_amd64.deb", "gcc-12-base", "12.2.0-14", ""},
		{"mawk_1.3.4-1_amd64.deb", "mawk", "1.3.4-1", "Pre-Depends: libc6 (>= 2.29)\nProvides: awk\n"},
		{"base-files_12.4_amd64.deb", "base-files", "12.4", "Pre-Depends: awk\n"},
		{"perl-base_5.36.0-7_amd64.deb", "perl-base", "5.36.0-7", "Pre-Depends: libc6 (>= 2.35)\nProvides: perlapi-5.36.0, libscalar-list-utils-perl (= 1:1.63-1)\n"},
		{"liblist-x-perl_1.0-1_all.deb", "liblist-x-perl", "1.0-1", "Depends: libscalar-list-utils-perl (>= 1:1.60), perlapi-5.36.0\n"},
		{"dbus-user-session_1.14_amd64.deb", "dbus-user-session", "1.14", "Depends: libc6\nProvides: default-dbus-session-bus, dbus-session-bus\n"},
		{"dconf-service_0.40_amd64.deb", "dconf-service", "0.40", "Depends: default-dbus-session-bus | dbus-session-bus, libc6 (>= 2.34)\n"},
		{"app_1.0-1_amd64.deb", "app", "1.0-1", "Depends: base-files, liblist-x-perl, dconf-service, app (>= 1.0)\n"},
		{"lonely_1_all.deb", "lonely", "1", "Depends: nowhere (>= 1)\n"},
	}
	buildDebs(t, debs, specs)
	paths, _ := filepath.Glob(filepath.Join(debs, "*.deb"))
	r := newRepo(t)
	out, errOut, err := storkRun(t, append([]string{"repo", "add", "--dir", r.dir, "--key", r.key}, paths...)...)
	if err != nil {
		t.Fatalf("stork repo add *.deb: %v\n%s", err, errOut)
	}
	if strings.Count(out, "added ") != len(specs) {
		t.Errorf("repo add printed %q, want %d packages added", out, len(specs))
	}
	// Only lonely's dependency is missing: the virtual names are provided.
	if strings.Count(errOut, "not in the repository") != 1 || !strings.Contains(errOut, "nowhere>=1") {
		t.Errorf("repo add warned %q, want one missing dependency, lonely's nowhere>=1", errOut)
	}

	url := serve(t, r.dir)
	data := filepath.Join(base, "data")
	d := startDaemonProc(t, data, url, r.root)
	defer d.stop(t)
	root := filepath.Join(base, "vm")
	stork(t, "vm", "add", "--data", data, "vm", "--allow", "*", "--root", root, "--mode", "overlay")
	defer storkRun(t, "vm", "remove", "--data", data, "vm")

	got := strings.Split(strings.TrimSpace(stork(t, "install", "--data", data, "--vm", "vm", "app")), "\n")
	// The root first, then dependencies before dependents, the libc6
	// cycle by name.
	want := []string{"app@1.0-1", "gcc-12-base@12.2.0-14", "libc6@2.36-9", "libgcc-s1@12.2.0-14", "mawk@1.3.4-1", "base-files@12.4",
		"perl-base@5.36.0-7", "liblist-x-perl@1.0-1", "dbus-user-session@1.14", "dconf-service@0.40"}
	if len(got) != len(want) {
		t.Fatalf("stork install app printed %q, want %d packages: %q", got, len(want), want)
	}
	for i, line := range got {
		if !strings.HasPrefix(line, want[i]+" -> ") || !strings.HasSuffix(line, "(overlay, vm vm)") {
			t.Errorf("stork install app line %d = %q, want %s in an overlay view (the VM's mode)", i, line, want[i])
		}
	}
	for _, s := range specs {
		if s.pkg == "lonely" {
			continue
		}
		checkView(t, filepath.Join(debs, s.file), filepath.Join(root, s.pkg), true)
	}
	storkFail(t, "lonely@1 needs nowhere>=1", "install", "--data", data, "--vm", "vm", "lonely")
	if _, err := os.Lstat(filepath.Join(root, "lonely")); !os.IsNotExist(err) {
		t.Errorf("a refused install left a view: %v", err)
	}
}
