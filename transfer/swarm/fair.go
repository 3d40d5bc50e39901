package swarm

import (
	"context"
	"sync"
)

// fairShare hands out turns at a shared resource (the upload rate limiter)
// to the sessions waiting for it, fairly between peers by bytes: start-time
// fair queueing. A request of n bytes from peer p is tagged
// start = max(V, F[p]) and F[p] becomes start+n; the waiter with the
// smallest start tag goes next (ties by arrival) and V becomes its tag. So
// while several peers wait, each gets an equal share of the bytes however
// many sessions (streams, packages) it has and however deep their queues,
// and a peer that was idle banks no credit: its next tag starts at V.
// One turn is held at a time; acquire blocks until it is the caller's.
type fairShare struct {
	mu      sync.Mutex
	held    bool
	vtime   uint64
	finish  map[PeerID]uint64
	pruneAt int           // prune finish when it grows to this size
	waiters []*fairWaiter // in arrival order
}

type fairWaiter struct {
	peer  PeerID
	start uint64
	turn  chan struct{} // closed when the turn is this waiter's
}

func newFairShare() *fairShare { return &fairShare{finish: make(map[PeerID]uint64), pruneAt: 64} }

// acquire waits for the turn of n bytes for peer p. After a nil return the
// caller holds the turn and must release it.
func (f *fairShare) acquire(ctx context.Context, p PeerID, n int) error {
	f.mu.Lock()
	start := max(f.vtime, f.finish[p])
	f.finish[p] = start + uint64(n)
	if !f.held {
		f.held = true
		f.vtime = start
		f.mu.Unlock()
		return nil
	}
	w := &fairWaiter{peer: p, start: start, turn: make(chan struct{})}
	f.waiters = append(f.waiters, w)
	f.mu.Unlock()
	select {
	case <-w.turn:
		return nil
	case <-ctx.Done():
	}
	f.mu.Lock()
	for k, x := range f.waiters {
		if x == w {
			f.waiters = append(f.waiters[:k], f.waiters[k+1:]...)
			f.mu.Unlock()
			return ctx.Err()
		}
	}
	f.mu.Unlock()
	// The turn came as ctx ended: pass it on.
	f.release()
	return ctx.Err()
}

// release passes the turn to the waiter with the smallest start tag.
func (f *fairShare) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.prune()
	if len(f.waiters) == 0 {
		f.held = false
		return
	}
	next := 0
	for k, w := range f.waiters {
		if w.start < f.waiters[next].start {
			next = k
		}
	}
	w := f.waiters[next]
	f.waiters = append(f.waiters[:next], f.waiters[next+1:]...)
	f.vtime = w.start
	close(w.turn)
}

// prune forgets the peers whose finish tag is not ahead of the virtual
// time (their next tag starts at V anyway), whenever the map has doubled
// since the last time, so that peers gone leave nothing behind. Called
// with f.mu held.
func (f *fairShare) prune() {
	if len(f.finish) < f.pruneAt {
		return
	}
	for p, fin := range f.finish {
		if fin <= f.vtime {
			delete(f.finish, p)
		}
	}
	f.pruneAt = max(64, 2*len(f.finish))
}
