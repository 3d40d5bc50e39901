package share

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
)

// flipByte changes one byte of the file at p in place (as a write through
// a link view would), keeping its mode.
func flipByte(t *testing.T, p string, off int64) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chmod(p, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// TestRebuild: the index is deleted; Open refuses; Rebuild recovers every
// package under every name from the disk, re-hashing objects; a damaged
// object is quarantined and its package partial until fetched again,
// which relinks its tree; a tree with no manifest goes to lost+found; GC
// after the rebuild removes nothing a package needs.
func TestRebuild(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(13))
	shared := randBytes(r, 2*testChunk)
	a := makePkg(t, testChunk, dir("bin", 0o755), file("bin/a", 0o755, randBytes(r, 3*testChunk+1)), file("shared", 0o644, shared), symlink("link", "bin/a"))
	b := makePkg(t, testChunk, file("b", 0o644, randBytes(r, testChunk+5)), file("shared", 0o644, shared))
	c := makePkg(t, testChunk, file("c", 0o644, randBytes(r, 700)))
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	install(t, s, a, "a", "1.0")
	install(t, s, a, "a-alias", "1.0")
	install(t, s, b, "b", "2.0")
	install(t, s, c, "c", "3.0")
	bFile := b.m.Entries[entryIndex(b, "b")]
	bObj := s.ObjectPath(bFile.Hash, EntryVariant(&bFile))
	s.Close()

	os.RemoveAll(filepath.Join(dir, indexDir))
	flipByte(t, bObj, 10)
	for _, f := range []string{c.cid.String(), c.cid.String() + namesSuffix} {
		os.Remove(filepath.Join(dir, manifestsDir, f))
	}
	if _, err := Open(Config{Dir: dir}); !errors.Is(err, ErrIndexLost) {
		t.Fatalf("Open with the index deleted = %v, want ErrIndexLost", err)
	}

	rep, err := Rebuild(t.Context(), Config{Dir: dir}, nil)
	if err != nil {
		t.Fatalf("Rebuild = %v", err)
	}
	want := []string{
		fmt.Sprintf("a-alias@1.0 %s complete", a.cid), fmt.Sprintf("a@1.0 %s complete", a.cid), fmt.Sprintf("b@2.0 %s partial", b.cid),
	}
	if strings.Join(rep.Packages, "\n") != strings.Join(want, "\n") {
		t.Errorf("Rebuild packages =\n%s\nwant\n%s", strings.Join(rep.Packages, "\n"), strings.Join(want, "\n"))
	}
	if len(rep.Damaged) != 1 || !strings.Contains(rep.Damaged[0], bFile.Hash) || rep.Objects != 2 || len(rep.LostTrees) != 1 {
		t.Errorf("Rebuild = %+v, want b's object damaged, 2 objects good (a's and the shared one), c's tree lost", *rep)
	}
	checkTree(t, rep.LostTrees[0], c)

	s = openStore(t, dir)
	for _, n := range []NameVersion{{"a", "1.0"}, {"a-alias", "1.0"}} {
		if info, err := s.Lookup(n.Name, n.Version); err != nil || !info.ManifestCID.Equals(a.cid) || info.State != StateComplete {
			t.Errorf("Lookup(%s@%s) = %+v, %v, want a complete", n.Name, n.Version, info, err)
		}
	}
	checkTree(t, s.TreePath(a.cid), a)
	if res, err := s.GC(t.Context()); err != nil || res.Packages != 0 || res.Trees != 0 {
		t.Errorf("GC after Rebuild = %+v, %v, want no package or tree removed", res, err)
	}
	checkTree(t, s.TreePath(a.cid), a)
	if qs, _ := os.ReadDir(filepath.Join(dir, quarantineDir)); len(qs) != 1 {
		t.Errorf("quarantine/ holds %d files, want the damaged object", len(qs))
	}

	if reps, err := s.RepairsPending(); err != nil || len(reps) != 1 || !reps[0].Package.ManifestCID.Equals(b.cid) {
		t.Errorf("RepairsPending after Rebuild = %+v, %v, want b (its tree held a damaged object)", reps, err)
	}
	// b is fetched again: only its damaged file is missing; the commit
	// puts the new object into the tree in place.
	view := s.TreePath(b.cid)
	d, err := s.BeginPackage("b", "2.0", b.cid, b.bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(d.Missing()), len(bFile.Chunks); got != want {
		t.Errorf("Missing = %d chunks, want %d (b's damaged file only)", got, want)
	}
	putAll(t, d, b, 2, 3)
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	checkTree(t, view, b)
	verifyClean(t, s)
}

// TestRebuildLookup: a tree whose manifest is not on disk is recovered
// through the lookup (as from the repository's signed metadata).
func TestRebuildLookup(t *testing.T) {
	t.Parallel()
	p := makePkg(t, testChunk, file("x", 0o644, []byte("hello")))
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	install(t, s, p, "x", "1")
	s.Close()
	os.RemoveAll(filepath.Join(dir, indexDir))
	os.RemoveAll(filepath.Join(dir, manifestsDir))
	os.Mkdir(filepath.Join(dir, manifestsDir), 0o755)
	lookup := func(_ context.Context, c cid.Cid) ([]NameVersion, []byte, error) {
		if !c.Equals(p.cid) {
			return nil, nil, ErrNotFound
		}
		return []NameVersion{{"x", "1"}}, p.bytes, nil
	}
	rep, err := Rebuild(t.Context(), Config{Dir: dir}, lookup)
	if err != nil || len(rep.Packages) != 1 || len(rep.LostTrees) != 0 {
		t.Fatalf("Rebuild = %+v, %v, want x recovered", rep, err)
	}
	s = openStore(t, dir)
	if info, err := s.Lookup("x", "1"); err != nil || info.State != StateComplete {
		t.Errorf("Lookup(x@1) = %+v, %v", info, err)
	}
}
