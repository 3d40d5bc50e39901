package simulations

import (
	"runtime"
	"sync/atomic"
	"time"

	"github.com/storkpm/stork/transfer"
)

// A HaveUpdate's fan-out (haveUpdate) is most of a large simulation's
// work, and nearly all of it is cache misses on the watchers' Pickers. The
// watchers' Pickers are independent of each other, so the fan-out runs in
// two phases: the Pickers are updated and asked (pick), each watcher's
// output kept apart, by this goroutine and, in runs of fanParallelHosts
// hosts or more on two or more CPUs, a second one (fanWorker) taking half
// of the watchers; then the messages are sent in watcher order (replay).
// The Pickers see the same calls in the same order either way, and the
// messages are scheduled in the order a one-by-one loop would, so a run's
// results do not depend on whether or how the work was split.

// fanParallelHosts: runs this large fan out on two goroutines (a
// variable for the tests); fanMin: fewer watchers than this are done by
// the caller alone.
var fanParallelHosts int32 = 1000

const fanMin = 4

// fanOut is one goroutine's output of a fan-out: per watcher (by place
// in sim.hw), the end of its withdrawn requests in wdr and of its asked
// chunks in reqs.
type fanOut struct {
	wdrEnd  []int32
	reqEnd  []int32
	wdr     []transfer.Request
	reqs    []int32
	wdrHead int // replay's read positions
	reqHead int
}

func (fo *fanOut) reset() {
	fo.wdrEnd, fo.reqEnd = fo.wdrEnd[:0], fo.reqEnd[:0]
	fo.wdr, fo.reqs = fo.wdr[:0], fo.reqs[:0]
	fo.wdrHead, fo.reqHead = 0, 0
}

// pick updates and asks the Pickers of watchers hw[lo:hi] of h about its
// chunk i, at now, into fo. It reads the simulation and writes only the
// watchers' Pickers and fo.
func (s *sim) pick(fo *fanOut, h, i int32, lo, hi int, now time.Time) {
	fo.reset()
	watch := s.hosts[h].watch
	for _, k := range s.hw[lo:hi] {
		w := &watch[k]
		p, ref := w.p, w.ref
		p.PeerHaveRef(ref, int(i))
		if p.HasWithdrawn() {
			fo.wdr = p.Withdrawn(fo.wdr)
		}
		fo.wdrEnd = append(fo.wdrEnd, int32(len(fo.wdr)))
		for range s.nChunks + 1 {
			c, ok := p.NextForPeerRef(ref, now)
			if !ok {
				break
			}
			if s.locality && !w.local && s.localHas(w.q, c) {
				break // a same-site peer will serve it
			}
			p.RequestedRef(c, ref, now)
			fo.reqs = append(fo.reqs, int32(c))
		}
		fo.reqEnd = append(fo.reqEnd, int32(len(fo.reqs)))
	}
}

// replay sends what pick decided for watchers hw[lo:hi] (fo's output):
// for each watcher in order, cancels for the requests its Picker withdrew,
// then its requests to h.
func (s *sim) replay(fo *fanOut, h int32, lo, hi int) {
	for j := range hi - lo {
		w := &s.hosts[h].watch[s.hw[lo+j]]
		q, wk := w.q, int(w.k)
		for ; fo.wdrHead < int(fo.wdrEnd[j]); fo.wdrHead++ {
			r := fo.wdr[fo.wdrHead]
			to := s.peerOf(r.Peer)
			s.sendTo(q, to, evCancel, to, q, int32(r.Chunk))
		}
		for ; fo.reqHead < int(fo.reqEnd[j]); fo.reqHead++ {
			s.sendOn(q, wk, h, evRequest, h, q, fo.reqs[fo.reqHead])
		}
	}
}

// fanWorker is the second goroutine of a parallel fan-out. It spins
// between jobs (they come microseconds apart) and parks after a while
// without one.
type fanWorker struct {
	s      *sim
	job    atomic.Uint64 // number of the job posted
	done   atomic.Uint64 // number of the job finished
	parked atomic.Bool
	wake   chan struct{}
	exited chan struct{}
	quit   bool

	// the job: pick(&out, h, i, lo, hi, now)
	h, i   int32
	lo, hi int
	now    time.Time
	out    fanOut
}

// fanSpins: empty polls before the worker parks.
const fanSpins = 1 << 16

func startFanWorker(s *sim) *fanWorker {
	w := &fanWorker{s: s, wake: make(chan struct{}, 1), exited: make(chan struct{})}
	go w.loop()
	return w
}

func (w *fanWorker) loop() {
	defer close(w.exited)
	var last uint64
	for {
		for spins := 0; w.job.Load() == last; spins++ {
			if spins >= fanSpins {
				w.parked.Store(true)
				if w.job.Load() == last {
					<-w.wake
				}
				w.parked.Store(false)
				spins = 0
			}
		}
		last = w.job.Load()
		if w.quit {
			w.done.Store(last)
			return
		}
		w.s.pick(&w.out, w.h, w.i, w.lo, w.hi, w.now)
		w.done.Store(last)
	}
}

// post hands the worker a job; wait returns once it is done.
func (w *fanWorker) post() uint64 {
	n := w.job.Load() + 1
	w.job.Store(n)
	if w.parked.Load() {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return n
}

func (w *fanWorker) wait(n uint64) {
	for spins := 0; w.done.Load() != n; spins++ {
		if spins&1023 == 1023 {
			runtime.Gosched()
		}
	}
}

// stop ends the worker and waits for it to exit.
func (w *fanWorker) stop() {
	w.quit = true
	w.post()
	<-w.exited
}
