package metadata

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodeManifest(t *testing.T) {
	t.Parallel()
	m := goodManifest(t)
	good := mustEncode(t, m)
	replace := func(old, new string) []byte {
		if !bytes.Contains(good, []byte(old)) {
			t.Fatalf("manifest has no %q", old)
		}
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}
	var indented bytes.Buffer
	json.Indent(&indented, good, "", "  ")
	big := m.Entries[entryIndex(m, "a/big")]
	tests := []struct {
		name   string
		data   []byte
		limits Limits
		want   error
	}{
		{"good", good, Limits{}, nil},
		{"indented", indented.Bytes(), Limits{}, ErrMalformed},
		{"trailing newline", append(bytes.Clone(good), '\n'), Limits{}, ErrMalformed},
		{"leading space", append([]byte(" "), good...), Limits{}, ErrMalformed},
		{"trailing data", append(bytes.Clone(good), []byte(" x")...), Limits{}, ErrMalformed},
		{"second value", append(bytes.Clone(good), []byte("{}")...), Limits{}, ErrMalformed},
		{"unknown field", replace(`{"stork_manifest":1,`, `{"stork_manifest":1,"extra":true,`), Limits{}, ErrMalformed},
		{"unknown entry field", replace(`"type":"dir"`, `"type":"dir","owner":"root"`), Limits{}, ErrMalformed},
		{"key case", replace(`"chunk_size"`, `"CHUNK_SIZE"`), Limits{}, ErrMalformed},
		{"duplicate key", replace(`{"stork_manifest":1,`, `{"stork_manifest":1,"stork_manifest":1,`), Limits{}, ErrMalformed},
		{"key order", replace(`{"stork_manifest":1,"chunk_size":4096,`, `{"chunk_size":4096,"stork_manifest":1,`), Limits{}, ErrMalformed},
		{"explicit zero size", replace(`"path":"empty","type":"file","mode":420,`, `"path":"empty","type":"file","mode":420,"size":0,`), Limits{}, ErrMalformed},
		{"escaped char", replace(`"path":"d"`, `"path":"\u0064"`), Limits{}, ErrMalformed},
		{"number form", replace(`"chunk_size":4096`, `"chunk_size":4.096e3`), Limits{}, ErrMalformed},
		{"negative mode", replace(`"mode":493`, `"mode":-1`), Limits{}, ErrMalformed},
		{"null entries", []byte(`{"stork_manifest":1,"chunk_size":4096,"entries":null}`), Limits{}, ErrMalformed},
		{"unsorted", replace(`"path":"a/big"`, `"path":"a/zzz"`), Limits{}, ErrMalformed},
		{"bad CID", replace(big.Chunks[0], strings.ToUpper(big.Chunks[0])), Limits{}, ErrMalformed},
		{"wrong chunk count", replace(`"`+big.Chunks[1]+`",`, ``), Limits{}, ErrMalformed},
		{"oversized", good, Limits{MaxManifestSize: int64(len(good)) - 1}, ErrTooLarge},
		{"too many entries", good, Limits{MaxEntries: 3}, ErrTooLarge},
		{"escaping symlink kept", replace(`"target":"../empty"`, `"target":"../../empty"`), Limits{}, nil},
		{"absolute symlink kept", replace(`"target":"../empty"`, `"target":"/usr/share/empty"`), Limits{}, nil},
		{"path in base64 though UTF-8", replace(`"path":"d"`, `"path_b64":"ZA=="`), Limits{}, ErrMalformed},
		{"path and path_b64", replace(`"path":"d"`, `"path":"d","path_b64":"/w=="`), Limits{}, ErrMalformed},
		{"path_b64 not base64", replace(`"path":"d"`, `"path_b64":"!!"`), Limits{}, ErrMalformed},
		{"target in base64 though UTF-8", replace(`"target":"../empty"`, `"target_b64":"Li4vZW1wdHk="`), Limits{}, ErrMalformed},
		{"explicit zero uid", replace(`"path":"d","type":"dir","mode":493`, `"path":"d","type":"dir","mode":493,"uid":0`), Limits{}, ErrMalformed},
		{"uid -1", replace(`"path":"d","type":"dir","mode":493`, `"path":"d","type":"dir","mode":493,"uid":4294967295`), Limits{}, ErrMalformed},
		{"owner name with newline", replace(`"path":"d","type":"dir","mode":493`, `"path":"d","type":"dir","mode":493,"user":"a\nb"`), Limits{}, ErrMalformed},
		{"owner fields out of order", replace(`"path":"d","type":"dir","mode":493`, `"path":"d","type":"dir","mode":493,"gid":5,"uid":7`), Limits{}, ErrMalformed},
		{"owners", replace(`"path":"d","type":"dir","mode":493`, `"path":"d","type":"dir","mode":1023,"uid":7,"gid":5,"user":"daemon","group":"staff"`), Limits{}, nil},
		{"not JSON", []byte("stork"), Limits{}, ErrMalformed},
		{"empty", nil, Limits{}, ErrMalformed},
		{"array", []byte("[]"), Limits{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeManifest(tt.data, tt.limits)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("DecodeManifest(%s) = %v, want %v", tt.name, err, tt.want)
			}
			if err == nil && !bytes.Equal(mustEncode(t, got), tt.data) {
				t.Fatalf("DecodeManifest(%s) does not re-encode to its input", tt.name)
			}
		})
	}
	c1, _ := m.CID()
	d, _ := DecodeManifest(good, Limits{})
	if c2, _ := d.CID(); !c1.Equals(c2) {
		t.Errorf("CID after decode = %s, want %s", c2, c1)
	}
}
