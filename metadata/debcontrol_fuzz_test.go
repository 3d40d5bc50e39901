package metadata

import (
	"bytes"
	"slices"
	"testing"
)

// checkControl fails t unless c holds what ParseDebControl promises.
func checkControl(t *testing.T, c *DebControl) {
	t.Helper()
	if err := ValidateName(c.Package); err != nil {
		t.Fatalf("accepted package %q: %v", c.Package, err)
	}
	if _, err := ParseVersion(SchemeDeb, c.Version); err != nil {
		t.Fatalf("accepted version %q: %v", c.Version, err)
	}
	for _, d := range c.Depends {
		if _, err := ParseDependency(d); err != nil {
			t.Fatalf("accepted dependency %q: %v", d, err)
		}
	}
	ps, canon, err := ParseProvides(SchemeDeb, c.Provides)
	if err != nil {
		t.Fatalf("accepted provides %q: %v", c.Provides, err)
	}
	if len(ps) != len(c.Provides) || !slices.Equal(canon, c.Provides) {
		t.Fatalf("provides %q are not canonical: %q", c.Provides, canon)
	}
}

// FuzzParseDebControl: control files come from .debs a publisher
// downloaded. No input panics; what parses has a valid name and version
// and dependencies that ParseDependency accepts.
func FuzzParseDebControl(f *testing.F) {
	for _, s := range []string{
		"Package: foo\nVersion: 1:2.0~rc1-3\nDepends: libfoo:any (>= 1.0) | libbar, debconf (>= 0.5) | debconf-2.0\n",
		"Package: foo\nVersion: 1.0\nPre-Depends: libc6 (>= 2.36)\nDepends: libc6 (<< 3), a (< 1), b (> 2)\n",
		"package: foo\nversion: 1.0\ndepends: a,\n b\n",
		"Package: foo\nVersion: 1.0\nDepends: ${shlibs:Depends}\n",
		"Package: foo\nVersion: 1.0\nDepends: a [amd64] <!nocheck>\n",
		"Package: foo\nVersion: 1.0\n\nPackage: bar\n",
		"# c\n\n",
		"Package: foo\nVersion: 1.0\nDepends: a (>= 1\n",
		"Package: foo\nVersion: 1.0\nProvides: awk, libx:any (= 2:1.0-1), awk\n",
		"Package: foo\nVersion: 1.0\nProvides: a | b, c (>= 1)\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := ParseDebControl(data); err == nil {
			checkControl(t, c)
		}
	})
}

// FuzzReadDebControl: the whole .deb is untrusted; no input panics and
// the bounds hold (the control file is read through them).
func FuzzReadDebControl(f *testing.F) {
	ctrl := makeTar(f, tarFile("./control", "Package: foo\nVersion: 1.0\nDepends: a | b (>= 1)\n"))
	f.Add(makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar", ctrl}))
	f.Add(makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar.gz", gzipBytes(f, ctrl)}))
	f.Add(makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar.xz", xzBytes(f, ctrl)}))
	f.Add([]byte(arMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := readDebControl(bytes.NewReader(data)); err == nil {
			checkControl(t, c)
		}
	})
}
