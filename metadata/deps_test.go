package metadata

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestParseDependency(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, name, text string
		ok             bool
	}{
		{"libfoo>=1.2", "libfoo", ">=1.2", true},
		{"bar", "bar", "", true},
		{"baz=2.0.1", "baz", "=2.0.1", true},
		{"qux>=1,<2", "qux", ">=1,<2", true},
		{" lib.c++ ^1.4 ", "lib.c++", "^1.4", true},
		{"Bad>=1", "", "", false},
		{"bar 1.0", "", "", false},
		{">=1", "", "", false},
		{"x>=what", "x", ">=what", true}, // an rpm version may start with a letter
		{"x>=", "", "", false},
		{"x>=1/2", "", "", false},
		{"libc6>= 2.36, << 3", "libc6", ">= 2.36, << 3", true},
		{"libc6>=1:2.36-1~bpo1", "libc6", ">=1:2.36-1~bpo1", true},
		{"y>=1 || <0.5", "y", ">=1 || <0.5", true},
		{"y>=1 ||", "", "", false},
		{"z>>1.0", "z", ">>1.0", true},
	}
	for _, tt := range tests {
		d, err := ParseDependency(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseDependency(%q) = %+v, %v, want ok=%v", tt.in, d, err, tt.ok)
			continue
		}
		if !tt.ok {
			continue
		}
		if len(d.Alternatives) != 1 || d.Alternatives[0].Name != tt.name || d.Alternatives[0].Constraint.String() != tt.text {
			t.Errorf("ParseDependency(%q) = %q, want name %q text %q", tt.in, d, tt.name, tt.text)
		}
	}
}

func TestResolveClosure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	e.add("libc", "1.0.0", "c1")
	e.add("libc", "1.5.0", "c15")
	e.add("libc", "2.0.0", "c2")
	e.add("libc", "2.1.0-rc1", "c21rc")
	e.add("zlib", "1.0.0", "z1", "libc")
	e.add("ssl", "3.0.0", "s3", "libc>=1,<2", "zlib")
	e.add("app", "1.0.0", "a1", "ssl>=3", "zlib>=1")
	e.add("old", "1.0.0", "o1", "libc>=2") // conflicts with ssl's libc<2 if picked after
	e.add("clash", "1.0.0", "x1", "ssl", "old")
	e.add("deep", "1.0.0", "d1", "libc", "mid")
	e.add("mid", "1.0.0", "m1", "libc<2")
	e.add("cyc-a", "1.0.0", "ca", "cyc-b")
	e.add("cyc-b", "1.0.0", "cb", "cyc-c")
	e.add("cyc-c", "1.0.0", "cc", "cyc-a>=1")
	e.add("needy", "1.0.0", "n1", "libc>=3")
	e.add("orphan", "1.0.0", "or", "nowhere")
	c := e.client("")

	tests := []struct {
		ref     string
		want    string // name@version list, or "" when an error is expected
		errWant []string
	}{
		{"libc", "libc@2.0.0", nil},
		{"libc@2.1.0-rc1", "libc@2.1.0-rc1", nil},
		{"zlib", "zlib@1.0.0 libc@2.0.0", nil},
		{"ssl", "ssl@3.0.0 libc@1.5.0 zlib@1.0.0", nil},
		{"app", "app@1.0.0 libc@1.5.0 zlib@1.0.0 ssl@3.0.0", nil},
		{"clash", "", []string{"no version of libc", "ssl@3.0.0 needs libc>=1,<2", "old@1.0.0 needs libc>=2"}},
		{"deep", "", []string{"mid@1.0.0 needs libc<2", "libc@2.0.0 was already chosen", "deep@1.0.0"}},
		{"cyc-a", "cyc-a@1.0.0 cyc-b@1.0.0 cyc-c@1.0.0", nil},
		{"needy", "", []string{"libc", "needy@1.0.0 needs libc>=3"}},
		{"orphan", "", []string{"nowhere"}},
	}
	for _, tt := range tests {
		rs, err := c.ResolveClosure(ctx, tt.ref)
		if tt.want != "" {
			var got []string
			for _, r := range rs {
				got = append(got, r.Name+"@"+r.Version)
				if r.Manifest == nil || len(r.ManifestBytes) == 0 {
					t.Errorf("ResolveClosure(%q): %s has no manifest", tt.ref, r.Name)
				}
			}
			if err != nil || strings.Join(got, " ") != tt.want {
				t.Errorf("ResolveClosure(%q) = %v, %v, want %s", tt.ref, got, err, tt.want)
			}
			continue
		}
		if !errors.Is(err, ErrDependency) {
			t.Errorf("ResolveClosure(%q) = %v, want ErrDependency", tt.ref, err)
			continue
		}
		for _, s := range tt.errWant {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("ResolveClosure(%q) = %v, want it to mention %q", tt.ref, err, s)
			}
		}
	}
	// Deterministic: the same answer every time.
	first, _ := c.ResolveClosure(ctx, "app")
	for i := 0; i < 5; i++ {
		again, _ := c.ResolveClosure(ctx, "app")
		for j := range first {
			if first[j].Name != again[j].Name || first[j].Version != again[j].Version {
				t.Fatalf("ResolveClosure(app) not deterministic")
			}
		}
	}
}
