package swarm

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestFairShareBetweenPeers: peer a waits with three sessions at once,
// peer b with one; while both wait, each peer gets half of the turns (by
// bytes), not a quarter for b as first come, first served would give.
func TestFairShareBetweenPeers(t *testing.T) {
	f := newFairShare()
	var mu sync.Mutex
	turns := map[PeerID]int{}
	total := 0
	const rounds = 400
	var wg sync.WaitGroup
	for _, p := range []PeerID{"a", "a", "a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if err := f.acquire(context.Background(), p, 1000); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				done := total >= rounds
				if !done {
					turns[p]++
					total++
				}
				mu.Unlock()
				// Hold the turn a moment, as the limiter does, so that the
				// others are all waiting when it passes.
				time.Sleep(100 * time.Microsecond)
				f.release()
				if done {
					return
				}
			}
		}()
	}
	wg.Wait()
	if share := float64(turns["a"]) / rounds; share > 0.55 || share < 0.45 {
		t.Errorf("turns %v: a (3 sessions) got %.2f of them, want about half", turns, share)
	}
}

// TestFairShareCancel: a waiter whose context ends leaves the queue, and
// the turn still passes to the next waiter.
func TestFairShareCancel(t *testing.T) {
	f := newFairShare()
	if err := f.acquire(context.Background(), "a", 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error)
	go func() { gone <- f.acquire(ctx, "b", 1) }()
	next := make(chan error)
	go func() { next <- f.acquire(context.Background(), "c", 1) }()
	for {
		f.mu.Lock()
		n := len(f.waiters)
		f.mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire with its context cancelled = %v, want context.Canceled", err)
	}
	f.release()
	select {
	case err := <-next:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the turn did not pass to the remaining waiter")
	}
	f.release()
	if f.held || len(f.waiters) != 0 {
		t.Errorf("after the last release: held %v, %d waiters; want free", f.held, len(f.waiters))
	}
}
