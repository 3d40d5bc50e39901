package share

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// crashPkg is the package the resume tests download: several files, some
// sharing chunks, built from a fixed seed so that a child process builds
// the very same one.
func crashPkg(t testing.TB) *testPkg {
	r := rand.New(rand.NewSource(99))
	shared := randBytes(r, 2*testChunk)
	return makePkg(t, testChunk,
		dir("d", 0o755),
		file("d/one", 0o644, randBytes(r, 7*testChunk+9)),
		file("d/two", 0o755, append(bytes.Clone(shared), randBytes(r, 3*testChunk)...)),
		file("three", 0o644, append(randBytes(r, testChunk), shared...)),
		file("four", 0o644, randBytes(r, 12*testChunk)),
	)
}

func sortedCIDs(p *testPkg) []cid.Cid {
	var out []cid.Cid
	for c := range p.chunks {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KeyString() < out[j].KeyString() })
	return out
}

func missingSet(d *Partial) map[cid.Cid]bool {
	m := make(map[cid.Cid]bool)
	for _, r := range d.Missing() {
		m[r.CID] = true
	}
	return m
}

func TestResumeAfterRestart(t *testing.T) {
	t.Parallel()
	p := crashPkg(t)
	all := sortedCIDs(p)
	tests := []struct {
		name string
		// damage runs on the closed store's directory (and may reopen the
		// index) and returns chunks that must be fetched again.
		damage func(t *testing.T, dir string, written []cid.Cid) []cid.Cid
	}{
		{"clean close", func(*testing.T, string, []cid.Cid) []cid.Cid { return nil }},
		{"stray files in tmp", func(t *testing.T, dir string, _ []cid.Cid) []cid.Cid {
			os.WriteFile(filepath.Join(dir, tmpDir, "tree-junk"), []byte("x"), 0o600)
			return nil
		}},
		{"partial file lost after its presence was recorded", func(t *testing.T, dir string, written []cid.Cid) []cid.Cid {
			// What a crash between the move into objects/ and its record
			// looks like, with the object lost too.
			e := p.m.Entries[entryIndex(p, "four")]
			if err := os.Remove(filepath.Join(dir, partialDir, fanout(e.Hash), partialID(e.Hash, e.Size))); err != nil {
				t.Fatal(err)
			}
			return chunksOf(e, written)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s, err := Open(Config{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			d, err := s.BeginPackage("crash", "1", p.cid, p.bytes)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewSource(int64(len(tt.name))))
			var written []cid.Cid
			for _, c := range all {
				if r.Intn(2) == 0 {
					if err := d.PutChunk(c, p.chunks[c]); err != nil {
						t.Fatal(err)
					}
					written = append(written, c)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			refetch := tt.damage(t, dir, written)

			s = openStore(t, dir)
			if entries, _ := os.ReadDir(s.path(tmpDir)); len(entries) != 0 {
				t.Errorf("tmp/ keeps %d entries after Open", len(entries))
			}
			d, err = s.BeginPackage("crash", "1", p.cid, p.bytes)
			if err != nil {
				t.Fatal(err)
			}
			want := make(map[cid.Cid]bool)
			for _, c := range all {
				want[c] = true
			}
			for _, c := range written {
				delete(want, c)
			}
			for _, c := range refetch {
				want[c] = true
			}
			if got := missingSet(d); !sameSet(got, want) {
				t.Errorf("Missing() after reopen = %d chunks, want %d", len(got), len(want))
			}
			putAll(t, d, p, 4, 3)
			if err := d.Commit(); err != nil {
				t.Fatal(err)
			}
			checkTree(t, s.TreePath(p.cid), p)
			verifyClean(t, s)
		})
	}
}

// TestCrashBetweenMoveAndRecord: an object moved into objects/ whose index
// record was never written is adopted, not fetched again.
func TestCrashBetweenMoveAndRecord(t *testing.T) {
	t.Parallel()
	p := crashPkg(t)
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.BeginPackage("crash", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	e := p.m.Entries[entryIndex(p, "four")]
	for _, cs := range e.Chunks {
		c, _ := cid.Decode(cs)
		if err := d.PutChunk(c, p.chunks[c]); err != nil {
			t.Fatal(err)
		}
	}
	// Forget the record; put back the presence records, as if the crash
	// came right after the rename.
	if err := s.db.Update(func(txn *badger.Txn) error {
		for _, cs := range e.Chunks {
			if err := txn.Set(presenceKey(partialID(e.Hash, e.Size), cs), nil); err != nil {
				return err
			}
		}
		return txn.Delete([]byte(prefixObject + e.Hash))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openStore(t, dir)
	d, err = s.BeginPackage("crash", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range d.Missing() {
		if p.m.Entries[r.Entry].Path == "four" {
			t.Fatalf("Missing() lists a chunk of %q, whose object survived the crash", "four")
		}
	}
	putAll(t, d, p, 4, 3)
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	verifyClean(t, s)
}

// TestPartialFileDamaged: chunks recorded present whose bytes later changed
// on disk are caught when the file is finished and fetched again; the bad
// content never becomes an object.
func TestPartialFileDamaged(t *testing.T) {
	t.Parallel()
	p := crashPkg(t)
	s := openStore(t, t.TempDir())
	d, err := s.BeginPackage("crash", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	e := p.m.Entries[entryIndex(p, "four")]
	chunks := make([]cid.Cid, len(e.Chunks))
	for j, cs := range e.Chunks {
		chunks[j], _ = cid.Decode(cs)
	}
	for _, c := range chunks[:len(chunks)-1] {
		if err := d.PutChunk(c, p.chunks[c]); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(s.partialPath(partialID(e.Hash, e.Size)), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("rot"), 2*testChunk+10)
	f.Close()
	last := chunks[len(chunks)-1]
	if err := d.PutChunk(last, p.chunks[last]); err != nil {
		t.Fatal(err)
	}
	var got []cid.Cid
	for _, r := range d.Missing() {
		if p.m.Entries[r.Entry].Path == "four" {
			got = append(got, r.CID)
		}
	}
	if len(got) != 1 || !got[0].Equals(chunks[2]) {
		t.Fatalf("Missing() of %q = %v, want only the damaged chunk %s", "four", got, chunks[2])
	}
	if _, err := os.Stat(s.ObjectPath(e.Hash, EntryVariant(&e))); err == nil {
		t.Fatalf("a damaged file became an object")
	}
	putAll(t, d, p, 4, 3)
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	checkTree(t, s.TreePath(p.cid), p)
	verifyClean(t, s)
}

// TestKillNine kills a process downloading into the store (SIGKILL, no
// Close) and checks that the store opens, keeps every chunk the process
// had been told was stored, and finishes the package.
func TestKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	// Not parallel: a process forked while another test closes a store
	// can briefly hold that store's badger directory lock.
	if dir := os.Getenv("STORK_SHARE_CRASH_CHILD"); dir != "" {
		t.Skip("child")
	}
	p := crashPkg(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillNineChild$", "-test.v")
	cmd.Env = append(os.Environ(), "STORK_SHARE_CRASH_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stored := make(map[cid.Cid]bool)
	sc := bufio.NewScanner(out)
	deadline := time.After(30 * time.Second)
	for len(stored) < len(p.chunks)/2 && sc.Scan() {
		if c, ok := strings.CutPrefix(sc.Text(), "stored "); ok {
			stored[cid.MustParse(c)] = true
		}
		select {
		case <-deadline:
			t.Fatal("child too slow")
		default:
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if len(stored) == 0 {
		t.Fatalf("child stored nothing")
	}

	s := openStore(t, dir)
	d, err := s.BeginPackage("crash", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	missing := missingSet(d)
	for c := range stored {
		if missing[c] {
			t.Errorf("chunk %s was stored before the kill but is missing after", c)
		}
		if got, err := s.ReadChunk(c); err != nil || !bytes.Equal(got, p.chunks[c]) {
			t.Errorf("ReadChunk(%s) after the kill = %v", c, err)
		}
	}
	putAll(t, d, p, 4, 9)
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	checkTree(t, s.TreePath(p.cid), p)
	verifyClean(t, s)
}

// TestKillNineChild is the process TestKillNine kills: it stores chunks
// one by one, printing each after PutChunk returns, until killed.
func TestKillNineChild(t *testing.T) {
	dir := os.Getenv("STORK_SHARE_CRASH_CHILD")
	if dir == "" {
		t.Skip("run by TestKillNine")
	}
	p := crashPkg(t)
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.BeginPackage("crash", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range sortedCIDs(p) {
		if err := d.PutChunk(c, p.chunks[c]); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("stored %s\n", c)
	}
	time.Sleep(time.Minute) // wait to be killed
}

func entryIndex(p *testPkg, path string) int {
	for i, e := range p.m.Entries {
		if e.Path == path {
			return i
		}
	}
	panic("no entry " + path)
}

// chunksOf returns the chunks of e among written.
func chunksOf(e metadata.Entry, written []cid.Cid) []cid.Cid {
	in := make(map[string]bool)
	for _, cs := range e.Chunks {
		in[cs] = true
	}
	var out []cid.Cid
	for _, c := range written {
		if in[c.String()] {
			out = append(out, c)
		}
	}
	return out
}

func sameSet(a, b map[cid.Cid]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
