package metadata

import (
	"strings"
	"testing"
)

// FuzzParseKey: key files come from disk and from publishers; any bytes
// either parse to a usable key or give an error, never a panic.
func FuzzParseKey(f *testing.F) {
	k, err := GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	priv, _ := k.Marshal()
	pub, _ := k.MarshalPublic()
	f.Add(priv)
	f.Add(pub)
	f.Add([]byte(`{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"00","private":"00"}}`))
	f.Add([]byte(`{"keytype":"rsa"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if k, err := ParseKey(data); err == nil {
			if k.ID() == "" || k.Public() == nil {
				t.Fatalf("ParseKey accepted a key with no ID or public half")
			}
			again, err := k.Marshal()
			if err != nil {
				t.Fatalf("Marshal of a parsed key: %v", err)
			}
			k2, err := ParseKey(again)
			if err != nil || k2.ID() != k.ID() {
				t.Fatalf("key does not round-trip: %v", err)
			}
		}
		if key, err := ParsePublicKey(data); err == nil && key.Value.PublicKey == "" {
			t.Fatalf("ParsePublicKey accepted a key with no ID")
		}
	})
}

// FuzzParseRefAndDependency: refs come from VMs and command lines,
// dependencies and constraints from signed targets and control files; neither may panic, and what parses is
// well-formed.
func FuzzParseRefAndDependency(f *testing.F) {
	for _, s := range []string{
		"hello", "hello@1.2.3", "a@", "@1", "libfoo>=1.2", "x>=1,<2", "y=2.0.1", "z !=", strings.Repeat("a", 300), "a@v1.2", "q~1.2", "../x",
		"coreutils@>=9.1", "libc6@>= 2.36, << 3", "bash@5.2.15-2+b13", "a | b>>1:2.0-1", "a||b", "x>=1 || <0.5 | y", "p@^1.4 || ~2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParseRef(s); err == nil {
			if err := ValidateName(r.Name); err != nil {
				t.Fatalf("ParseRef(%q) accepted name %q: %v", s, r.Name, err)
			}
			if r.Version != "" && checkVersionText(r.Version) != nil {
				t.Fatalf("ParseRef(%q) accepted version %q", s, r.Version)
			}
			if again, err := ParseRef(r.String()); err != nil || again.String() != r.String() {
				t.Fatalf("ParseRef(%q) = %q does not round-trip: %q, %v", s, r, again, err)
			}
		}
		if d, err := ParseDependency(s); err == nil {
			if len(d.Alternatives) == 0 || len(d.Alternatives) > MaxAlternatives {
				t.Fatalf("ParseDependency(%q) has %d alternatives", s, len(d.Alternatives))
			}
			for _, r := range d.Alternatives {
				if err := ValidateName(r.Name); err != nil {
					t.Fatalf("ParseDependency(%q) accepted name %q: %v", s, r.Name, err)
				}
			}
			again, err := ParseDependency(d.String())
			if err != nil || again.String() != d.String() {
				t.Fatalf("ParseDependency(%q) = %q does not round-trip: %q, %v", s, d, again, err)
			}
		}
		if c, err := ParseConstraint(s); err == nil {
			if !c.Reads(SchemeSemver) && !c.Reads(SchemeDeb) && !c.Reads(SchemeRPM) {
				t.Fatalf("ParseConstraint(%q) accepted what no scheme reads", s)
			}
			for _, v := range []string{"1.0", "2:1.0-1", "1.0.0-rc1"} {
				for _, sc := range Schemes {
					if pv, err := ParseVersion(sc, v); err == nil {
						_ = c.Allows(pv)
					}
				}
			}
		}
	})
}
