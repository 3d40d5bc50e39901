package simulations

import (
	"runtime"
	"sync/atomic"
	"time"
)

// The fan-out pipeline: large runs without locality or head-of-line
// blocking (pipeOK) do not wait for each HaveUpdate's fan-out. The
// event loop posts it as a job (the watchers that lack the chunk, copied)
// and goes on; a helper goroutine runs the jobs in order, and the event
// loop runs one itself when the helper is behind and none of the job's
// watchers is in a job still pending. The messages a job decided are sent
// later, in posting order, at the latest just before the run reaches the
// job's time plus the smallest latency (none of them can arrive earlier),
// with their times counted from the job's. Before the event loop touches
// a host's Picker it waits for the jobs that include the host (waitFree),
// so every Picker sees the same calls in the same order as when each
// fan-out ran at once: what changes is only the order of messages due at
// the same instant, and that does not depend on who ran which job, so a
// run is the same with the helper and without it.

// pipeRing: jobs posted and not yet sent, at most.
const pipeRing = 256

// pipeBehind: the event loop runs a job itself while the helper has this
// many or more of its jobs left to run. Too few leave the helper idle,
// too many make the event loop wait on it; the values between run about
// equally fast (docs/transfer-tuning.md).
const pipeBehind = 12

type pipeJob struct {
	h, i int32
	t    float64
	now  time.Time
	ws   []watcher // the watchers that lack chunk i, in watcher order
	hseq uint64    // the helper's job number; 0: the event loop ran it
	out  fanOut
}

type pipe struct {
	minLat     float64
	behind     uint64 // pipeBehind (tests set less)
	ring       [pipeRing]pipeJob
	head, tail uint64   // event loop only: the oldest job not sent, the next slot
	last       []uint64 // event loop only: per host, the latest helper job that includes it
	hposted    uint64   // event loop only: helper jobs posted

	pub    atomic.Uint64 // slots published to the helper (= tail)
	cursor atomic.Uint64 // slots the helper went past
	ran    atomic.Uint64 // helper jobs run (in order)

	helper bool
	parker parker
	exited chan struct{}
}

// pipeOK reports whether s runs its fan-outs through a pipe: a large run
// (fanPar), without locality (whose fan-outs go out by latency class,
// fanout.go) or
// head-of-line blocking (sends depend on the sender's flows then), and
// with latency between hosts.
func (s *sim) pipeOK() bool {
	return s.fanPar && s.swarm && !s.locality && !s.sc.HeadOfLine && min(s.latSite, s.latWAN) > 0
}

func (s *sim) startPipe() {
	p := &pipe{minLat: min(s.latSite, s.latWAN), behind: pipeBehind, last: make([]uint64, s.n), parker: newParker(), exited: make(chan struct{})}
	if s.pipeBehind > 0 {
		p.behind = s.pipeBehind
	}
	s.pipe = p
	if !s.pipeNoHelper && runtime.GOMAXPROCS(0) >= 2 {
		p.helper = true
		go p.loop(s)
	}
}

// stopPipe waits for the helper to finish its jobs and exit.
func (s *sim) stopPipe() {
	p := s.pipe
	if p == nil || !p.helper {
		return
	}
	p.parker.stop()
	<-p.exited
}

func (p *pipe) loop(s *sim) {
	defer close(p.exited)
	var pos uint64
	for p.parker.wait(func() bool { return p.pub.Load() != pos }) {
		for end := p.pub.Load(); pos < end; pos++ {
			j := &p.ring[pos%pipeRing]
			if j.hseq != 0 {
				s.runJob(j)
				p.ran.Store(j.hseq)
			}
			p.cursor.Store(pos + 1)
			p.parker.signal()
		}
	}
}

// runJob updates and asks the job's watchers (all lack the chunk). It
// writes only their Pickers and j.out.
func (s *sim) runJob(j *pipeJob) {
	j.out.reset()
	for k := range j.ws {
		s.fanOne(j.h, &j.ws[k], k, j.i, j.now, &j.out)
	}
}

// waitFree waits until no job still to run includes host h, whose Picker
// the event loop is about to use.
func (s *sim) waitFree(h int32) {
	p := s.pipe
	if p == nil || p.last[h] <= p.ran.Load() {
		return
	}
	p.parker.await(func() bool { return p.last[h] <= p.ran.Load() })
}

// postFan posts h's HaveUpdate fan-out for chunk i to its watchers of
// the class as a job.
func (s *sim) postFan(h, class, i int32) {
	p := s.pipe
	for p.tail-p.head >= pipeRing {
		s.emitOldest()
	}
	if p.helper { // the helper may have yet to pass the slot
		p.parker.await(func() bool { return p.tail-p.cursor.Load() < pipeRing })
	}
	j := &p.ring[p.tail%pipeRing]
	j.h, j.i, j.t, j.now = h, i, s.now, s.at(s.now)
	j.ws = j.ws[:0]
	off, bit := int(i)>>6, uint64(1)<<(i&63)
	ran := p.ran.Load()
	pending := false
	for _, w := range s.hosts[h].watch {
		if w.local != (class == 0) || s.haveM[int(w.q)*s.nw+off]&bit != 0 {
			continue
		}
		j.ws = append(j.ws, w)
		if p.last[w.q] > ran {
			pending = true
		}
	}
	if len(j.ws) == 0 {
		return // nothing to run or send
	}
	if !p.helper || (!pending && p.hposted-ran >= p.behind) {
		j.hseq = 0
		s.runJob(j)
	} else {
		p.hposted++
		j.hseq = p.hposted
		for _, w := range j.ws {
			p.last[w.q] = j.hseq
		}
	}
	p.tail++
	p.pub.Store(p.tail)
	// Wake the helper for a job of the event loop's too: it must pass
	// the slot before the slot is used again (postFan waits for that).
	p.parker.poke()
}

// emitOldest sends what the oldest job decided, once it ran: for each
// watcher, the cancels of its withdrawn requests, then its requests,
// each sent at the job's time.
func (s *sim) emitOldest() {
	p := s.pipe
	j := &p.ring[p.head%pipeRing]
	p.parker.await(func() bool { return j.hseq <= p.ran.Load() })
	wi, ri := 0, 0
	for _, r := range j.out.recs {
		w := &j.ws[r.w]
		for _, x := range j.out.wdr[wi : wi+int(r.nWdr)] {
			q := s.peerOf(x.Peer)
			s.schedule(j.t+s.lat(w.q, q), evCancel, q, w.q, int32(x.Chunk))
		}
		for _, c := range j.out.req[ri : ri+int(r.nReq)] {
			s.schedule(j.t+s.lat(w.q, j.h), evRequest, j.h, w.q, c)
		}
		wi += int(r.nWdr)
		ri += int(r.nReq)
	}
	p.head++
}

// pipeDue reports whether the oldest job's messages must go out before
// the run reaches time next.
func (s *sim) pipeDue(next float64) bool {
	p := s.pipe
	return p != nil && p.head < p.tail && next >= p.ring[p.head%pipeRing].t+p.minLat
}
