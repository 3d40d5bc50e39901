package share

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

func TestDownloadBuildsTree(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(7))
	big := randBytes(r, 5*testChunk+123)
	repeated := bytes.Repeat([]byte("z"), 6*testChunk) // one chunk CID at six offsets
	tests := []struct {
		name  string
		files []tfile
	}{
		{"one file", []tfile{file("a", 0o644, big)}},
		{"nested tree", []tfile{
			dir("bin", 0o755), file("bin/tool", 0o755, randBytes(r, 3*testChunk)),
			dir("etc", 0o750), file("etc/conf", 0o600, []byte("key=value\n")),
			dir("share", 0o755), dir("share/doc", 0o755), file("share/doc/README", 0o644, big),
		}},
		{"symlinks", []tfile{
			dir("lib", 0o755), file("lib/libx.so.1", 0o755, randBytes(r, 2*testChunk+1)),
			symlink("lib/libx.so", "libx.so.1"), symlink("libdir", "lib"),
		}},
		{"empty file and empty dir", []tfile{file("empty", 0o644, nil), dir("void", 0o700)}},
		{"duplicate files and chunks", []tfile{
			file("a", 0o644, big), file("b", 0o644, big), file("c", 0o755, big), file("zeros", 0o444, repeated),
		}},
		{"special dir modes", []tfile{dir("tmp", 0o1777), dir("grp", 0o2775), file("tmp/x", 0o4755, []byte("setuid dropped"))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := makePkg(t, testChunk, tt.files...)
			s := openStore(t, t.TempDir())
			d, err := s.BeginPackage("pkg", "1.0", p.cid, p.bytes)
			if err != nil {
				t.Fatalf("BeginPackage = %v", err)
			}
			if err := d.Commit(); len(p.chunks) > 0 && !errors.Is(err, ErrIncomplete) {
				t.Fatalf("Commit before any chunk = %v, want ErrIncomplete", err)
			}
			if n := len(d.Missing()); n != len(p.chunks) {
				t.Fatalf("Missing() lists %d chunks, want %d (distinct)", n, len(p.chunks))
			}
			putAll(t, d, p, 8, 42)
			if m := d.Missing(); len(m) != 0 {
				t.Fatalf("Missing() after every chunk = %d chunks", len(m))
			}
			if have, total := d.Bytes(); have != total || total != p.m.TotalSize() {
				t.Errorf("Bytes() = %d, %d, want %d, %d", have, total, p.m.TotalSize(), p.m.TotalSize())
			}
			if err := d.Commit(); err != nil {
				t.Fatalf("Commit = %v", err)
			}
			if err := d.Commit(); err != nil {
				t.Fatalf("second Commit = %v", err)
			}
			checkTree(t, s.TreePath(p.cid), p)
			verifyClean(t, s)
			info, err := s.Lookup("pkg", "1.0")
			if err != nil {
				t.Fatalf("Lookup = %v", err)
			}
			if info.State != StateComplete || info.Have != info.Size || info.TreePath != s.TreePath(p.cid) || !info.ManifestCID.Equals(p.cid) {
				t.Errorf("Lookup = %+v, want complete with tree", info)
			}
			var left int
			walkFiles(s.path(partialDir), func(string, int64) error { left++; return nil })
			if left != 0 {
				t.Errorf("partial/ keeps %d files after commit", left)
			}
			// The tree carries the archive's write bits: no one but root
			// may reach trees/ or objects/.
			for _, d := range []string{treesDir, objectsDir, setuidDir} {
				if st, err := os.Stat(s.path(d)); err != nil || st.Mode().Perm() != 0o700 {
					t.Errorf("%s/: %v, %v; want mode 0700", d, st.Mode(), err)
				}
			}
		})
	}
}

