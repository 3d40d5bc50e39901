package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestRealDebs is the proof with real packages (make real-debs, see
// testdata/real-debs/real-debs.sh): every .deb of $STORK_REAL_DEBS is
// published with its own control data, each package of
// $STORK_REAL_DEBS_ROOTS is installed with its dependencies into a bind
// view of a VM that allows setuid, then every published package no root
// brought is installed with its dependencies too, and every tree is
// compared with dpkg-deb -x. It writes a Markdown report to
// $STORK_REAL_DEBS_REPORT and fails on any install the resolver refuses
// and on any difference in a tree. Skipped unless STORK_REAL_DEBS is set.
func TestRealDebs(t *testing.T) {
	dir := os.Getenv("STORK_REAL_DEBS")
	if dir == "" {
		t.Skip("set STORK_REAL_DEBS to a directory of .debs (make real-debs)")
	}
	if os.Geteuid() != 0 {
		t.Skip("owners and views need root")
	}
	work := os.Getenv("STORK_REAL_DEBS_WORK")
	if work == "" {
		work = t.TempDir()
	}
	if err := os.RemoveAll(work); err != nil {
		t.Fatal(err)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) == 0 {
		t.Fatalf("no .deb files in %s", dir)
	}
	rep := &realDebsReport{start: time.Now(), debs: len(debs)}
	for _, deb := range debs {
		fi, err := os.Stat(deb)
		if err == nil {
			rep.debBytes += fi.Size()
		}
	}

	r := newRepo(t)
	start := time.Now()
	out, errOut, err := storkRun(t, append([]string{"repo", "add", "--dir", r.dir, "--key", r.key}, debs...)...)
	if err != nil {
		t.Fatalf("stork repo add *.deb: %v\n%s", err, errOut)
	}
	rep.publish = time.Since(start)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, "added ") || strings.HasPrefix(l, "unchanged ") {
			rep.published++
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if l != "" {
			rep.warnings = append(rep.warnings, l)
		}
	}

	url := serve(t, r.dir)
	data := filepath.Join(work, "data")
	root := filepath.Join(work, "vm")
	d := startDaemonProc(t, data, url, r.root)
	defer d.stop(t)
	stork(t, "vm", "add", "--data", data, "vm", "--allow", "*", "--root", root, "--mode", "bind", "--allow-setuid")
	defer storkRun(t, "vm", "remove", "--data", data, "vm")

	start = time.Now()
	roots := strings.Fields(os.Getenv("STORK_REAL_DEBS_ROOTS"))
	rep.roots = len(roots)
	install := func(name string) (int, error) {
		out, errOut, err := storkRun(t, "install", "--data", data, "--vm", "vm", name)
		if err != nil {
			rep.notInstalled = append(rep.notInstalled, fmt.Sprintf("%s: %s", name, strings.TrimSpace(errOut)))
			t.Errorf("stork install %s: %s", name, errOut)
			return 0, err
		}
		return strings.Count(out, "\n"), nil
	}
	for _, name := range roots {
		if n, err := install(name); err == nil {
			rep.rootsInstalled++
			rep.closures = append(rep.closures, fmt.Sprintf("%s: %d packages", name, n))
		}
	}
	names := map[string]string{} // deb -> package name
	for _, deb := range debs {
		names[deb] = debField(t, deb, "Package")
		if _, err := os.Lstat(filepath.Join(root, names[deb])); err == nil {
			rep.withDeps++
		}
	}
	for _, deb := range debs {
		if _, err := os.Lstat(filepath.Join(root, names[deb])); err == nil {
			continue
		}
		if n, err := install(names[deb]); err == nil {
			rep.others++
			rep.otherClosures = append(rep.otherClosures, fmt.Sprintf("%s: %d packages", names[deb], n))
		}
	}
	rep.install = time.Since(start)

	start = time.Now()
	tmp := filepath.Join(work, "extract")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, deb := range debs {
		name, version := names[deb], debField(t, deb, "Version")
		view := filepath.Join(root, name)
		if _, err := os.Lstat(view); err != nil {
			continue // reported by the install above
		}
		rep.compared++
		want, err := expectDeb(deb, tmp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := scanTree(view)
		if err != nil {
			t.Fatal(err)
		}
		rep.count(want)
		if diffs := diffTrees(want, got, false); len(diffs) > 0 {
			rep.differ = append(rep.differ, name+"@"+version+": "+fmt.Sprint(len(diffs))+" differences")
			for _, d := range diffs {
				t.Errorf("%s@%s: %s", name, version, d)
			}
			rep.diffs = append(rep.diffs, prefixAll(name+": ", diffs)...)
		} else {
			rep.identical++
		}
	}
	rep.compare = time.Since(start)
	noSetuidBelow(t, filepath.Join(data, "store", "objects"))
	rep.list = stork(t, "list", "--data", data, "--vm", "vm")
	if p := os.Getenv("STORK_REAL_DEBS_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(rep.markdown()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("real-debs: %d .debs published, %d of %d roots installed with their dependencies (%d packages), %d more packages installed with their dependencies, %d trees compared, %d identical, %d differ",
		rep.published, rep.rootsInstalled, rep.roots, rep.withDeps, rep.others, rep.compared, rep.identical, len(rep.differ))
}

// debField reads one control field of a .deb.
func debField(t *testing.T, deb, field string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", "-f", deb, field).Output()
	if err != nil {
		t.Fatalf("dpkg-deb -f %s %s: %v", deb, field, err)
	}
	return strings.TrimSpace(string(out))
}

func prefixAll(p string, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = p + l
	}
	return out
}

