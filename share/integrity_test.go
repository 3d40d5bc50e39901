package share

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// storeWithPackage makes a store under dir holding one committed package
// and closes it; it returns the package.
func storeWithPackage(t *testing.T, storeDir string) *testPkg {
	t.Helper()
	r := rand.New(rand.NewSource(8))
	p := makePkg(t, testChunk, dir("d", 0o755), file("d/a", 0o644, randBytes(r, 2*testChunk+3)), file("b", 0o755, randBytes(r, 100)))
	s, err := Open(Config{Dir: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	install(t, s, p, "pkg", "1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// filesUnder counts the non-directories under dir.
func filesUnder(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	if err := walkFiles(dir, func(string, int64) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOpenRefusesLostIndex: an index that is gone, another store's, or
// missing packages whose trees exist is refused, and nothing on disk is
// touched.
func TestOpenRefusesLostIndex(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string, p *testPkg)
		want   string
	}{
		{"index deleted", func(t *testing.T, dir string, _ *testPkg) {
			if err := os.RemoveAll(filepath.Join(dir, indexDir)); err != nil {
				t.Fatal(err)
			}
		}, "no store id"},
		{"another store's index", func(t *testing.T, dir string, _ *testPkg) {
			other := t.TempDir()
			s, err := Open(Config{Dir: other})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			os.RemoveAll(filepath.Join(dir, indexDir))
			if err := os.Rename(filepath.Join(other, indexDir), filepath.Join(dir, indexDir)); err != nil {
				t.Fatal(err)
			}
		}, "belongs to store"},
		{"package records lost", func(t *testing.T, dir string, p *testPkg) {
			db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, indexDir)).WithLogger(nil))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(prefixPackage + p.cid.String())) }); err != nil {
				t.Fatal(err)
			}
		}, "index has 0 packages but trees/ holds 1 trees, 1 unknown to it"},
		{"old store, index deleted", func(t *testing.T, dir string, _ *testPkg) {
			os.Remove(filepath.Join(dir, storeIDFile))
			os.RemoveAll(filepath.Join(dir, indexDir))
		}, "the index is empty but trees/ holds 1 entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			p := storeWithPackage(t, dir)
			objects, trees := filesUnder(t, filepath.Join(dir, objectsDir)), filesUnder(t, filepath.Join(dir, treesDir))
			tt.damage(t, dir, p)
			s, err := Open(Config{Dir: dir})
			if err == nil {
				s.Close()
				t.Fatalf("Open = nil, want ErrIndexLost")
			}
			if !errors.Is(err, ErrIndexLost) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "stork index rebuild") {
				t.Errorf("Open = %v, want ErrIndexLost saying %q and naming `stork index rebuild`", err, tt.want)
			}
			if got := filesUnder(t, filepath.Join(dir, objectsDir)); got != objects {
				t.Errorf("objects/ holds %d files after the refused Open, want %d", got, objects)
			}
			if got := filesUnder(t, filepath.Join(dir, treesDir)); got != trees {
				t.Errorf("trees/ holds %d files after the refused Open, want %d", got, trees)
			}
			checkTree(t, filepath.Join(dir, treesDir, p.cid.String()), p)
		})
	}
}

