package simulations

import (
	"runtime"
	"sync/atomic"
	"time"

	"github.com/storkpm/stork/transfer/policy"
)

// The fan-out of a HaveUpdate (haveUpdate) is most of a large run's work,
// and nearly all of it is cache misses in the watchers' Pickers. Each
// watcher's Picker is its own, and what it decides (requests withdrawn,
// chunks to ask) changes nothing another watcher reads, so the watchers
// of one HaveUpdate can be updated and asked in any order, on any
// goroutine, as long as their messages are sent afterwards in watcher
// order: the run stays the same, byte for byte.
//
// Large runs (fanParallelHosts hosts and more, with two or more Ps) split
// each large fan-out in two halves: one on the event loop, one on a
// helper goroutine that spins for work between fan-outs and parks when
// there is none for a while.

// fanParallelHosts: runs with at least this many hosts use the helper
// (sim.fanPar; tests set it to compare both ways on a small run).
const fanParallelHosts = 1000

// fanParallelMin: a fan-out over fewer watchers stays on the event loop.
const fanParallelMin = 16

// fanOut is what one goroutine's part of a fan-out decided, in watcher
// order: for each watcher it updated, the requests its Picker withdrew
// and the chunks it asks of the HaveUpdate's sender.
type fanOut struct {
	recs []fanRec
	wdr  []policy.Request
	req  []int32
}

type fanRec struct {
	w          int32 // index in the sender's watchers
	nWdr, nReq int32
}

func (o *fanOut) reset() {
	o.recs, o.wdr, o.req = o.recs[:0], o.wdr[:0], o.req[:0]
}

// fanRange updates and asks the watchers [lo, hi) of h about chunk i
// (class 0: same site, 1: the others) that lack it. It reads the sim and
// writes only those watchers' Pickers and o.
func (s *sim) fanRange(h, class, i int32, lo, hi int, now time.Time, o *fanOut) {
	watch := s.hosts[h].watch
	off, bit := int(i)>>6, uint64(1)<<(i&63)
	for k := lo; k < hi; k++ {
		w := &watch[k]
		if w.local != (class == 0) || s.haveM[int(w.q)*s.nw+off]&bit != 0 {
			continue
		}
		s.fanOne(h, w, k, i, now, o)
	}
}

// fanOne updates and asks watcher w (number k, for o's records) of h
// about chunk i. It writes only w's Picker and o.
func (s *sim) fanOne(h int32, w *watcher, k int, i int32, now time.Time, o *fanOut) {
	w.p.PeerHaveRef(w.ref, int(i))
	nw0, nr0 := len(o.wdr), len(o.req)
	if w.p.HasWithdrawn() {
		o.wdr = w.p.Withdrawn(o.wdr)
	}
	o.req = s.askRef(w.q, h, w.p, w.ref, now, o.req)
	o.recs = append(o.recs, fanRec{w: int32(k), nWdr: int32(len(o.wdr) - nw0), nReq: int32(len(o.req) - nr0)})
}

// emit sends what a fan-out of h decided: for each watcher, the cancels
// of its withdrawn requests, then its requests to h.
func (s *sim) emit(h int32, o *fanOut) {
	watch := s.hosts[h].watch
	wi, ri := 0, 0
	for _, r := range o.recs {
		w := &watch[r.w]
		for _, x := range o.wdr[wi : wi+int(r.nWdr)] {
			q := s.peerOf(x.Peer)
			s.sendTo(w.q, q, evCancel, q, w.q, int32(x.Chunk))
		}
		for _, c := range o.req[ri : ri+int(r.nReq)] {
			s.sendOn(w.q, int(w.k), h, evRequest, h, w.q, c)
		}
		wi += int(r.nWdr)
		ri += int(r.nReq)
	}
}

// fanHelper runs the second half of large fan-outs. The event loop posts
// a job (the fields, then seq) and runs the first half; whichever of the
// two is free first claims the second half (claim: the last job claimed),
// so the event loop never waits on a helper that is not running. The
// helper stores done = seq when it ran the job.
type fanHelper struct {
	seq    atomic.Uint64
	claim  atomic.Uint64
	done   atomic.Uint64
	parker parker

	// the job, written by the event loop before seq
	h, class, i int32
	lo, hi      int
	now         time.Time
	out         fanOut
}

