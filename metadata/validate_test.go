package metadata

import (
	"errors"
	"strings"
	"testing"
)

func TestValidatePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		ok   bool
	}{
		{"a", true},
		{"a/b/c", true},
		{".hidden", true},
		{"a/..b", true},
		{"a/b..", true},
		{"with space/ü", true},
		{"", false},
		{".", false},
		{"..", false},
		{"../a", false},
		{"a/..", false},
		{"a/../b", false},
		{"/a", false},
		{"a/", false},
		{"./a", false},
		{"a/./b", false},
		{"a//b", false},
		{`a\b`, true},
		{`system-systemd\x2dcryptsetup.slice`, true},
		{"\x01\x7f\t", true},
		{"a\x00b", false},
		{"a\xffb", true},
		{"\xff/..", false},
		{strings.Repeat("a", 4096), true},
		{strings.Repeat("a", 4097), false},
	}
	for _, tt := range tests {
		err := ValidatePath(tt.path)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalidPath)) {
			t.Errorf("ValidatePath(%q) = %v, want ok=%v", shorten(tt.path), err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "entry ") {
			t.Errorf("ValidatePath(%q) = %v, want the path named", shorten(tt.path), err)
		}
	}
}

// goodManifest is a valid manifest with every entry type and a multi-chunk
// file.
func goodManifest(t testing.TB) *Manifest {
	t.Helper()
	m, err := importBytes(makeTar(t,
		tarFile("a/big", strings.Repeat("0123456789", 1000)),
		tarFile("a/small", "small"),
		tarFile("empty", ""),
		tarSymlink("a/l", "../empty"),
		tarSymlink("up", "a/l"),
		tarDirEntry("d/"),
	), KindTar, smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func entryIndex(m *Manifest, p string) int {
	for i, e := range m.Entries {
		if e.Path == p {
			return i
		}
	}
	panic("no entry " + p)
}

func TestValidate(t *testing.T) {
	t.Parallel()
	cidOf := func(s string) string { return SumCID([]byte(s)).String() }
	tests := []struct {
		name   string
		mutate func(m *Manifest)
		limits Limits
		want   error
	}{
		{"good", func(m *Manifest) {}, Limits{}, nil},
		{"format", func(m *Manifest) { m.Format = 2 }, Limits{}, ErrMalformed},
		{"chunk size small", func(m *Manifest) { m.ChunkSize = 4095 }, Limits{}, ErrMalformed},
		{"chunk size large", func(m *Manifest) { m.ChunkSize = MaxChunkSize + 1 }, Limits{}, ErrMalformed},
		{"unsorted", func(m *Manifest) {
			m.Entries[len(m.Entries)-1], m.Entries[len(m.Entries)-2] = m.Entries[len(m.Entries)-2], m.Entries[len(m.Entries)-1]
		}, Limits{}, ErrMalformed},
		{"duplicate", func(m *Manifest) { m.Entries = append(m.Entries, m.Entries[len(m.Entries)-1]) }, Limits{}, ErrDuplicatePath},
		{"bad path", func(m *Manifest) { m.Entries[0].Path = "/a" }, Limits{}, ErrInvalidPath},
		{"missing parent", func(m *Manifest) { m.Entries = m.Entries[1:] }, Limits{}, ErrInvalidPath},
		{"parent is a file", func(m *Manifest) {
			i := entryIndex(m, "empty")
			m.Entries = append(m.Entries[:i+1], append([]Entry{{Path: "empty/x", Type: TypeDir, Mode: 0o755}}, m.Entries[i+1:]...)...)
		}, Limits{}, ErrInvalidPath},
		{"parent is a symlink", func(m *Manifest) {
			m.Entries = append(m.Entries, Entry{Path: "up/x", Type: TypeDir, Mode: 0o755})
		}, Limits{}, ErrInvalidPath},
		{"unknown type", func(m *Manifest) { m.Entries[entryIndex(m, "d")].Type = "fifo" }, Limits{}, ErrUnsupportedEntry},
		{"mode bits", func(m *Manifest) { m.Entries[0].Mode = 0o10755 }, Limits{}, ErrMalformed},
		{"negative size", func(m *Manifest) { m.Entries[entryIndex(m, "empty")].Size = -1 }, Limits{}, ErrMalformed},
		{"file over limit", func(m *Manifest) {}, Limits{MaxFileSize: 9999}, ErrTooLarge},
		{"total over limit", func(m *Manifest) {}, Limits{MaxTotalSize: 10004}, ErrTooLarge},
		{"too many entries", func(m *Manifest) {}, Limits{MaxEntries: 6}, ErrTooLarge},
		{"path too long", func(m *Manifest) {}, Limits{MaxPathLen: 4}, ErrInvalidPath},
		{"too few chunks", func(m *Manifest) {
			e := &m.Entries[entryIndex(m, "a/big")]
			e.Chunks = e.Chunks[:2]
		}, Limits{}, ErrMalformed},
		{"size grown", func(m *Manifest) { m.Entries[entryIndex(m, "a/small")].Size = MinChunkSize + 1 }, Limits{}, ErrMalformed},
		{"empty file with chunk", func(m *Manifest) {
			m.Entries[entryIndex(m, "empty")].Chunks = []string{cidOf("x")}
		}, Limits{}, ErrMalformed},
		{"chunk not a CID", func(m *Manifest) { m.Entries[entryIndex(m, "a/small")].Chunks[0] = "hello" }, Limits{}, ErrMalformed},
		{"chunk CIDv0", func(m *Manifest) {
			m.Entries[entryIndex(m, "a/small")].Chunks[0] = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
		}, Limits{}, ErrMalformed},
		{"chunk not base32", func(m *Manifest) {
			c := SumCID([]byte("small"))
			s, _ := c.StringOfBase('z')
			m.Entries[entryIndex(m, "a/small")].Chunks[0] = s
		}, Limits{}, ErrMalformed},
		{"chunk swapped", func(m *Manifest) { m.Entries[entryIndex(m, "a/small")].Chunks[0] = cidOf("other") }, Limits{}, ErrHashMismatch},
		{"hash wrong", func(m *Manifest) { m.Entries[entryIndex(m, "a/small")].Hash = cidOf("small") }, Limits{}, ErrHashMismatch},
		{"hash missing", func(m *Manifest) { m.Entries[entryIndex(m, "a/small")].Hash = "" }, Limits{}, ErrMalformed},
		{"file with target", func(m *Manifest) { m.Entries[entryIndex(m, "a/small")].Target = "x" }, Limits{}, ErrMalformed},
		{"dir with size", func(m *Manifest) { m.Entries[entryIndex(m, "d")].Size = 1 }, Limits{}, ErrMalformed},
		{"dir with hash", func(m *Manifest) { m.Entries[entryIndex(m, "d")].Hash = cidOf("") }, Limits{}, ErrMalformed},
		{"dir with target", func(m *Manifest) { m.Entries[entryIndex(m, "d")].Target = "a" }, Limits{}, ErrMalformed},
		{"symlink with chunks", func(m *Manifest) { m.Entries[entryIndex(m, "up")].Chunks = []string{cidOf("")} }, Limits{}, ErrMalformed},
		{"symlink empty target", func(m *Manifest) { m.Entries[entryIndex(m, "up")].Target = "" }, Limits{}, ErrMalformed},
		{"symlink NUL", func(m *Manifest) { m.Entries[entryIndex(m, "up")].Target = "a\x00" }, Limits{}, ErrMalformed},
		{"symlink absolute", func(m *Manifest) { m.Entries[entryIndex(m, "up")].Target = "/etc" }, Limits{}, nil},
		{"symlink escapes", func(m *Manifest) { m.Entries[entryIndex(m, "a/l")].Target = "../../x" }, Limits{}, nil},
		{"symlink escapes late", func(m *Manifest) { m.Entries[entryIndex(m, "up")].Target = "a/../d/../.." }, Limits{}, nil},
		{"symlink escapes via link", func(m *Manifest) { m.Entries[entryIndex(m, "a/l")].Target = "../up/../.." }, Limits{}, nil},
		{"symlink via escaping link", func(m *Manifest) { m.Entries[entryIndex(m, "a/l")].Target = "/x" }, Limits{}, nil},
		{"symlink loop", func(m *Manifest) { m.Entries[entryIndex(m, "a/l")].Target = "../up" }, Limits{}, nil},
		{"symlink through nothing escapes", func(m *Manifest) { m.Entries[entryIndex(m, "a/l")].Target = "../nothing/../../a" }, Limits{}, nil},
		{"symlink dangling inside", func(m *Manifest) { m.Entries[entryIndex(m, "a/l")].Target = "no/such/../thing" }, Limits{}, nil},
		{"symlink through file", func(m *Manifest) { m.Entries[entryIndex(m, "a/l")].Target = "small/../../a" }, Limits{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := goodManifest(t)
			tt.mutate(m)
			err := m.Validate(tt.limits)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Validate(%s) = %v, want %v", tt.name, err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("Validate(%s) error has several lines: %q", tt.name, err)
			}
		})
	}
}

func TestFileHash(t *testing.T) {
	t.Parallel()
	if got, want := FileHash(nil), SumCID(nil); !got.Equals(want) {
		t.Errorf("FileHash(nil) = %s, want %s", got, want)
	}
	a, b := SumCID([]byte("a")), SumCID([]byte("b"))
	da, db := a.Hash()[2:], b.Hash()[2:]
	if got, want := FileHash([][]byte{da, db}), SumCID(append(append([]byte{}, da...), db...)); !got.Equals(want) {
		t.Errorf("FileHash(a, b) = %s, want %s", got, want)
	}
	if FileHash([][]byte{da, db}).Equals(FileHash([][]byte{db, da})) {
		t.Errorf("FileHash ignores chunk order")
	}
	// A one-chunk file's hash is not its chunk's CID (nor its content's).
	if FileHash([][]byte{da}).Equals(a) {
		t.Errorf("FileHash(one chunk) = its chunk CID, want the chunk-list hash")
	}
}
