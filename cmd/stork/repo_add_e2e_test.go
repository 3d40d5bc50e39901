package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// debSpec is one binary package to build with dpkg-deb.
type debSpec struct {
	file, pkg, version, relations string
}

// buildDebs builds each spec into dir/FILE with dpkg-deb --build: a control
// file with the spec's fields and relations, and one data file
// usr/share/doc/PKG/VERSION holding "PKG VERSION". Relations with an
// unsubstituted variable are built without dpkg-deb's checks.
func buildDebs(t *testing.T, dir string, specs []debSpec) {
	t.Helper()
	for _, s := range specs {
		root := filepath.Join(t.TempDir(), "root")
		control := "Package: " + s.pkg + "\nVersion: " + s.version + "\nArchitecture: amd64\n" +
			"Maintainer: Stork Tests <tests@example.org>\n" + s.relations + "Description: test package\n"
		writeFile(t, filepath.Join(root, "DEBIAN", "control"), []byte(control), 0o644)
		writeFile(t, filepath.Join(root, "usr", "share", "doc", s.pkg, "VERSION"), []byte(s.pkg+" "+s.version+"\n"), 0o644)
		args := []string{"--root-owner-group", "-Zxz", "--build", root, filepath.Join(dir, s.file)}
		if strings.Contains(s.relations, "${") {
			args = append([]string{"--nocheck"}, args...) // dpkg-deb refuses what a test wants refused here
		}
		out, err := exec.Command("dpkg-deb", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg-deb --build %s: %v: %s", s.file, err, out)
		}
	}
}

