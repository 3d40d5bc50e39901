package metadata

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseDebControl(t *testing.T) {
	t.Parallel()
	const head = "Package: foo\nVersion: 1:2.0~rc1+dfsg-3\nArchitecture: amd64\n"
	tests := []struct {
		name    string
		control string
		depends []string
		notes   int
		err     error // nil: accepted
	}{
		{"no relations", head, nil, 0, nil},
		{"relations, folded, alternatives, qualifiers",
			head + "Pre-Depends: libc6 (>= 2.36)\nDepends: libfoo:any (>= 1.0) | libbar,\n debconf (>= 0.5) | debconf-2.0,\n\tlibc6 (<< 3), zlib1g:amd64\nDescription: x\n more\n .\n",
			[]string{"libc6>=2.36, <<3", "libfoo>=1.0 | libbar", "debconf>=0.5 | debconf-2.0", "zlib1g"}, 2, nil},
		{"obsolete < and >", head + "Depends: a (< 1.0), b (> 2:1)\n", []string{"a<=1.0", "b>=2:1"}, 0, nil},
		{"strict operators", head + "Depends: a (<< 1.0), b (>> 2), c (= 1.0-1)\n", []string{"a<<1.0", "b>>2", "c=1.0-1"}, 0, nil},
		{"same name twice, one bare", head + "Depends: a, a (>= 1)\n", []string{"a>=1"}, 0, nil},
		{"comments and case", "# generated\npackage: foo\nVERSION: 1.0\n", nil, 0, nil},
		{"trailing blank lines", head + "\n\n", nil, 0, nil},
		{"provides", head + "Provides: mail-transport-agent, awk (= 1:5.2.1-2),\n libfoo:amd64 (= 1.0), awk (= 1:5.2.1-2)\n", nil, 1, nil},
		{"provides with alternatives", head + "Provides: a | b\n", nil, 0, ErrMalformed},
		{"provides with >=", head + "Provides: a (>= 1)\n", nil, 0, ErrMalformed},
		{"provides bad version", head + "Provides: a (= 1_0)\n", nil, 0, ErrMalformed},
		{"provides variable", head + "Provides: ${perl:Provides}\n", nil, 0, ErrMalformed},
		{"CRLF", strings.ReplaceAll(head, "\n", "\r\n"), nil, 0, nil},
		{"substitution variable", head + "Depends: ${shlibs:Depends}, a\n", nil, 0, ErrMalformed},
		{"arch restriction", head + "Depends: a [amd64]\n", nil, 0, ErrMalformed},
		{"build profile", head + "Depends: a (>= 1) <!nocheck>\n", nil, 0, ErrMalformed},
		{"bad operator", head + "Depends: a (=> 1)\n", nil, 0, ErrMalformed},
		{"bad relation version", head + "Depends: a (>= x1)\n", nil, 0, ErrMalformed},
		{"unclosed", head + "Depends: a (>= 1\n", nil, 0, ErrMalformed},
		{"empty entry", head + "Depends: a,,b\n", nil, 0, ErrMalformed},
		{"bad package name", "Package: Foo\nVersion: 1.0\n", nil, 0, ErrMalformed},
		{"bad version", "Package: foo\nVersion: 1.0_1\n", nil, 0, ErrMalformed},
		{"no version", "Package: foo\n", nil, 0, ErrMalformed},
		{"field twice", head + "Version: 2\n", nil, 0, ErrMalformed},
		{"second paragraph", head + "\nPackage: bar\n", nil, 0, ErrMalformed},
		{"continuation first", " x\n" + head, nil, 0, ErrMalformed},
		{"no colon", head + "Depends\n", nil, 0, ErrMalformed},
		{"NUL", head + "X: \x00\n", nil, 0, ErrMalformed},
	}
	provides := map[string][]string{"provides": {"mail-transport-agent", "awk=1:5.2.1-2", "libfoo=1.0"}}
	for _, tt := range tests {
		c, err := ParseDebControl([]byte(tt.control))
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%s: ParseDebControl = %v, want %v", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: ParseDebControl = %v", tt.name, err)
			continue
		}
		if c.Package != "foo" || !slices.Equal(c.Depends, tt.depends) || len(c.Notes) != tt.notes || !slices.Equal(c.Provides, provides[tt.name]) {
			t.Errorf("%s: ParseDebControl = %+v, want depends %q, provides %q and %d notes", tt.name, c, tt.depends, provides[tt.name], tt.notes)
		}
		if _, _, err := ParseDependencies(c.Package, c.Depends); err != nil {
			t.Errorf("%s: depends %q do not parse: %v", tt.name, c.Depends, err)
		}
	}
}

// buildDeb builds a .deb with dpkg-deb --build from a control file and one
// data file, compressed with comp (gzip, xz, zstd or none).
func buildDeb(t *testing.T, control, comp string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "pkg")
	for p, s := range map[string]string{"DEBIAN/control": control, "usr/share/doc/x/README": "readme of " + comp} {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "x.deb")
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Z"+comp, "--build", root, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build -Z%s: %v: %s", comp, err, b)
	}
	return out
}

