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
// dependencies from signed targets; neither may panic, and what parses is
// well-formed.
func FuzzParseRefAndDependency(f *testing.F) {
	for _, s := range []string{"hello", "hello@1.2.3", "a@", "@1", "libfoo>=1.2", "x>=1,<2", "y=2.0.1", "z !=", strings.Repeat("a", 300), "a@v1.2", "q~1.2", "../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if name, _, err := ParseRef(s); err == nil {
			if err := ValidateName(name); err != nil {
				t.Fatalf("ParseRef(%q) accepted name %q: %v", s, name, err)
			}
		}
		if d, err := ParseDependency(s); err == nil {
			if err := ValidateName(d.Name); err != nil {
				t.Fatalf("ParseDependency(%q) accepted name %q: %v", s, d.Name, err)
			}
			_ = d.String()
		}
	})
}