func TestBeginPackageChecksManifest(t *testing.T) {
	t.Parallel()
	p := makePkg(t, testChunk, file("a", 0o644, []byte("hello")))
	other := makePkg(t, testChunk, file("b", 0o644, []byte("other")))
	s := openStore(t, t.TempDir())
	tests := []struct {
		name  string
		c     cid.Cid
		bytes []byte
		want  error
	}{
		{"CID of other bytes", other.cid, p.bytes, metadata.ErrHashMismatch},
		{"not a manifest", metadata.SumCID([]byte("{}")), []byte("{}"), ErrBadManifest},
		{"not canonical", metadata.SumCID(append(bytes.Clone(p.bytes), ' ')), append(bytes.Clone(p.bytes), ' '), metadata.ErrMalformed},
	}
	for _, tt := range tests {
		if _, err := s.BeginPackage("pkg", "1", tt.c, tt.bytes); !errors.Is(err, tt.want) {
			t.Errorf("%s: BeginPackage = %v, want %v", tt.name, err, tt.want)
		}
	}
	d1, err := s.BeginPackage("pkg", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := s.BeginPackage("pkg", "1", p.cid, p.bytes)
	if err != nil || d1 != d2 {
		t.Errorf("second BeginPackage = %p, %v, want the same download %p", d2, err, d1)
	}
}

func TestPutChunkRefusesCorrupt(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(3))
	data := randBytes(r, 3*testChunk)
	p := makePkg(t, testChunk, file("a", 0o644, data), file("b", 0o644, []byte("short file")))
	first := metadata.SumCID(data[:testChunk])
	second := data[testChunk : 2*testChunk]
	flipped := bytes.Clone(data[:testChunk])
	flipped[100] ^= 1
	tests := []struct {
		name string
		c    cid.Cid
		data []byte
		want error
	}{
		{"one bit flipped", first, flipped, ErrChunkCorrupt},
		{"truncated", first, data[:testChunk-1], ErrChunkCorrupt},
		{"one byte more", first, data[:testChunk+1], ErrChunkCorrupt},
		{"another chunk's bytes", first, second, ErrChunkCorrupt},
		{"empty", first, nil, ErrChunkCorrupt},
		{"chunk not in package", metadata.SumCID([]byte("stranger")), []byte("stranger"), ErrUnknownChunk},
	}
	s := openStore(t, t.TempDir())
	d, err := s.BeginPackage("pkg", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		err := d.PutChunk(tt.c, tt.data)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: PutChunk = %v, want %v", tt.name, err, tt.want)
		}
		if tt.want == ErrChunkCorrupt && !errors.Is(err, metadata.ErrHashMismatch) {
			t.Errorf("%s: PutChunk = %v, want it to wrap metadata.ErrHashMismatch", tt.name, err)
		}
	}
	// Nothing was written or recorded.
	if d.Have(first) {
		t.Errorf("Have(%s) = true after corrupt puts", first)
	}
	if _, err := s.ReadChunk(first); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReadChunk(%s) = %v, want ErrNotFound", first, err)
	}
	if n := len(d.Missing()); n != len(p.chunks) {
		t.Errorf("Missing() = %d chunks, want all %d", n, len(p.chunks))
	}
	if have, _ := d.Bytes(); have != 0 {
		t.Errorf("Bytes() have = %d, want 0", have)
	}
	e := p.m.Entries[0]
	// Partial files are created lazily, at their first chunk: none, or
	// zeros only.
	b, err := os.ReadFile(s.partialPath(partialID(e.Hash, e.Size)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if !bytes.Equal(b, make([]byte, len(b))) {
		t.Errorf("partial file has non-zero bytes after only corrupt puts")
	}
	// The right bytes are then accepted.
	if err := d.PutChunk(first, data[:testChunk]); err != nil || !d.Have(first) {
		t.Errorf("PutChunk(right bytes) = %v, Have = %v", err, d.Have(first))
	}
}

func TestIdenticalFilesStoredOnce(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(11))
	lib := randBytes(r, 4*testChunk+5)
	v1 := makePkg(t, testChunk, dir("lib", 0o755), file("lib/libfoo.so", 0o644, lib), file("VERSION", 0o644, []byte("1\n")))
	v2 := makePkg(t, testChunk, dir("lib", 0o755), file("lib/libfoo.so", 0o644, lib), file("VERSION", 0o644, []byte("2\n")))
	s := openStore(t, t.TempDir())
	install(t, s, v1, "foo", "1")

	d, err := s.BeginPackage("foo", "2", v2.cid, v2.bytes)
	if err != nil {
		t.Fatal(err)
	}
	// Only VERSION is missing: the library's object exists already.
	if m := d.Missing(); len(m) != 1 || v2.m.Entries[m[0].Entry].Path != "VERSION" {
		t.Fatalf("Missing() = %v, want only VERSION's chunk", m)
	}
	if have, total := d.Bytes(); have != int64(len(lib)) || total != int64(len(lib)+2) {
		t.Errorf("Bytes() = %d, %d, want %d, %d", have, total, len(lib), len(lib)+2)
	}
	putAll(t, d, v2, 2, 5)
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	a, err := os.Stat(filepath.Join(s.TreePath(v1.cid), "lib/libfoo.so"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.Stat(filepath.Join(s.TreePath(v2.cid), "lib/libfoo.so"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(a, b) {
		t.Errorf("lib/libfoo.so of v1 and v2 are different inodes")
	}
	var objects int
	walkFiles(s.path(objectsDir), func(string, int64) error { objects++; return nil })
	if objects != 3 { // libfoo.so, VERSION 1, VERSION 2
		t.Errorf("objects/ holds %d files, want 3", objects)
	}
	checkTree(t, s.TreePath(v2.cid), v2)
	verifyClean(t, s)
}

func TestSameContentOtherMode(t *testing.T) {
	t.Parallel()
	body := []byte("#!/bin/sh\necho hi\n")
	p := makePkg(t, testChunk, file("data", 0o644, body), file("run", 0o755, body))
	s := openStore(t, t.TempDir())
	install(t, s, p, "modes", "1")
	checkTree(t, s.TreePath(p.cid), p) // run is 0555, data 0444
	verifyClean(t, s)
}

func TestReadChunk(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(5))
	data := randBytes(r, 2*testChunk)
	p := makePkg(t, testChunk, file("a", 0o644, data), file("b", 0o644, []byte("b")))
	c0, c1 := metadata.SumCID(data[:testChunk]), metadata.SumCID(data[testChunk:])
	s := openStore(t, t.TempDir())
	d, err := s.BeginPackage("pkg", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutChunk(c0, data[:testChunk]); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    cid.Cid
		want []byte
		err  error
	}{
		{"present in a partial file", c0, data[:testChunk], nil},
		{"not yet written", c1, nil, ErrNotFound},
		{"unknown", metadata.SumCID([]byte("x")), nil, ErrNotFound},
	}
	for _, tt := range tests {
		got, err := s.ReadChunk(tt.c)
		if !errors.Is(err, tt.err) || !bytes.Equal(got, tt.want) {
			t.Errorf("%s: ReadChunk = %d bytes, %v, want %d bytes, %v", tt.name, len(got), err, len(tt.want), tt.err)
		}
	}
	putAll(t, d, p, 2, 1)
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadChunk(c1); err != nil || !bytes.Equal(got, data[testChunk:]) {
		t.Errorf("from an object: ReadChunk = %v", err)
	}
	// A chunk whose stored bytes changed is not served.
	obj := s.ObjectPath(p.m.Entries[0].Hash, EntryVariant(&p.m.Entries[0]))
	os.Chmod(obj, 0o644)
	f, _ := os.OpenFile(obj, os.O_WRONLY, 0)
	f.WriteAt([]byte{^data[testChunk]}, testChunk)
	f.Close()
	if _, err := s.ReadChunk(c1); !errors.Is(err, ErrNotFound) {
		t.Errorf("corrupted object: ReadChunk = %v, want ErrNotFound", err)
	}
	if problems, _ := s.Verify(t.Context()); len(problems) == 0 {
		t.Errorf("Verify finds nothing wrong with a modified object")
	}
}

// TestReadChunkTrustsUnwrittenObjects: chunks of an object this process
// verified as it stored it are served without hashing them again while
// the file is not written (hard links into trees do not count), and are
// hashed again after a write, or after a restart.
func TestReadChunkTrustsUnwrittenObjects(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(6))
	data := randBytes(r, 3*testChunk)
	p := makePkg(t, testChunk, file("a", 0o644, data))
	c1 := metadata.SumCID(data[testChunk : 2*testChunk])
	dir := t.TempDir()
	s := openStore(t, dir)
	d, err := s.BeginPackage("pkg", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	putAll(t, d, p, 2, 1)
	if err := d.Commit(); err != nil { // links the object into the tree
		t.Fatal(err)
	}
	obj := s.ObjectPath(p.m.Entries[0].Hash, EntryVariant(&p.m.Entries[0]))
	if got, err := s.ReadChunk(c1); err != nil || !bytes.Equal(got, data[testChunk:2*testChunk]) {
		t.Fatalf("ReadChunk = %v", err)
	}
	// Bytes changed behind the store's back with the modification time
	// set back (what bit rot looks like): served as they are, unhashed.
	fi, err := os.Stat(obj)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(obj, 0o644)
	f, err := os.OpenFile(obj, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{^data[testChunk]}, testChunk)
	f.Close()
	os.Chmod(obj, 0o444)
	if err := os.Chtimes(obj, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadChunk(c1); err != nil || got[0] == data[testChunk] {
		t.Errorf("unwritten (by its stamp) object: ReadChunk = %v; want the stored bytes, not hashed again", err)
	}
	// After a restart nothing is trusted: the chunk is hashed and refused.
	s.Close()
	s2 := openStore(t, dir)
	if _, err := s2.ReadChunk(c1); !errors.Is(err, ErrNotFound) {
		t.Errorf("after a restart: ReadChunk of a changed chunk = %v, want ErrNotFound", err)
	}
}

// TestConcurrentDownloadsShareFile: two packages downloading one file at
// the same time share its partial file and end with one object.
func TestConcurrentDownloadsShareFile(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(13))
	shared := randBytes(r, 9*testChunk+7)
	a := makePkg(t, testChunk, file("lib", 0o644, shared), file("a", 0o644, []byte("a")))
	b := makePkg(t, testChunk, file("lib", 0o644, shared), file("b", 0o644, []byte("b")))
	s := openStore(t, t.TempDir())
	da, err := s.BeginPackage("a", "1", a.cid, a.bytes)
	if err != nil {
		t.Fatal(err)
	}
	db, err := s.BeginPackage("b", "1", b.cid, b.bytes)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- putAllErr(db, b, 4, 2) }()
	putAll(t, da, a, 4, 1)
	if err := <-done; err != nil {
		t.Fatalf("PutChunk into b = %v", err)
	}
	for _, d := range []*Partial{da, db} {
		if err := d.Commit(); err != nil {
			t.Fatalf("Commit = %v", err)
		}
	}
	x, _ := os.Stat(filepath.Join(s.TreePath(a.cid), "lib"))
	y, _ := os.Stat(filepath.Join(s.TreePath(b.cid), "lib"))
	if x == nil || y == nil || !os.SameFile(x, y) {
		t.Errorf("lib of a and b are not one inode")
	}
	checkTree(t, s.TreePath(a.cid), a)
	checkTree(t, s.TreePath(b.cid), b)
	verifyClean(t, s)
}

func TestHasChunk(t *testing.T) {
	p := makePkg(t, testChunk,
		file("a", 0o644, bytes.Repeat([]byte("a"), 3*int(testChunk))),
		file("b", 0o644, []byte("bee")))
	s := openStore(t, t.TempDir())
	d, err := s.BeginPackage("p", "1.0.0", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	refs := p.m.UniqueChunks()
	for _, r := range refs {
		if s.HasChunk(r.CID) {
			t.Fatalf("HasChunk(%s) = true before any chunk was stored", r.CID)
		}
	}
	first := refs[0]
	if err := d.PutChunk(first.CID, p.chunks[first.CID]); err != nil {
		t.Fatal(err)
	}
	if !s.HasChunk(first.CID) {
		t.Errorf("HasChunk(%s) = false for a chunk recorded in a partial file", first.CID)
	}
	for _, r := range refs {
		if err := d.PutChunk(r.CID, p.chunks[r.CID]); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		if !s.HasChunk(r.CID) {
			t.Errorf("HasChunk(%s) = false after commit", r.CID)
		}
	}
}
