package share

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

const testChunk = metadata.MinChunkSize // 4 KiB: many chunks from small files

// tfile is one entry of a test package.
type tfile struct {
	path   string
	typ    metadata.EntryType
	mode   uint32
	data   []byte
	target string

	uid, gid uint32
}

// owned is f owned by uid:gid.
func owned(f tfile, uid, gid uint32) tfile { f.uid, f.gid = uid, gid; return f }

func file(p string, mode uint32, data []byte) tfile {
	return tfile{path: p, typ: metadata.TypeFile, mode: mode, data: data}
}
func dir(p string, mode uint32) tfile { return tfile{path: p, typ: metadata.TypeDir, mode: mode} }
func symlink(p, target string) tfile {
	return tfile{path: p, typ: metadata.TypeSymlink, mode: 0o777, target: target}
}

// testPkg is a package built in memory: its manifest and every chunk.
type testPkg struct {
	m      *metadata.Manifest
	bytes  []byte
	cid    cid.Cid
	chunks map[cid.Cid][]byte
	files  []tfile
}

// makePkg builds the manifest of files (chunked at chunkSize) the way a
// publisher would, and checks that metadata accepts it.
func makePkg(t testing.TB, chunkSize int64, files ...tfile) *testPkg {
	t.Helper()
	p := &testPkg{m: &metadata.Manifest{Format: metadata.ManifestFormat, ChunkSize: chunkSize}, chunks: make(map[cid.Cid][]byte), files: files}
	for _, f := range files {
		e := metadata.Entry{Path: f.path, Type: f.typ, Mode: f.mode, Target: f.target, UID: f.uid, GID: f.gid}
		if f.typ == metadata.TypeFile {
			e.Size = int64(len(f.data))
			var digests [][]byte
			for off := int64(0); off < e.Size; off += chunkSize {
				b := f.data[off:min(off+chunkSize, e.Size)]
				sum := sha256.Sum256(b)
				digests = append(digests, sum[:])
				c := metadata.SumCID(b)
				p.chunks[c] = b
				e.Chunks = append(e.Chunks, c.String())
			}
			e.Hash = metadata.FileHash(digests).String()
		}
		p.m.Entries = append(p.m.Entries, e)
	}
	p.m.Sort()
	b, err := p.m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := metadata.DecodeManifest(b, metadata.Limits{}); err != nil {
		t.Fatalf("test package does not validate: %v", err)
	}
	p.bytes, p.cid = b, metadata.SumCID(b)
	return p
}

// randBytes returns n pseudo-random bytes from r.
func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	r.Read(b)
	return b
}

func openStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, SyncWrites: true})
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// putAll stores every chunk of p from `workers` goroutines, each chunk
// twice, in random order.
func putAll(t testing.TB, d *Partial, p *testPkg, workers int, seed int64) {
	t.Helper()
	if err := putAllErr(d, p, workers, seed); err != nil {
		t.Fatalf("PutChunk = %v", err)
	}
}

// putAllErr is putAll for goroutines other than the test's.
func putAllErr(d *Partial, p *testPkg, workers int, seed int64) error {
	var cids []cid.Cid
	for c := range p.chunks {
		cids = append(cids, c, c)
	}
	r := rand.New(rand.NewSource(seed))
	r.Shuffle(len(cids), func(i, j int) { cids[i], cids[j] = cids[j], cids[i] })
	return concurrently(cids, workers, func(c cid.Cid) error { return d.PutChunk(c, p.chunks[c]) })
}

// concurrently calls fn for each of items from `workers` goroutines and
// returns the first error.
func concurrently[T any](items []T, workers int, fn func(T) error) error {
	work := make(chan T)
	errs := make(chan error, len(items))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				errs <- fn(it)
			}
		}()
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// install downloads and commits p as name@version.
func install(t testing.TB, s *Store, p *testPkg, name, version string) {
	t.Helper()
	d, err := s.BeginPackage(name, version, p.cid, p.bytes)
	if err != nil {
		t.Fatalf("BeginPackage(%s@%s) = %v", name, version, err)
	}
	putAll(t, d, p, 4, 1)
	if err := d.Commit(); err != nil {
		t.Fatalf("Commit(%s@%s) = %v", name, version, err)
	}
}

