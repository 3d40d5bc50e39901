package share

import (
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
)

func TestRemovePackageRefusesInstalled(t *testing.T) {
	t.Parallel()
	p := makePkg(t, testChunk, file("a", 0o644, []byte("a")))
	s := openStore(t, t.TempDir())
	install(t, s, p, "pkg", "1")
	if err := s.AddInstall("vm1", p.cid, "/vm1/pkg", string(ViewBind)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddInstall("vm2", p.cid, "/vm2/pkg", string(ViewOverlay)); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		op   func() error
		want error
	}{
		{"installed in two VMs", func() error { return s.RemovePackage(p.cid) }, ErrInUse},
		{"drop vm1's install", func() error { return s.RemoveInstall("vm1", p.cid) }, nil},
		{"drop it again", func() error { return s.RemoveInstall("vm1", p.cid) }, ErrNotFound},
		{"still installed in vm2", func() error { return s.RemovePackage(p.cid) }, ErrInUse},
		{"drop vm2's install", func() error { return s.RemoveInstall("vm2", p.cid) }, nil},
		{"no install left", func() error { return s.RemovePackage(p.cid) }, nil},
		{"already removed", func() error { return s.RemovePackage(p.cid) }, ErrNotFound},
		{"install a removed package", func() error { return s.AddInstall("vm1", p.cid, "/x", "bind") }, ErrNotFound},
		{"bad VM id", func() error { return s.AddInstall("a/b", p.cid, "/x", "bind") }, ErrInvalid},
	}
	for _, st := range steps {
		if err := st.op(); !errors.Is(err, st.want) || (st.want == nil && err != nil) {
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.want)
		}
		if st.name == "installed in two VMs" {
			if _, err := os.Stat(s.TreePath(p.cid)); err != nil {
				t.Fatalf("refused RemovePackage touched the tree: %v", err)
			}
			info, err := s.Package(p.cid)
			if err != nil || len(info.Installs) != 2 {
				t.Fatalf("Package = %+v, %v, want two installs", info, err)
			}
			if ins, err := s.Installs("vm2"); err != nil || len(ins) != 1 || ins[0].Into != "/vm2/pkg" || ins[0].Mode != "overlay" {
				t.Fatalf("Installs(vm2) = %+v, %v", ins, err)
			}
		}
	}
	if _, err := s.Lookup("pkg", "1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup after RemovePackage = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(s.TreePath(p.cid)); !os.IsNotExist(err) {
		t.Errorf("tree still there after RemovePackage: %v", err)
	}
}

