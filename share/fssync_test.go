package share

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFSSyncerSharesRounds: callers that arrive while a syncfs runs do
// not take that one (it may have started before their writes) but share
// the next, one call for all of them, and get its error.
func TestFSSyncerSharesRounds(t *testing.T) {
	var calls atomic.Int32
	entered := make(chan int32, 4)
	release := make(chan error)
	y := newFSSyncer(t.TempDir(), nil)
	y.do = func(string) error {
		entered <- calls.Add(1)
		return <-release
	}
	first := make(chan error, 1)
	go func() { first <- y.flush() }()
	if n := <-entered; n != 1 {
		t.Fatalf("first round is call %d", n)
	}
	const late = 8
	var wg sync.WaitGroup
	var returned atomic.Int32
	errs := make(chan error, late)
	for range late {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- y.flush()
			returned.Add(1)
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for y.waiting() < late {
		if time.Now().After(deadline) {
			t.Fatalf("%d callers wait for the next round, want %d", y.waiting(), late)
		}
		time.Sleep(time.Millisecond)
	}
	release <- nil // the first round ends
	if err := <-first; err != nil {
		t.Fatalf("first caller: %v", err)
	}
	if n := <-entered; n != 2 {
		t.Fatalf("second round is call %d", n)
	}
	if r := returned.Load(); r != 0 {
		t.Fatalf("%d callers returned with the round that started before them", r)
	}
	boom := errors.New("syncfs: input/output error")
	release <- boom
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, boom) {
			t.Errorf("a caller of the second round got %v, want %v", err, boom)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d syncfs calls for 1 + %d callers, want 2", n, late)
	}
}

// TestConcurrentCommitsShareSyncs: packages committed at once share the
// store's file-system syncs (their chunk groups' and their trees') and
// the syncs of trees/: on a disk whose syncs take 100 ms, 16 one-chunk
// packages committed together cost far fewer than the 16 their trees
// alone took each.
func TestConcurrentCommitsShareSyncs(t *testing.T) {
	s := openStore(t, t.TempDir())
	var calls, dirCalls atomic.Int32
	s.fsync.do = func(path string) error {
		calls.Add(1)
		time.Sleep(100 * time.Millisecond)
		return syncFS(path)
	}
	s.treesSync.do = func(path string) error {
		dirCalls.Add(1)
		time.Sleep(100 * time.Millisecond)
		return syncDirPath(path)
	}
	const n = 16
	var pkgs []*testPkg
	var parts []*Partial
	for k := range n {
		p := makePkg(t, 1<<20, file("data", 0o644, []byte(fmt.Sprintf("package %d", k))))
		d, err := s.BeginPackage(fmt.Sprintf("p%d", k), "1", p.cid, p.bytes)
		if err != nil {
			t.Fatal(err)
		}
		pkgs, parts = append(pkgs, p), append(parts, d)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for k := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := putAllErr(parts[k], pkgs[k], 1, int64(k)); err != nil {
				errs <- err
				return
			}
			errs <- parts[k].Commit()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pkgs {
		checkTree(t, s.TreePath(p.cid), p)
	}
	if c := calls.Load(); c >= n {
		t.Errorf("%d syncfs calls for %d packages committed at once, want fewer than one each", c, n)
	}
	if c := dirCalls.Load(); c < 1 || c >= n {
		t.Errorf("%d syncs of trees/ for %d packages committed at once, want fewer than one each (and one)", c, n)
	}
	t.Logf("%d syncfs calls and %d syncs of trees/ for %d packages", calls.Load(), dirCalls.Load(), n)
}