// checkTree fails t unless root holds exactly p's entries: contents, modes
// (the archive's, without setuid and setgid on files), symlink targets.
func checkTree(t testing.TB, root string, p *testPkg) {
	t.Helper()
	want := make(map[string]tfile)
	for _, f := range p.files {
		want[f.path] = f
	}
	var got []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		got = append(got, rel)
		f, ok := want[rel]
		if !ok {
			t.Errorf("tree has %q, not in the manifest", rel)
			return nil
		}
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		switch f.typ {
		case metadata.TypeFile:
			if !info.Mode().IsRegular() {
				t.Errorf("%q: mode %v, want a regular file", rel, info.Mode())
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if string(b) != string(f.data) {
				t.Errorf("%q: content differs (%d bytes, want %d)", rel, len(b), len(f.data))
			}
			if got, want := info.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), fs.FileMode(f.mode&0o777); got != want {
				t.Errorf("%q: perm %#o, want %#o", rel, got, want)
			}
		case metadata.TypeDir:
			if !info.IsDir() {
				t.Errorf("%q: not a directory", rel)
			}
			if got, want := info.Mode()&(fs.ModePerm|fs.ModeSticky|fs.ModeSetgid|fs.ModeSetuid), dirMode(currentLayout, f.mode); got != want {
				t.Errorf("%q: dir mode %v, want %v", rel, got, want)
			}
		case metadata.TypeSymlink:
			tg, err := os.Readlink(path)
			if err != nil || tg != f.target {
				t.Errorf("%q: symlink to %q (%v), want %q", rel, tg, err, f.target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	if len(got) != len(want) {
		sort.Strings(got)
		t.Errorf("tree has %d entries, manifest %d: %v", len(got), len(want), got)
	}
}

// verifyClean fails t if Verify finds a problem.
func verifyClean(t testing.TB, s *Store) {
	t.Helper()
	problems, err := s.Verify(t.Context())
	if err != nil {
		t.Fatalf("Verify = %v", err)
	}
	for _, p := range problems {
		t.Errorf("Verify: %s", p)
	}
}

// viewAt is the view of tree at the absolute path into, whose parent
// directory is the VM's root.
func viewAt(tree, into string, mode ViewMode, upper string) View {
	return View{Tree: tree, Root: filepath.Dir(into), Path: filepath.Base(into), Mode: mode, Upper: upper}
}

// AddInstall records VM vm's install of the package under its first
// name (the daemon records installs by name with RecordInstall), at into (resolved beneath into's parent directory).
func (s *Store) AddInstall(vm string, manifestCID cid.Cid, into string, mode string) error {
	if err := checkVM(vm); err != nil {
		return err
	}
	info, err := s.Package(manifestCID)
	if err != nil {
		return fmt.Errorf("install %s in VM %s: %w", manifestCID, vm, err)
	}
	return s.RecordInstall(Install{VM: vm, Name: info.Name, Version: info.Version, ManifestCID: manifestCID,
		Root: filepath.Dir(into), Into: into, Mode: mode})
}

// RemoveInstall drops VM vm's installs of the package, under any name.
func (s *Store) RemoveInstall(vm string, manifestCID cid.Cid) error {
	insts, err := s.Installs(vm)
	if err != nil {
		return err
	}
	n := 0
	for _, in := range insts {
		if in.ManifestCID.Equals(manifestCID) {
			if err := s.DropInstall(vm, in.Name); err != nil {
				return err
			}
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("install of %s in VM %s: %w", manifestCID, vm, ErrNotFound)
	}
	return nil
}
