package metadata

import (
	"strings"
	"testing"
)

// FuzzParseVersion: versions come from command lines, control files and
// signed targets. No input panics; what parses keeps its string, is equal
// to itself, and orders antisymmetrically against another parsed input.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{
		"1.2.3", "v1.2", "1.0.0-rc.1", "1:2.39.5-0+deb12u3", "5.2.15-2+b13", "1.0~rc1", "1.0^git1-3.fc40",
		"2147483648:1", "1:", ":1", "1.0-", "-", "~", "^", "0:0-0", strings.Repeat("9", 200), "1.0\x00", "1.０",
	} {
		f.Add(s, "1.0")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, s := range Schemes {
			va, err := ParseVersion(s, a)
			if err != nil {
				continue
			}
			if va.String() != a || va.Scheme() != s {
				t.Fatalf("ParseVersion(%s, %q) = %q under %s", s, a, va.String(), va.Scheme())
			}
			if va.Compare(va) != 0 {
				t.Fatalf("%s %q is not equal to itself", s, a)
			}
			if vb, err := ParseVersion(s, b); err == nil && va.Compare(vb) != -vb.Compare(va) {
				t.Fatalf("%s Compare(%q, %q) = %d but Compare(%q, %q) = %d", s, a, b, va.Compare(vb), b, a, vb.Compare(va))
			}
		}
	})
}