func TestGC(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(21))
	shared := randBytes(r, 3*testChunk)
	installed := makePkg(t, testChunk, file("shared", 0o644, shared), file("only-installed", 0o644, randBytes(r, 100)))
	dropped := makePkg(t, testChunk, file("shared", 0o644, shared), file("only-dropped", 0o644, randBytes(r, 2*testChunk)))
	kept := makePkg(t, testChunk, file("only-kept", 0o755, randBytes(r, 300)))
	unfinished := makePkg(t, testChunk, file("big", 0o644, randBytes(r, 4*testChunk)))

	s := openStore(t, t.TempDir())
	install(t, s, installed, "inst", "1")
	install(t, s, dropped, "drop", "1")
	install(t, s, kept, "kept", "1")
	if err := s.AddInstall("vm1", installed.cid, "/v", "bind"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetKeep(installed.cid, false); err != nil {
		t.Fatal(err)
	}
	if err := s.SetKeep(dropped.cid, false); err != nil {
		t.Fatal(err)
	}
	// An unfinished, installed package whose download is not open any more
	// (as after a restart): its partial file must survive.
	d, err := s.BeginPackage("unf", "1", unfinished.cid, unfinished.bytes)
	if err != nil {
		t.Fatal(err)
	}
	c0 := unfinished.m.Entries[0].Chunks[0]
	if err := d.PutChunk(cid.MustParse(c0), unfinished.chunks[cid.MustParse(c0)]); err != nil {
		t.Fatal(err)
	}
	if err := s.AddInstall("vm2", unfinished.cid, "/u", "overlay"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetKeep(unfinished.cid, false); err != nil {
		t.Fatal(err)
	}
	s.dropPartial(unfinished.cid.String()) // forget the open download
	// Strays the index does not know.
	junkObj := filepath.Join(s.path(objectsDir), "zz", "bafkjunk")
	os.MkdirAll(filepath.Dir(junkObj), 0o755)
	os.WriteFile(junkObj, []byte("junk"), 0o444)
	os.MkdirAll(filepath.Dir(s.partialPath("junk-4")), 0o700)
	os.WriteFile(s.partialPath("junk-4"), []byte("junk"), 0o600)
	os.Mkdir(filepath.Join(s.path(treesDir), "junk"), 0o555)

	res, err := s.GC(t.Context())
	if err != nil {
		t.Fatalf("GC = %v", err)
	}
	want := GCResult{Packages: 1, Objects: 2, Trees: 2, Partials: 1}
	if res.Packages != want.Packages || res.Objects != want.Objects || res.Trees != want.Trees || res.Partials != want.Partials {
		t.Errorf("GC = %+v, want %+v", *res, want)
	}
	checks := []struct {
		name string
		p    *testPkg
		gone bool
	}{
		{"installed", installed, false},
		{"unreferenced", dropped, true},
		{"kept", kept, false},
		{"unfinished but installed", unfinished, false},
	}
	for _, c := range checks {
		_, err := s.Package(c.p.cid)
		if c.gone != errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Package after GC = %v, want gone=%v", c.name, err, c.gone)
		}
		if c.p == unfinished {
			continue
		}
		_, err = os.Stat(s.TreePath(c.p.cid))
		if c.gone != os.IsNotExist(err) {
			t.Errorf("%s: tree after GC: %v, want gone=%v", c.name, err, c.gone)
		}
		if !c.gone {
			checkTree(t, s.TreePath(c.p.cid), c.p)
		}
	}
	if _, err := os.Stat(s.ObjectPath(dropped.m.Entries[entryIndex(dropped, "only-dropped")].Hash, EntryVariant(&dropped.m.Entries[entryIndex(dropped, "only-dropped")]))); !os.IsNotExist(err) {
		t.Errorf("object only the removed package used survives GC: %v", err)
	}
	e := unfinished.m.Entries[0]
	if _, err := os.Stat(s.partialPath(partialID(e.Hash, e.Size))); err != nil {
		t.Errorf("partial file of an installed package removed: %v", err)
	}
	verifyClean(t, s)
	// The unfinished package resumes where it was.
	d, err = s.BeginPackage("unf", "1", unfinished.cid, unfinished.bytes)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(d.Missing()); n != len(unfinished.chunks)-1 {
		t.Errorf("Missing() after GC = %d, want %d", n, len(unfinished.chunks)-1)
	}

	// Once nothing references them, everything goes.
	for _, p := range []*testPkg{installed, unfinished} {
		ins, _ := s.Installs("")
		for _, in := range ins {
			if in.ManifestCID.Equals(p.cid) {
				if err := s.RemoveInstall(in.VM, p.cid); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.RemovePackage(p.cid); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetKeep(kept.cid, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{objectsDir, partialDir, treesDir} {
		var n int
		walkFiles(s.path(sub), func(string, int64) error { n++; return nil })
		if n != 0 {
			t.Errorf("%s/ holds %d files after everything was released", sub, n)
		}
	}
	if pkgs, err := s.Packages(); err != nil || len(pkgs) != 0 {
		t.Errorf("Packages() = %v, %v, want none", pkgs, err)
	}
}

// TestRemovedPartialRefusesWrites: once RemovePackage drops a package
// being downloaded, its Partial neither stores chunks nor commits.
func TestRemovedPartialRefusesWrites(t *testing.T) {
	t.Parallel()
	p := makePkg(t, testChunk, file("a", 0o644, []byte("aaaa")), file("b", 0o644, []byte("bbbb")))
	s := openStore(t, t.TempDir())
	d, err := s.BeginPackage("pkg", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RemovePackage(p.cid); err != nil {
		t.Fatalf("RemovePackage(downloading) = %v", err)
	}
	for c, b := range p.chunks {
		if err := d.PutChunk(c, b); !errors.Is(err, ErrNotFound) {
			t.Errorf("PutChunk after RemovePackage = %v, want ErrNotFound", err)
		}
		if err := d.PutVerifiedChunk(c, b); !errors.Is(err, ErrNotFound) {
			t.Errorf("PutVerifiedChunk after RemovePackage = %v, want ErrNotFound", err)
		}
	}
	if err := d.Commit(); !errors.Is(err, ErrNotFound) {
		t.Errorf("Commit after RemovePackage = %v, want ErrNotFound", err)
	}
}

// TestGCDropsStaleChunkRecords: once GC has removed every package, no
// presence record (c/) of a partial file and no chunk location (k/) is
// left in the index.
func TestGCDropsStaleChunkRecords(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(7))
	p1 := makePkg(t, testChunk, file("a", 0o644, randBytes(r, 5*testChunk)))
	p2 := makePkg(t, testChunk, file("b", 0o644, randBytes(r, 5*testChunk)), file("c", 0o644, randBytes(r, 3*testChunk)))
	s := openStore(t, t.TempDir())
	install(t, s, p1, "one", "1")
	d, err := s.BeginPackage("two", "1", p2.cid, p2.bytes)
	if err != nil {
		t.Fatal(err)
	}
	// Half of b's chunks: a partial file with presence records.
	for _, c := range p2.m.Entries[0].Chunks[:2] {
		cc, _ := cid.Decode(c)
		if err := d.PutChunk(cc, p2.chunks[cc]); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (presence, locs int) {
		t.Helper()
		if err := s.db.View(func(txn *badger.Txn) error {
			if err := scanKeys(txn, prefixPresence, func([]byte, *badger.Item) error { presence++; return nil }); err != nil {
				return err
			}
			return scanKeys(txn, prefixChunkLoc, func([]byte, *badger.Item) error { locs++; return nil })
		}); err != nil {
			t.Fatal(err)
		}
		return presence, locs
	}
	if presence, locs := count(); presence == 0 || locs == 0 {
		t.Fatalf("before GC: %d presence records, %d chunk locations, want some of each", presence, locs)
	}
	d.Close()
	if err := s.RemovePackage(p1.cid); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GCWith(context.Background(), GCOptions{Partial: true}); err != nil {
		t.Fatal(err)
	}
	if presence, locs := count(); presence != 0 || locs != 0 {
		t.Errorf("after GC: %d presence records, %d chunk locations, want none", presence, locs)
	}
}