// TestOpenAdoptsOldStore: a store made before stores had an id opens, and
// gets its id and its manifest files; a complete package whose tree is
// gone is partial again and its next commit builds the tree.
func TestOpenAdoptsOldStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := storeWithPackage(t, dir)
	key := p.cid.String()
	for _, f := range []string{storeIDFile, filepath.Join(manifestsDir, key), filepath.Join(manifestsDir, key+namesSuffix)} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeAll(filepath.Join(dir, treesDir, key)); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir)
	if _, err := os.Stat(filepath.Join(dir, storeIDFile)); err != nil {
		t.Errorf("store id file after Open: %v", err)
	}
	if _, b, err := s.readManifestFile(p.cid); err != nil || string(b) != string(p.bytes) {
		t.Errorf("manifest file after Open: %v", err)
	}
	if nf, err := s.readNames(key); err != nil || !reflect.DeepEqual(nf.Names, []pkgName{{"pkg", "1"}}) {
		t.Errorf("names file after Open = %+v, %v", nf, err)
	}
	info, err := s.Package(p.cid)
	if err != nil || info.State != StatePartial {
		t.Fatalf("Package of a complete package without its tree = %+v, %v, want partial", info, err)
	}
	d, err := s.BeginPackage("pkg", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(d.Missing()); n != 0 {
		t.Errorf("Missing = %d chunks, want none: the objects are all there", n)
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	checkTree(t, s.TreePath(p.cid), p)
	verifyClean(t, s)
}

// TestManifestFiles: BeginPackage keeps the manifest and every name it is
// registered under on disk; they go with the package.
func TestManifestFiles(t *testing.T) {
	t.Parallel()
	p := makePkg(t, testChunk, file("a", 0o644, []byte("content")))
	s := openStore(t, t.TempDir())
	install(t, s, p, "one", "1.0")
	install(t, s, p, "two", "2:1.0~rc1")
	install(t, s, p, "one", "1.0")
	nf, err := s.readNames(p.cid.String())
	if err != nil || !reflect.DeepEqual(nf.Names, []pkgName{{"one", "1.0"}, {"two", "2:1.0~rc1"}}) {
		t.Errorf("names = %+v, %v, want one@1.0 and two@2:1.0~rc1", nf, err)
	}
	if _, b, err := s.readManifestFile(p.cid); err != nil || string(b) != string(p.bytes) {
		t.Errorf("manifest file = %v", err)
	}
	if err := s.RemovePackage(p.cid); err != nil {
		t.Fatal(err)
	}
	if n := filesUnder(t, s.path(manifestsDir)); n != 0 {
		t.Errorf("manifests/ holds %d files after RemovePackage, want none", n)
	}
}

func TestDecodeNames(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 129)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"one", `{"format":1,"names":[{"name":"a","version":"1"}]}`, true},
		{"two", `{"format":1,"names":[{"name":"a","version":"1"},{"name":"b","version":"1:2~x+y"}]}`, true},
		{"newline after", "{\"format\":1,\"names\":[{\"name\":\"a\",\"version\":\"1\"}]}\n", true},
		{"no names", `{"format":1,"names":[]}`, false},
		{"wrong format", `{"format":2,"names":[{"name":"a","version":"1"}]}`, false},
		{"unknown field", `{"format":1,"names":[{"name":"a","version":"1","x":1}]}`, false},
		{"trailing data", `{"format":1,"names":[{"name":"a","version":"1"}]} {}`, false},
		{"empty name", `{"format":1,"names":[{"name":"","version":"1"}]}`, false},
		{"NUL in version", `{"format":1,"names":[{"name":"a","version":"1\u0000"}]}`, false},
		{"long name", `{"format":1,"names":[{"name":"` + long + `","version":"1"}]}`, false},
		{"duplicate", `{"format":1,"names":[{"name":"a","version":"1"},{"name":"a","version":"1"}]}`, false},
		{"not json", `names`, false},
		{"null", `null`, false},
	}
	for _, tt := range tests {
		nf, err := decodeNames([]byte(tt.in))
		if (err == nil) != tt.ok {
			t.Errorf("%s: decodeNames(%q) = %+v, %v, want ok=%v", tt.name, tt.in, nf, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error %v does not wrap ErrInvalid", tt.name, err)
		}
	}
}

// FuzzDecodeNames: names files are read back from disk; any bytes must
// decode or fail cleanly, and what decodes encodes to bytes that decode to
// the same.
func FuzzDecodeNames(f *testing.F) {
	f.Add([]byte(`{"format":1,"names":[{"name":"a","version":"1"}]}`))
	f.Add([]byte(`{"format":1,"names":[{"name":"a","version":"1"},{"name":"b","version":"1:2~x+y"}]}`))
	f.Add([]byte(`{"format":1,"names":[{"name":"a\u00e9","version":"\ud800"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		nf, err := decodeNames(b)
		if err != nil {
			return
		}
		out, err := encodeNames(nf)
		if err != nil {
			t.Fatalf("encode of a decoded file: %v", err)
		}
		again, err := decodeNames(out)
		if err != nil || !reflect.DeepEqual(again, nf) {
			t.Fatalf("round trip: %+v, %v, want %+v", again, err, nf)
		}
	})
}