// TestDebFromControlPublishedAndResolved builds .debs with dpkg-deb (every
// control.tar compression it offers), reads their control files, publishes
// them under their own names, versions and dependencies in one AddMany,
// and resolves them through the client by constraint.
func TestDebFromControlPublishedAndResolved(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	t.Parallel()
	ctx := context.Background()
	const hello = "Package: hello-stork\nVersion: 1:2.0~rc1+dfsg-3\nArchitecture: amd64\nMaintainer: t <t@example.org>\n" +
		"Pre-Depends: libc6 (>= 2.36)\nDepends: libfoo:any (>= 1.0) | libbar, libc6 (<< 3)\nDescription: test\n a test package\n"
	control := func(pkg, version string) string {
		return "Package: " + pkg + "\nVersion: " + version + "\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n"
	}
	debs := map[string]string{
		"hello-stork": buildDeb(t, hello, "xz"),
		"libc6-old":   buildDeb(t, control("libc6", "2.35-1"), "gzip"),
		"libc6":       buildDeb(t, control("libc6", "2.36-9+deb12u10"), "zstd"),
		"libc6-new":   buildDeb(t, control("libc6", "3.0~beta1-1"), "none"),
		"libbar":      buildDeb(t, control("libbar", "0.9-1"), "xz"),
	}
	c, err := ReadDebControl(debs["hello-stork"])
	if err != nil {
		t.Fatalf("ReadDebControl: %v", err)
	}
	wantDeps := []string{"libc6>=2.36, <<3", "libfoo>=1.0 | libbar"}
	if c.Package != "hello-stork" || c.Version != "1:2.0~rc1+dfsg-3" || c.Architecture != "amd64" || !slices.Equal(c.Depends, wantDeps) || len(c.Notes) != 1 {
		t.Fatalf("ReadDebControl = %+v, want hello-stork 1:2.0~rc1+dfsg-3 depends %q and one note", c, wantDeps)
	}

	e := newTestEnv(t, nil)
	var list []AddOptions
	for _, k := range []string{"hello-stork", "libc6-old", "libc6", "libc6-new", "libbar"} {
		opts, _, err := DebAddOptions(debs[k])
		if err != nil {
			t.Fatalf("DebAddOptions(%s): %v", k, err)
		}
		list = append(list, opts)
	}
	res, err := e.repo.AddMany(ctx, list)
	if err != nil {
		t.Fatalf("AddMany: %v", err)
	}
	if res[0].Version != "1:2.0~rc1+dfsg-3" || res[0].Scheme != SchemeDeb || len(res[0].Missing) != 0 {
		t.Errorf("AddMany[hello-stork] = %+v", res[0])
	}
	cl := e.client("")
	rs, err := cl.ResolveClosure(ctx, "hello-stork@>= 2.0~")
	if err != nil {
		t.Fatalf("ResolveClosure: %v", err)
	}
	if got, want := resolvedVersions(rs), "hello-stork@1:2.0~rc1+dfsg-3 libc6@2.36-9+deb12u10 libbar@0.9-1"; got != want {
		t.Errorf("ResolveClosure(hello-stork@>= 2.0~) = %s, want %s", got, want)
	}
	if rs[0].Manifest == nil || !slices.ContainsFunc(rs[0].Manifest.Entries, func(e Entry) bool { return e.Path == "usr/share/doc/x/README" }) {
		t.Errorf("hello-stork manifest lacks the data file")
	}
	if _, err := cl.Resolve(ctx, "hello-stork@>> 1:2.0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(hello-stork@>> 1:2.0) = %v, want ErrNotFound (~rc1 sorts before 2.0)", err)
	}
}

func TestReadDebControlRefusals(t *testing.T) {
	t.Parallel()
	ctrl := makeTar(t, tarFile("./control", "Package: foo\nVersion: 1.0\n"))
	big := makeTar(t, tarFile("./control", strings.Repeat("X: y\n", MaxControlSize/5+1)))
	link := makeTar(t, tarEntry{name: "./control", typ: '2', link: "/etc/passwd"})
	tests := []struct {
		name string
		deb  []byte
		want error
	}{
		{"plain", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar", ctrl}), nil},
		{"gz", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar.gz", gzipBytes(t, ctrl)}), nil},
		{"no control member", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"data.tar", ctrl}), ErrMalformed},
		{"no control file", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar", makeTar(t, tarFile("./md5sums", "x"))}), ErrMalformed},
		{"control too large", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar", big}), ErrTooLarge},
		{"control a symlink", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar", link}), ErrMalformed},
		{"bz2", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar.bz2", []byte("BZh")}), ErrUnsupportedEntry},
		{"not ar", []byte("hello"), ErrMalformed},
		{"first member", makeAr(arMember{"control.tar", ctrl}), ErrMalformed},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		p := filepath.Join(dir, "x.deb")
		if err := os.WriteFile(p, tt.deb, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := ReadDebControl(p)
		if tt.want == nil {
			if err != nil || c.Package != "foo" || c.Version != "1.0" {
				t.Errorf("%s: ReadDebControl = %+v, %v", tt.name, c, err)
			}
			continue
		}
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: ReadDebControl = %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestParseDpkgStatus parses the control data of every package installed
// on this machine (/var/lib/dpkg/status: one paragraph per package, the
// control fields plus Status and Conffiles): real names, versions and
// relation fields, arch qualifiers and alternatives included.
func TestParseDpkgStatus(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/var/lib/dpkg/status")
	if err != nil {
		t.Skipf("no dpkg status: %v", err)
	}
	pkgs, alts, notes := 0, 0, 0
	for _, para := range strings.Split(string(b), "\n\n") {
		if strings.TrimSpace(para) == "" {
			continue
		}
		c, err := ParseDebControl([]byte(para))
		if err != nil {
			t.Errorf("ParseDebControl: %v", err)
			continue
		}
		pkgs++
		notes += len(c.Notes)
		if _, _, err := ParseDependencies(c.Package, c.Depends); err != nil {
			t.Errorf("%s: %v", c.Package, err)
		}
		for _, d := range c.Depends {
			if strings.Contains(d, " | ") {
				alts++
			}
		}
	}
	t.Logf("%d packages, %d dependencies with alternatives, %d notes", pkgs, alts, notes)
}
