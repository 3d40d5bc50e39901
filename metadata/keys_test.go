package metadata

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeySaveLoad(t *testing.T) {
	t.Parallel()
	k := mustKey(t)
	path := filepath.Join(t.TempDir(), "sub", "key.json")
	if err := k.Save(path); err != nil {
		t.Fatalf("Save: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", st.Mode().Perm())
	}
	got, err := LoadKey(path)
	if err != nil {
		t.Fatalf("LoadKey: %v", err)
	}
	if got.ID() != k.ID() || got.Public().Value.PublicKey != k.Public().Value.PublicKey {
		t.Errorf("LoadKey = %s, want %s", got.ID(), k.ID())
	}
	if id, _ := k.Public().ID(); id != k.ID() {
		t.Errorf("Public().ID() = %s, want %s", id, k.ID())
	}
	if err := mustKey(t).Save(path); !errors.Is(err, ErrExists) {
		t.Errorf("Save over existing = %v, want ErrExists", err)
	}
	if again, _ := LoadKey(path); again.ID() != k.ID() {
		t.Errorf("existing key was overwritten")
	}
	pub, err := k.MarshalPublic()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(pub), "private") {
		t.Errorf("MarshalPublic leaks the private key: %s", pub)
	}
	pk, err := ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := pk.ID(); id != k.ID() {
		t.Errorf("ParsePublicKey ID = %s, want %s", id, k.ID())
	}
}

func TestLoadKeyErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := mustKey(t)
	good, _ := k.Marshal()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pub, _ := k.MarshalPublic()
	tests := []struct {
		name, path string
		want       error
		mention    string
	}{
		{"missing", filepath.Join(dir, "nope.json"), ErrNotFound, "no such file"},
		{"not json", write("garbage", "hello"), ErrMalformed, "JSON"},
		{"wrong type", write("rsa", `{"keytype":"rsa","scheme":"rsassa-pss-sha256","keyval":{"public":"x","private":"y"}}`), ErrMalformed, "rsa"},
		{"public only", write("pub", string(pub)), ErrMalformed, "no private key"},
		{"bad hex", write("hex", strings.Replace(string(good), `"private": "`, `"private": "zz`, 1)), ErrMalformed, "hex"},
		{"wrong public", write("mismatch", strings.Replace(string(good), k.Public().Value.PublicKey, mustKey(t).Public().Value.PublicKey, 1)), ErrMalformed, "does not match"},
	}
	for _, tt := range tests {
		_, err := LoadKey(tt.path)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.mention) || !strings.Contains(err.Error(), tt.path) {
			t.Errorf("%s: LoadKey = %v, want %v mentioning %q and the path", tt.name, err, tt.want, tt.mention)
		}
	}
}