// parker is how a helper goroutine waits for work between jobs (wait:
// it polls helperSpins times, then parks until poked), and how the event
// loop waits for the helper to finish a job (await: it polls awaitSpins
// times, then sleeps until the helper signals a job done). Neither side
// polls for long: on a machine whose cores are busy with other work a
// poller takes the core the goroutine it waits for needs.
type parker struct {
	parked atomic.Bool
	quit   atomic.Bool
	wake   chan struct{}

	waiting atomic.Bool   // the event loop sleeps in await
	done    chan struct{} // the helper's signal to it
}

func newParker() parker {
	return parker{wake: make(chan struct{}, 1), done: make(chan struct{}, 1)}
}

// helperSpins: polls before a helper parks (about 3 ns each: 100 µs; the
// helper of a split fan-out, fanAll, that parks between fan-outs comes
// too late for the next one, which the event loop then runs whole).
const helperSpins = 1 << 15

// awaitSpins: polls before the event loop sleeps waiting for the helper
// (about 200 µs: it waits on the run's critical path, so it sleeps only
// when the helper is off its core, not while the helper runs a job).
const awaitSpins = 1 << 16

// wait returns true once ready() holds, false if stop was called while
// there was no work.
func (k *parker) wait(ready func() bool) bool {
	for spins := 0; !ready(); {
		if k.quit.Load() {
			return false
		}
		if spins++; spins < helperSpins {
			continue
		}
		k.parked.Store(true)
		if !ready() && !k.quit.Load() {
			<-k.wake
		}
		k.parked.Store(false)
		spins = 0
	}
	return true
}

// await returns once ready() holds, which the helper makes so by a job
// it runs (and then calls signal).
func (k *parker) await(ready func() bool) {
	for spins := 0; !ready(); {
		if spins++; spins < awaitSpins {
			continue
		}
		k.waiting.Store(true)
		if !ready() {
			<-k.done
		}
		k.waiting.Store(false)
		spins = 0
	}
}

// signal wakes the event loop if it sleeps in await (the helper calls it
// after each job it ran, once the job's state is stored). A signal the
// event loop does not take makes its next await check ready() once more.
func (k *parker) signal() {
	if k.waiting.Load() {
		select {
		case k.done <- struct{}{}:
		default:
		}
	}
}

// poke wakes the helper if it parked (call it after publishing work).
func (k *parker) poke() {
	if k.parked.Load() {
		select {
		case k.wake <- struct{}{}:
		default:
		}
	}
}

// stop makes wait return false once there is no work left.
func (k *parker) stop() {
	k.quit.Store(true)
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

func (s *sim) startHelper() {
	if !s.fanPar || runtime.GOMAXPROCS(0) < 2 {
		return
	}
	f := &fanHelper{parker: newParker()}
	s.helper = f
	go f.loop(s)
}

func (f *fanHelper) loop(s *sim) {
	var last uint64
	for f.parker.wait(func() bool { return f.seq.Load() != last }) {
		last = f.seq.Load()
		if f.claim.CompareAndSwap(last-1, last) {
			f.run(s)
			f.done.Store(last)
			f.parker.signal()
		}
	}
}

func (f *fanHelper) run(s *sim) {
	f.out.reset()
	s.fanRange(f.h, f.class, f.i, f.lo, f.hi, f.now, &f.out)
}

func (s *sim) stopHelper() {
	if f := s.helper; f != nil {
		f.parker.stop()
		s.helper = nil
	}
}

// fanAll runs the fan-out of h's HaveUpdate for chunk i, on two goroutines
// when it is large, and sends what it decided.
func (s *sim) fanAll(h, class, i int32) {
	n := len(s.hosts[h].watch)
	now := s.at(s.now)
	f := s.helper
	s.fan.reset()
	if f == nil || n < fanParallelMin {
		s.fanRange(h, class, i, 0, n, now, &s.fan)
		s.emit(h, &s.fan)
		return
	}
	mid := n / 2
	f.h, f.class, f.i, f.lo, f.hi, f.now = h, class, i, mid, n, now
	seq := f.seq.Add(1)
	f.parker.poke()
	s.fanRange(h, class, i, 0, mid, now, &s.fan)
	if f.claim.CompareAndSwap(seq-1, seq) {
		f.run(s) // the helper has not started it: do it here
	} else {
		f.parker.await(func() bool { return f.done.Load() == seq })
	}
	s.emit(h, &s.fan)
	s.emit(h, &f.out)
}
