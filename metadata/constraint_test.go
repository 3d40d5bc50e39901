package metadata

import (
	"errors"
	"testing"
)

func TestConstraintAllows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		scheme     Scheme
		constraint string
		version    string
		want       bool
	}{
		// deb: dpkg relations, ranges, epochs, '~'.
		{SchemeDeb, ">=9.1", "9.1-1", true},
		{SchemeDeb, ">= 9.1", "9.0-5", false},
		{SchemeDeb, ">>9.1", "9.1-1", true}, // 9.1-1 > 9.1 under dpkg
		{SchemeDeb, ">>9.1-1", "9.1-1", false},
		{SchemeDeb, "<<9.1", "9.1~rc1-1", true},
		{SchemeDeb, "<=1.0", "1.0-0", true},
		{SchemeDeb, "=1.0", "0:1.0-0", true},
		{SchemeDeb, "=1.0", "1.0-1", false},
		{SchemeDeb, "!=1.0", "1.0-1", true},
		{SchemeDeb, ">=2.1 <3", "2.5", true},
		{SchemeDeb, ">= 2.1, << 3", "3~beta", true},
		{SchemeDeb, ">= 2.1, << 3", "3", false},
		{SchemeDeb, ">= 2.1, << 3", "1:2.2", false}, // the epoch outweighs all
		{SchemeDeb, ">=1:2.36", "1:2.39.5-0+deb12u3", true},
		{SchemeDeb, ">=2.36", "1:2.0", true},
		{SchemeDeb, ">2.36", "2.36", false}, // '>' is strict here, unlike control files
		{SchemeDeb, "<1 || >=5", "5.2.15-2+b13", true},
		{SchemeDeb, "<1 || >=6", "5.2.15-2+b13", false},
		{SchemeDeb, "^1.4", "1.5", false}, // no deb reading: allows nothing
		// rpm: a release-less bound ignores the release.
		{SchemeRPM, ">=1.0", "1.0-1.el9", true},
		{SchemeRPM, "=1.0", "1.0-7", true},
		{SchemeRPM, "=1.0-6", "1.0-7", false},
		{SchemeRPM, "<<1.0", "1.0~rc1-1", true},
		{SchemeRPM, ">1.0", "1.0^git1-1", true},
		{SchemeRPM, ">=1:0.5", "2.0-1", false},
		{SchemeRPM, ">=1.0, <2", "1.9_9-1", true},
		// semver: Masterminds syntax, and the relation operators.
		{SchemeSemver, "^1.4", "1.9.0", true},
		{SchemeSemver, "^1.4", "2.0.0", false},
		{SchemeSemver, "~1.2", "1.2.9", true},
		{SchemeSemver, ">=1,<2", "1.5.0", true},
		{SchemeSemver, ">>1.0.0", "1.0.1", true},
		{SchemeSemver, ">>1.0", "1.0.1", false}, // Masterminds: "1.0" stands for 1.0.x
		{SchemeSemver, "<<2", "2.0.0", false},
		{SchemeSemver, ">=2.1 <3", "2.1", true},
		{SchemeSemver, ">=1.0", "2.0.0-rc1", false}, // Masterminds: pre-release only if named
		{SchemeSemver, ">=1:2.0", "3.0.0", false},   // no semver reading
	}
	for _, tt := range tests {
		c, err := ParseConstraint(tt.constraint)
		if err != nil {
			t.Errorf("ParseConstraint(%q) = %v", tt.constraint, err)
			continue
		}
		v := mustVersion(t, tt.scheme, tt.version)
		if got := c.Allows(v); got != tt.want {
			t.Errorf("%s: %q allows %q = %v, want %v", tt.scheme, tt.constraint, tt.version, got, tt.want)
		}
	}
}

func TestParseConstraint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in               string
		semver, deb, rpm bool // which schemes read it
		ok               bool
	}{
		{">=1.2", true, true, true, true},
		{">= 2.1, << 3", true, true, true, true},
		{">=1:2.0-1", false, true, true, true},
		{"^1.4", true, false, false, true},
		{"~1.2 || ^2", true, false, false, true},
		{">=1.0~rc1", false, true, true, true},
		{">=1.0^git1", false, false, true, true},
		{"", false, false, false, false},
		{">=", false, false, false, false},
		{"1.0", true, false, false, true}, // Masterminds: a bare version
		{">=1.0 ||", false, false, false, false},
		{">=1.0,", false, false, false, false},
		{">=1.0/2", false, false, false, false},
		{"=> 1.0", true, false, false, true}, // Masterminds spelling
	}
	for _, tt := range tests {
		c, err := ParseConstraint(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseConstraint(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseConstraint(%q) = %v, want ErrMalformed", tt.in, err)
			}
			continue
		}
		got := [3]bool{c.Reads(SchemeSemver), c.Reads(SchemeDeb), c.Reads(SchemeRPM)}
		if want := [3]bool{tt.semver, tt.deb, tt.rpm}; got != want {
			t.Errorf("ParseConstraint(%q) reads semver, deb, rpm = %v, want %v", tt.in, got, want)
		}
		if c.String() != tt.in {
			t.Errorf("ParseConstraint(%q).String() = %q, want it as written", tt.in, c.String())
		}
	}
}

func TestParseRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, name, version, constraint string
		ok                            bool
	}{
		{"bash", "bash", "", "", true},
		{"bash@5.2.15-2+b13", "bash", "5.2.15-2+b13", "", true},
		{"util-linux@1:2.39.5-0+deb12u3", "util-linux", "1:2.39.5-0+deb12u3", "", true},
		{"coreutils@>=9.1", "coreutils", "", ">=9.1", true},
		{"libc6@>= 2.36, << 3", "libc6", "", ">= 2.36, << 3", true},
		{"x@^1.4", "x", "", "^1.4", true},
		{"x@1.0 || 2.0", "x", "", "1.0 || 2.0", true},
		{"x@", "", "", "", false},
		{"x@1.0/2", "", "", "", false},
		{"x@>=", "", "", "", false},
		{"X@1", "", "", "", false},
	}
	for _, tt := range tests {
		r, err := ParseRef(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseRef(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if err == nil && (r.Name != tt.name || r.Version != tt.version || r.Constraint.String() != tt.constraint) {
			t.Errorf("ParseRef(%q) = %+v, want name %q version %q constraint %q", tt.in, r, tt.name, tt.version, tt.constraint)
		}
		if err == nil && r.String() != tt.in {
			t.Errorf("ParseRef(%q).String() = %q", tt.in, r.String())
		}
	}
}