// realDebsReport is what TestRealDebs found.
type realDebsReport struct {
	start                         time.Time
	debs, published, compared     int
	roots, withDeps, identical    int
	rootsInstalled, others        int
	debBytes                      int64
	entries, files, links, setuid int
	absLinks, outside, oddNames   int
	publish, install, compare     time.Duration
	warnings, notInstalled        []string
	closures, otherClosures       []string
	differ, diffs                 []string
	list                          string
}

// count adds the entries of one compared tree to the report's totals.
func (r *realDebsReport) count(tree map[string]treeEntry) {
	for p, e := range tree {
		r.entries++
		switch e.typ {
		case "file":
			r.files++
			if e.mode&0o6000 != 0 {
				r.setuid++
			}
		case "symlink":
			r.links++
			if strings.HasPrefix(e.target, "/") {
				r.absLinks++
			}
		}
		if e.uid != 0 || e.gid != 0 {
			r.outside++
		}
		if strings.ContainsAny(p, "\\") || !utf8.ValidString(p) {
			r.oddNames++
		}
	}
}

func (r *realDebsReport) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Real Debian packages through stork\n\n")
	fmt.Fprintf(&b, "Run %s. Published with `stork repo add --dir R --key K *.deb` (control data of each .deb), installed with their dependencies (`stork install NAME`, the roots first, then every package no root brought) into a bind view of a VM registered with `--mode bind --allow-setuid`, each installed tree compared with `dpkg-deb -x` of its .deb (content, type, mode, numeric owner from the archive, symlink target).\n\n", r.start.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| .deb files | %d (%.0f MB) |\n", r.debs, float64(r.debBytes)/1e6)
	fmt.Fprintf(&b, "| published | %d (%.0f s) |\n", r.published, r.publish.Seconds())
	fmt.Fprintf(&b, "| root packages installed with their dependencies | %d of %d (%d packages in their views) |\n", r.rootsInstalled, r.roots, r.withDeps)
	fmt.Fprintf(&b, "| other published packages installed with their dependencies | %d |\n", r.others)
	fmt.Fprintf(&b, "| installs refused by the resolver | %d |\n", len(r.notInstalled))
	fmt.Fprintf(&b, "| installed trees compared | %d (install %.0f s, compare %.0f s) |\n", r.compared, r.install.Seconds(), r.compare.Seconds())
	fmt.Fprintf(&b, "| identical to dpkg-deb -x | %d |\n", r.identical)
	fmt.Fprintf(&b, "| with differences | %d |\n", len(r.differ))
	fmt.Fprintf(&b, "| entries compared | %d (%d files, %d symlinks of which %d absolute, %d setuid/setgid files, %d entries not owned by root:root, %d names with a backslash or not UTF-8) |\n",
		r.entries, r.files, r.links, r.absLinks, r.setuid, r.outside, r.oddNames)
	section := func(title string, lines []string) {
		fmt.Fprintf(&b, "\n## %s (%d)\n\n", title, len(lines))
		if len(lines) == 0 {
			b.WriteString("None.\n")
			return
		}
		sort.Strings(lines)
		for _, l := range lines {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(l, "\n", " "))
		}
	}
	section("Differences", r.diffs)
	section("Installs the resolver refused", r.notInstalled)
	section("Closure of each root package (packages in its closure, the root included)", r.closures)
	section("Packages no root brought, installed with their dependencies (packages in the closure)", r.otherClosures)
	section("Publisher warnings", r.warnings)
	fmt.Fprintf(&b, "\n## stork list --vm vm\n\n```\n%s```\n", r.list)
	return b.String()
}