// TestEndToEndDebDirectory publishes a directory of .debs named as apt
// names them, with real Debian versions (epochs, ~, +), in one `stork repo
// add` without --name or --version, then fetches them by constraint over
// `stork repo serve`.
func TestEndToEndDebDirectory(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	r := newRepo(t)
	debs := t.TempDir()
	buildDebs(t, debs, []debSpec{
		{"bash_5.2.15-2+b13_amd64.deb", "bash", "5.2.15-2+b13", "Pre-Depends: libc6 (>= 2.36)\nDepends: base-files (>= 2.1.12), libtinfo6 (>= 6)\n"},
		{"coreutils_9.1-1_amd64.deb", "coreutils", "9.1-1", "Pre-Depends: libc6 (>= 2.34), libselinux1 (>= 3.1~)\n"},
		{"coreutils_8.32-4.1_amd64.deb", "coreutils", "8.32-4.1", ""},
		{"util-linux_2.39.5-0+deb12u3_amd64.deb", "util-linux", "1:2.39.5-0+deb12u3", "Depends: libc6:any (>= 2.34) | musl\n"},
		{"libc6_2.36-9+deb12u10_amd64.deb", "libc6", "2.36-9+deb12u10", ""},
		{"libselinux1_3.4-1+b6_amd64.deb", "libselinux1", "3.4-1+b6", "Depends: libc6 (>= 2.34), libpcre2-8-0 (>= 10.22)\n"},
		{"libpcre2-8-0_10.42-1_amd64.deb", "libpcre2-8-0", "10.42-1", ""},
		{"base-files_12.4+deb12u11_amd64.deb", "base-files", "12.4+deb12u11", ""},
	})
	paths, err := filepath.Glob(filepath.Join(debs, "*.deb"))
	if err != nil || len(paths) != 8 {
		t.Fatalf("glob: %v, %d debs", err, len(paths))
	}
	args := append([]string{"repo", "add", "--dir", r.dir, "--key", r.key}, paths...)
	out, errOut, err := storkRun(t, args...)
	if err != nil {
		t.Fatalf("stork repo add *.deb: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	for _, want := range []string{"added bash@5.2.15-2+b13 ", "added util-linux@1:2.39.5-0+deb12u3 ", "added coreutils@8.32-4.1 "} {
		if !strings.Contains(out, want) {
			t.Errorf("repo add printed %q, want a line %q", out, want)
		}
	}
	if strings.Count(out, "\n") != 8 {
		t.Errorf("repo add printed %d lines for 8 debs", strings.Count(out, "\n"))
	}
	if !strings.Contains(errOut, "libtinfo6>=6") || strings.Count(errOut, `"level":"WARN"`) != 1 { // JSON: stderr is not a terminal
		t.Errorf("repo add stderr = %q, want one warning naming the missing libtinfo6>=6", errOut)
	}
	if !strings.Contains(errOut, ":any dropped") {
		t.Errorf("repo add stderr = %q, want a note on the dropped :any qualifier", errOut)
	}
	// All eight in one commit: one snapshot and one version of each bin
	// besides init's.
	for _, pat := range []string{"3.snapshot.json", "2.bin-*.json"} {
		if m, _ := filepath.Glob(filepath.Join(r.dir, "metadata", pat)); len(m) != 0 {
			t.Errorf("repo add of 8 debs signed more than once: %v", m)
		}
	}
	var pkgs []struct {
		Name, Version, Scheme string
		Depends               []string
	}
	if err := json.Unmarshal([]byte(stork(t, "repo", "list", "--dir", r.dir, "--json")), &pkgs); err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, p := range pkgs {
		listed = append(listed, p.Name+"@"+p.Version+"/"+p.Scheme)
		if p.Name == "bash" && strings.Join(p.Depends, ";") != "libc6>=2.36;base-files>=2.1.12;libtinfo6>=6" {
			t.Errorf("bash depends = %q", p.Depends)
		}
	}
	if got, want := strings.Join(listed, " "), "base-files@12.4+deb12u11/deb bash@5.2.15-2+b13/deb coreutils@8.32-4.1/deb coreutils@9.1-1/deb "+
		"libc6@2.36-9+deb12u10/deb libpcre2-8-0@10.42-1/deb libselinux1@3.4-1+b6/deb util-linux@1:2.39.5-0+deb12u3/deb"; got != want {
		t.Errorf("repo list = %s\nwant %s", got, want)
	}
	// Publishing the same directory again changes nothing.
	if again := stork(t, args...); strings.Count(again, "unchanged ") != 8 {
		t.Errorf("second repo add printed %q, want 8 unchanged", again)
	}

	url := serve(t, r.dir)
	state := filepath.Join(t.TempDir(), "state")
	get := func(ref string, extra ...string) string {
		dir := filepath.Join(t.TempDir(), "out")
		stork(t, append([]string{"get", "--repo", url, "--root", r.root, "--state", state, "--out", dir}, append(extra, ref)...)...)
		return dir
	}
	readVersion := func(dir, pkg string) string {
		b, err := os.ReadFile(filepath.Join(dir, "usr", "share", "doc", pkg, "VERSION"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	for _, tt := range []struct{ ref, pkg, want string }{
		{"coreutils@>=9.1", "coreutils", "coreutils 9.1-1"},
		{"coreutils@<< 9", "coreutils", "coreutils 8.32-4.1"},
		{"coreutils@>= 8, << 9.1", "coreutils", "coreutils 8.32-4.1"},
		{"coreutils", "coreutils", "coreutils 9.1-1"},
		{"util-linux@1:2.39.5-0+deb12u3", "util-linux", "util-linux 1:2.39.5-0+deb12u3"},
		{"libselinux1@>= 3.1~", "libselinux1", "libselinux1 3.4-1+b6"},
	} {
		if got := readVersion(get(tt.ref), tt.pkg); got != tt.want {
			t.Errorf("stork get %s wrote %q, want %q", tt.ref, got, tt.want)
		}
	}
	all := get("coreutils@>=9.1", "--with-deps")
	for pkg, want := range map[string]string{"coreutils": "coreutils 9.1-1", "libc6": "libc6 2.36-9+deb12u10",
		"libselinux1": "libselinux1 3.4-1+b6", "libpcre2-8-0": "libpcre2-8-0 10.42-1"} {
		if got := readVersion(filepath.Join(all, pkg), pkg); got != want {
			t.Errorf("stork get --with-deps coreutils@>=9.1: %s holds %q, want %q", pkg, got, want)
		}
	}
	storkFail(t, "libtinfo6", "get", "--repo", url, "--root", r.root, "--state", state, "--out", filepath.Join(t.TempDir(), "x"), "bash")
	storkFail(t, "not found", "get", "--repo", url, "--root", r.root, "--state", state, "--out", filepath.Join(t.TempDir(), "x"), "coreutils@>=10")
}

// TestEndToEndRepoAddArguments: which flag combinations `stork repo add`
// takes.
func TestEndToEndRepoAddArguments(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	r := newRepo(t)
	debs := t.TempDir()
	buildDebs(t, debs, []debSpec{
		{"a.deb", "pkg-a", "1.0-1", "Depends: pkg-b\n"},
		{"b.deb", "pkg-b", "2.0~rc1", "Depends: ${misc:Depends}\n"},
	})
	tree := sampleTree(t, 100, 2)
	a, b := filepath.Join(debs, "a.deb"), filepath.Join(debs, "b.deb")
	base := []string{"repo", "add", "--dir", r.dir, "--key", r.key}
	storkFail(t, "--name and --version", append(base, tree)...)
	storkFail(t, "describe one package", append(base, "--name", "x", a, b)...)
	storkFail(t, "not a .deb", append(base, a, tree)...)
	storkFail(t, "unsubstituted variable", append(base, b)...)
	storkFail(t, "version scheme", append(base, "--version-scheme", "pep440", a)...)
	storkFail(t, "semver", append(base, "--name", "tree", "--version", "1.0~rc1", tree)...)

	// With --name, --version and --depends all given, the control file is
	// not read; --version-scheme picks the order of a non-deb.
	stork(t, append(base, "--name", "pkg-b", "--version", "2.0~rc1", "--depends", "pkg-a>=1", b)...)
	stork(t, append(base, "--name", "tree", "--version", "1.0~rc1", "--version-scheme", "deb", tree)...)
	out, errOut, err := storkRun(t, append(base, a)...)
	if err != nil || !strings.Contains(out, "added pkg-a@1.0-1 ") || strings.Contains(errOut, "WARN") {
		t.Errorf("repo add a.deb = %v, stdout %q, stderr %q; want added without warning", err, out, errOut)
	}
	table := stork(t, "repo", "list", "--dir", r.dir)
	if !strings.Contains(table, "SCHEME") || !regexp.MustCompile(`(?m)^pkg-b +2\.0~rc1 +deb .* pkg-a>=1$`).MatchString(table) {
		t.Errorf("repo list = %s, want pkg-b 2.0~rc1 deb ... pkg-a>=1", table)
	}
	list := stork(t, "repo", "list", "--dir", r.dir, "--json")
	for _, want := range []string{`"Version": "2.0~rc1"`, `"Version": "1.0~rc1"`, `"Scheme": "deb"`, `"pkg-a>=1"`} {
		if !strings.Contains(list, want) {
			t.Errorf("repo list = %s, want %s", list, want)
		}
	}
}
