package share

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ipfs/go-cid"
)

func countFDs(t testing.TB) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(es)
}

// A download of a package of many files holds at most maxOpenPartials
// partial files open (it used to hold one per file until it ended).
func TestPartialFDsBounded(t *testing.T) {
	const nfiles = 3000
	r := rand.New(rand.NewSource(7))
	var files []tfile
	for i := range nfiles {
		if i%100 == 0 {
			files = append(files, dir(fmt.Sprintf("d%02d", i/100), 0o755))
		}
		// Two chunks each: after the first, every file is partial.
		files = append(files, file(fmt.Sprintf("d%02d/f%04d", i/100, i), 0o644, randBytes(r, 2*testChunk)))
	}
	p := makePkg(t, testChunk, files...)
	s := openStore(t, t.TempDir())
	before := countFDs(t)
	d, err := s.BeginPackage("many", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	const slack = 24 // badger's own files, the runtime's
	check := func(when string) {
		if n := countFDs(t) - before; n > maxOpenPartials+slack {
			t.Fatalf("%s: %d more open files than before the download, want at most %d + %d", when, n, maxOpenPartials, slack)
		}
		if n := s.fds.open(); n > maxOpenPartials+8 {
			t.Fatalf("%s: %d partial files open, want at most %d (+ pinned)", when, n, maxOpenPartials)
		}
	}
	check("after BeginPackage")
	var firsts, seconds []cid.Cid
	for i := range p.m.Entries {
		e := &p.m.Entries[i]
		if len(e.Chunks) == 2 {
			c0, _ := cid.Decode(e.Chunks[0])
			c1, _ := cid.Decode(e.Chunks[1])
			firsts, seconds = append(firsts, c0), append(seconds, c1)
		}
	}
	for _, round := range [][]cid.Cid{firsts, seconds} {
		var wg sync.WaitGroup
		var next atomic.Int64
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= len(round) {
						return
					}
					if err := d.PutChunk(round[i], p.chunks[round[i]]); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		for i := 0; i < 20; i++ {
			check("during PutChunk")
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		check("after a round")
	}
	if n := len(d.Missing()); n != 0 {
		t.Fatalf("Missing() = %d chunks after every put", n)
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	verifyClean(t, s)
}

// Many concurrent PutChunks (sharing commit groups) are all durable: after
// Close and Open, every chunk put is present and readable, every other one
// missing.
func TestConcurrentPutChunksDurable(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(11))
	var files []tfile
	for i := range 60 {
		files = append(files, file(fmt.Sprintf("f%02d", i), 0o644, randBytes(r, (1+i%7)*testChunk+i)))
	}
	files = append(files, file("big", 0o755, randBytes(r, 200*testChunk)))
	p := makePkg(t, testChunk, files...)
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.BeginPackage("conc", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	all := sortedCIDs(p)
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	put := all[:len(all)*2/3]
	var wg sync.WaitGroup
	var next atomic.Int64
	var failed atomic.Value
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(put) {
					return
				}
				if err := d.PutChunk(put[i], p.chunks[put[i]]); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	d, err = s.BeginPackage("conc", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	missing := missingSet(d)
	for _, c := range put {
		if missing[c] {
			t.Errorf("chunk %s was put before Close but is missing after Open", c)
		}
		if !s.HasChunk(c) {
			t.Errorf("HasChunk(%s) = false after reopen", c)
		}
		if _, err := s.ReadChunk(c); err != nil {
			t.Errorf("ReadChunk(%s) = %v after reopen", c, err)
		}
	}
	if want := len(all) - len(put); len(missing) > want {
		t.Errorf("Missing() = %d chunks after reopen, want at most %d", len(missing), want)
	}
	putAll(t, d, p, 8, 1)
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	verifyClean(t, s)
	if _, err := s.ReadChunk(all[0]); errors.Is(err, ErrNotFound) {
		t.Errorf("ReadChunk after commit = %v", err)
	}
}
