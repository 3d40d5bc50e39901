package simulations

import (
	"math"
	"slices"

	"github.com/storkpm/stork/transfer/policy"
)

// This file is the simulator's clock and network: a heap of timed
// messages, and flows whose rates follow max-min fair sharing at each
// sender. See doc.go for the model.

// event is a timed message. kind says what it is; a, b, c its arguments
// (usually the receiving host, the sending host, a chunk).
type event struct {
	t    float64
	seq  uint64
	kind uint8
	pkg  uint16 // the package whose run scheduled it (engine.tag)
	a    int32
	b    int32
	c    int32
}

type eventHeap []event

func (h eventHeap) less(i, j int) bool {
	if h[i].t != h[j].t {
		return h[i].t < h[j].t
	}
	return h[i].seq < h[j].seq
}

func (h *eventHeap) push(e event) {
	*h = append(*h, e)
	q := *h
	k := len(q) - 1
	for k > 0 {
		p := (k - 1) / 2
		if !q.less(k, p) {
			break
		}
		q[k], q[p] = q[p], q[k]
		k = p
	}
}

func (h *eventHeap) pop() event {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q = q[:last]
	k := 0
	for {
		l := 2*k + 1
		if l >= len(q) {
			break
		}
		c := l
		if r := l + 1; r < len(q) && q.less(r, l) {
			c = r
		}
		if !q.less(c, k) {
			break
		}
		q[k], q[c] = q[c], q[k]
		k = c
	}
	*h = q
	return top
}

// eventQueue is the engine's messages in (t, seq) order: a heap, and
// beside it a few lanes, each a FIFO of messages sent with one delay
// (a tick's, a latency's). Most messages (ticks above all) are sent with
// one of a few delays, at a clock that never goes back, so each lane's
// messages come in the order of their times as well as of their seq, and
// a lane is popped at its head in O(1) where the heap takes O(log n). A
// message whose delay matches no lane, or whose time is before the last
// of its lane's (a pipeline's messages sent at an earlier job time), goes
// to the heap. seq orders messages of one time: pop returns the same
// messages in the same order whatever the lane or heap that held them.
type eventQueue struct {
	heap  eventHeap
	lanes []eventLane
	n     int // messages held
}

// maxEventLanes: messages of delays beyond these lanes' go to the heap.
const maxEventLanes = 6

type eventLane struct {
	d    float64 // the delay: t - now at push
	q    []event // from head on
	head int
}

// laneTol: a message whose delay is within laneTol seconds of a lane's
// goes to that lane (t - now rounds differently from the delay added).
const laneTol = 1e-9

func (q *eventQueue) push(e event, now float64) {
	q.n++
	d := e.t - now
	for k := range q.lanes {
		l := &q.lanes[k]
		if math.Abs(d-l.d) > laneTol {
			continue
		}
		if len(l.q) > l.head && e.t < l.q[len(l.q)-1].t {
			break // out of the lane's order
		}
		if l.head == len(l.q) {
			l.q, l.head = l.q[:0], 0
		} else if l.head >= 1024 && l.head >= len(l.q)/2 {
			m := copy(l.q, l.q[l.head:])
			l.q, l.head = l.q[:m], 0
		}
		l.q = append(l.q, e)
		return
	}
	q.heap.push(e)
}

// addLane gives the messages sent with delay d a lane, unless one has
// it or maxEventLanes are made.
func (q *eventQueue) addLane(d float64) {
	for k := range q.lanes {
		if math.Abs(d-q.lanes[k].d) <= laneTol {
			return
		}
	}
	if len(q.lanes) < maxEventLanes && d >= 0 {
		q.lanes = append(q.lanes, eventLane{d: d})
	}
}

func (q *eventQueue) empty() bool { return q.n == 0 }

// first returns where the next message is: -1 the heap, else a lane
// (q not empty).
func (q *eventQueue) first() int {
	src := -1
	var best *event
	if len(q.heap) > 0 {
		best = &q.heap[0]
	}
	for k := range q.lanes {
		l := &q.lanes[k]
		if l.head == len(l.q) {
			continue
		}
		if h := &l.q[l.head]; best == nil || h.t < best.t || (h.t == best.t && h.seq < best.seq) {
			best, src = h, k
		}
	}
	return src
}

// nextT returns the next message's time (+Inf: none).
func (q *eventQueue) nextT() float64 {
	if q.n == 0 {
		return math.Inf(1)
	}
	if src := q.first(); src >= 0 {
		l := &q.lanes[src]
		return l.q[l.head].t
	}
	return q.heap[0].t
}

// pop removes and returns the next message (q not empty).
func (q *eventQueue) pop() event {
	q.n--
	if src := q.first(); src >= 0 {
		l := &q.lanes[src]
		e := l.q[l.head]
		l.head++
		return e
	}
	return q.heap.pop()
}

// each calls f with every message held, in no particular order.
func (q *eventQueue) each(f func(event)) {
	for _, e := range q.heap {
		f(e)
	}
	for k := range q.lanes {
		l := &q.lanes[k]
		for _, e := range l.q[l.head:] {
			f(e)
		}
	}
}

// flow is one transfer in progress: a chunk from a host (or the origin)
// to a host, or a whole package from the origin in the baselines.
type flow struct {
	// What a cap change reads first, together.
	srv   int32   // sending server
	dst   int32   // receiving host
	su    int32   // site uplink crossed, -1 none
	sd    int32   // site downlink crossed, -1 none
	cap   float64 // rate cap: the receiver's and the site links' shares
	inA   bool
	live  bool
	pkg   uint16 // the package whose run started it (engine.tag)
	chunk int32  // chunk index; -1 for a whole-package baseline flow
	vm    int32  // baseline: VM index on dst
	inPos int32  // position in the receiver's list of incoming flows
	size  float64
	// In the server's shared set (inA): finishes when the server's
	// virtual clock reaches finV. In its capped set: rem bytes left at
	// lastT (finishing at lastT + rem/cap, its key in the server's bFin).
	finV  float64
	rem   float64
	lastT float64
	// w: its weight at its server, 1 ÷ the server's live flows to the
	// same receiver at a server shared per peer (server.perPeer), else 1.
	w     float64
	suPos int32
	sdPos int32
	// Its part in the shared CPU, if any, is in engine.cpuF (cpu.go),
	// apart: a flow stays small without it.
}

// server is a sender's upload link. Its flows share capacity max-min
// fairly given their caps: flows capped below the fair level (set B) get
// their cap; the rest (set A) share what is left in proportion to their
// weights, at rate lambda per unit of weight. Set A progresses by one
// virtual clock V (bytes a flow of weight 1 in A has received since the
// clock began), so a change of lambda costs O(1) for the whole set, and
// any add, remove or cap change O(log n). A host's server is shared per
// peer (perPeer), as the daemon's fairShare hands out its upload turns
// fairly between peers by bytes however many streams each has: each of
// its flows weighs 1 ÷ its flows to the same receiver, so a receiver's
// flows together take one share. The origin's and the start-up servers'
// flows weigh 1 each.
type server struct {
	capacity float64
	lambda   float64
	v        float64 // virtual clock
	vT       float64 // time of v
	perPeer  bool    // shared per receiver, not per flow
	sumWA    float64 // sum of weights in A
	sumB     float64 // sum of caps in B
	sent     float64 // bytes sent in all (integral of the total rate)
	nA, nB   int32
	aFin     fheap // A by finV
	aCap     fheap // A by cap (min)
	bFin     fheap // B by finishing time
	bCap     fheap // B by -cap (max cap first)
	hpos     int32 // position in the engine's server heap
	next     float64
	// pq: the turns of a server sent in pieces (piece.go); nil: fluid.
	pq *pieceState
}

// fheap is a min-heap of flow ids by key, with positions kept in the
// engine's hpos (slot 0 or 1 of the flow's pair).
type fheap struct {
	id   []int32
	key  []float64
	slot uint8
}

func (e *engine) fpos(id int32, slot uint8) *int32 {
	return &e.hpos[2*int(id)+int(slot)]
}

func (h *fheap) swap(e *engine, i, j int) {
	h.id[i], h.id[j] = h.id[j], h.id[i]
	h.key[i], h.key[j] = h.key[j], h.key[i]
	*e.fpos(h.id[i], h.slot) = int32(i)
	*e.fpos(h.id[j], h.slot) = int32(j)
}

func (h *fheap) less(i, j int) bool {
	if h.key[i] != h.key[j] {
		return h.key[i] < h.key[j]
	}
	return h.id[i] < h.id[j]
}

func (h *fheap) up(e *engine, k int) {
	for k > 0 {
		p := (k - 1) / 2
		if !h.less(k, p) {
			break
		}
		h.swap(e, k, p)
		k = p
	}
}

func (h *fheap) down(e *engine, k int) {
	n := len(h.id)
	for {
		l := 2*k + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && h.less(r, l) {
			c = r
		}
		if !h.less(c, k) {
			return
		}
		h.swap(e, k, c)
		k = c
	}
}

func (h *fheap) push(e *engine, id int32, key float64) {
	h.id = append(h.id, id)
	h.key = append(h.key, key)
	k := len(h.id) - 1
	*e.fpos(id, h.slot) = int32(k)
	h.up(e, k)
}

func (h *fheap) remove(e *engine, id int32) {
	k := int(*e.fpos(id, h.slot))
	last := len(h.id) - 1
	if k != last {
		h.swap(e, k, last)
	}
	h.id = h.id[:last]
	h.key = h.key[:last]
	if k < last {
		h.down(e, k)
		h.up(e, k)
	}
}

func (h *fheap) update(e *engine, id int32, key float64) {
	k := int(*e.fpos(id, h.slot))
	h.key[k] = key
	h.down(e, k)
	h.up(e, k)
}

func (h *fheap) min() (int32, float64) { return h.id[0], h.key[0] }

// link is a site's uplink or downlink. Its flows share it max-min fairly
// given what holds each of them elsewhere (its receiver's share, the
// other site link it crosses, its sender's fair level): the link's share
// is its water level, the cap it sets on each of its flows, so that a flow
// held below the level elsewhere leaves the rest of the link to the
// others, as TCP flows through one bottleneck queue do (an equal split
// leaves part of a thin downlink idle whenever the flows into a site are
// held lower by other sites' uplinks). The level is computed again
// (relevel), and every flow of the link re-capped, only when the flow
// count drifts by more than linkDrift from the count of the last
// computation; in between, a new flow gets at most an equal share of the
// link and old ones keep their caps.
type link struct {
	capacity float64
	share    float64 // the water level (+Inf: unlimited)
	flows    []int32
	nRef     int
}

// equal is an equal share of the link among its flows (+Inf: unlimited).
func (l *link) equal() float64 {
	if l.capacity <= 0 {
		return math.Inf(1)
	}
	return l.capacity / float64(max(len(l.flows), 1))
}

// relevel sets link lid's share to its water level: the level L at which
// its flows, each taking the smaller of L and its bound elsewhere, fill
// the link. Where they cannot fill it, the largest bound plus an equal
// part of what is left over: the flows held elsewhere may grow (another
// link's level rises before this one is levelled again), and each takes
// only its part.
func (e *engine) relevel(lid int32) {
	l := &e.links[lid]
	if l.capacity <= 0 {
		l.share = math.Inf(1)
		return
	}
	o := e.bounds[:0]
	for _, id := range l.flows {
		f := &e.flows[id]
		cf := e.onCPU(id)
		c := float64(jobCap) // a start-up job: one core
		if cf == nil || !cf.job {
			c = e.recvShare(f.dst)
		}
		if f.su >= 0 && f.su != lid {
			c = min(c, e.links[f.su].share)
		}
		if f.sd >= 0 && f.sd != lid {
			c = min(c, e.links[f.sd].share)
		}
		if cf != nil && e.cpu.link != lid {
			c = min(c, e.links[e.cpu.link].share/cf.w)
		}
		if e.parked(id) {
			c = 0 // waiting for its sender's turn (piece.go)
		}
		if f.inA {
			// At its sender's fair level (a flow capped below it is held
			// by its receiver or a link, counted above).
			c = min(c, e.srvs[f.srv].lambda*f.w)
		}
		if cf != nil && e.cpu.link == lid {
			c *= cf.w // the CPU link levels CPU-seconds per second
		}
		o = append(o, c)
	}
	slices.Sort(o)
	e.bounds = o
	left := l.capacity
	for k, c := range o {
		if fair := left / float64(len(o)-k); c >= fair {
			l.share = fair
			return
		}
		left -= c
	}
	if len(o) == 0 {
		l.share = l.capacity
		return
	}
	l.share = o[len(o)-1] + left/float64(len(o))
}

const linkDrift = 0.1

// engine owns the clock, the message heap, the servers and the flows.
type engine struct {
	now    float64
	seq    uint64
	events eventQueue
	srvs   []server
	sheap  []int32 // servers by next completion
	flows  []flow
	// hpos: flow id's positions in its server's two heaps, at 2*id and
	// 2*id+1 (apart from the flows: every heap move writes them).
	hpos  []int32
	free  []int32
	links []link
	// bounds: relevel's scratch
	bounds []float64
	nEv    int64
	// recvShare returns a receiving host's per-flow download share.
	recvShare func(dst int32) float64
	// rin: each receiving host's incoming flows, of every package.
	rin []recvList
	// tag: the package of the run now handling an event (0 in a run of
	// one package); the events it schedules and the flows it starts carry
	// it, so that the runs of a workload's packages share one clock,
	// the servers, the site links and the receivers (workload.go).
	tag uint16
	// pend (a workload's engine, else nil): each package's events queued
	// and flows live; a finished package with none left can change no
	// more and is released (workloadRun.release).
	pend []int32
	// ids: the hosts' peer IDs, shared by a workload's packages.
	ids []policy.PeerID
	// resp: each host's response times, over all its downloads (a
	// workload's packages), as the daemon's Swarm measures them for the
	// end game's delay (sim.endgameDelay).
	resp []policy.ResponseTimes
	// cpu: the cores the hosts share (cpu.go); off, every host has CPU
	// enough. cpuF: each flow's part in it, by flow id (cpu on only).
	cpu  cpuState
	cpuF []cpuFlow
	// pieceOn: some server sends in pieces (piece.go); pc: each flow's
	// part in its server's turns, by flow id (pieceOn only).
	pieceOn bool
	pc      []pieceFlow
	// afterEvent (tests): called after every event of the run.
	afterEvent func()
}

// recvList is a receiving host's incoming flows.
type recvList struct {
	in []int32
	// cls: what each flow of in is, beside it, so that the walks for one
	// package's flows of some kind (sim.progress at every tick, a
	// cancelled request's flow) read this list, not every flow: the
	// flow's package << clsShift | clsParts, clsOrigin, clsPull.
	cls []uint32
	// from: for a flow in parts (clsParts), the receiver's Picker's
	// handle on its sender, set when the sender is a peer the Picker
	// knows (at the flow's start, or when the receiver comes to know it:
	// sim.knowPeer), zero otherwise: progress tells the Picker by handle,
	// not by peer ID (a map lookup at every tick of every download).
	from []policy.PeerRef
	ref  int // len(in) when their caps were last refreshed (sim.recap)
}

// A receiving host's flow classes (recvList.cls).
const (
	clsParts  = 1 << iota // a chunk from a peer sent in parts (longer than policy.PartSize)
	clsOrigin             // from the origin
	clsPull               // a pull-through answer from a fetcher
	clsShift  = iota
)

func (e *engine) schedule(t float64, kind uint8, a, b, c int32) {
	e.seq++
	e.events.push(event{t: t, seq: e.seq, kind: kind, pkg: e.tag, a: a, b: b, c: c}, e.now)
	if e.pend != nil {
		e.pend[e.tag]++
	}
}

// server heap (by next completion time, then id).

func (e *engine) sless(i, j int) bool {
	a, b := e.sheap[i], e.sheap[j]
	if e.srvs[a].next != e.srvs[b].next {
		return e.srvs[a].next < e.srvs[b].next
	}
	return a < b
}

func (e *engine) sswap(i, j int) {
	e.sheap[i], e.sheap[j] = e.sheap[j], e.sheap[i]
	e.srvs[e.sheap[i]].hpos = int32(i)
	e.srvs[e.sheap[j]].hpos = int32(j)
}

func (e *engine) sfix(k int) {
	for k > 0 {
		p := (k - 1) / 2
		if !e.sless(k, p) {
			break
		}
		e.sswap(k, p)
		k = p
	}
	n := len(e.sheap)
	for {
		l := 2*k + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && e.sless(r, l) {
			c = r
		}
		if !e.sless(c, k) {
			return
		}
		e.sswap(k, c)
		k = c
	}
}

func (e *engine) addServer(capacity float64) int32 {
	id := int32(len(e.srvs))
	e.srvs = append(e.srvs, server{
		capacity: capacity, next: math.Inf(1), hpos: int32(len(e.sheap)),
		aFin: fheap{slot: 0}, aCap: fheap{slot: 1}, bFin: fheap{slot: 0}, bCap: fheap{slot: 1},
	})
	e.sheap = append(e.sheap, id)
	return id
}

// advance brings server s's virtual clock and byte count to now.
func (e *engine) advance(s *server) {
	dt := e.now - s.vT
	if dt <= 0 {
		return
	}
	rate := s.sumB
	if s.nA > 0 {
		s.v += s.lambda * dt
		rate += s.lambda * s.sumWA
	}
	s.sent += rate * dt
	s.vT = e.now
}

// remaining returns flow f's bytes left (its server advanced).
func (e *engine) remaining(f *flow) float64 {
	s := &e.srvs[f.srv]
	if f.inA {
		return max(f.finV-s.v, 0) * f.w
	}
	return max(f.rem-f.cap*(e.now-f.lastT), 0)
}

func (e *engine) insertA(s *server, id int32, rem float64) {
	f := &e.flows[id]
	f.inA = true
	f.finV = s.v + rem/f.w
	s.nA++
	s.sumWA += f.w
	s.aFin.push(e, id, f.finV)
	s.aCap.push(e, id, f.cap/f.w)
}

func (e *engine) insertB(s *server, id int32, rem float64) {
	f := &e.flows[id]
	f.inA = false
	f.rem, f.lastT = rem, e.now
	s.nB++
	s.sumB += f.cap
	fin := e.now + rem/f.cap
	if f.cap == 0 {
		fin = math.Inf(1) // parked (piece.go): never, whatever rem
	}
	s.bFin.push(e, id, fin)
	s.bCap.push(e, id, -f.cap/f.w)
}

// detach takes flow id out of its server's sets and returns its bytes
// left.
func (e *engine) detach(s *server, id int32) float64 {
	rem := e.remaining(&e.flows[id])
	f := &e.flows[id]
	if f.inA {
		s.aFin.remove(e, id)
		s.aCap.remove(e, id)
		s.nA--
		s.sumWA -= f.w
		if s.nA == 0 {
			s.sumWA = 0
		}
	} else {
		s.bFin.remove(e, id)
		s.bCap.remove(e, id)
		s.nB--
		s.sumB -= f.cap
		if s.nB == 0 {
			s.sumB = 0
		}
	}
	return rem
}

// rebalance restores the water-filling invariant of s: every B cap below
// its weight times lambda, every A cap at or above it, lambda =
// (capacity-sumB)/sumWA.
func (e *engine) rebalance(s *server) {
	eps := 1e-9 * s.capacity
	for range 1 << 20 {
		free := s.capacity - s.sumB
		if s.nA > 0 {
			id, c := s.aCap.min()
			if f := &e.flows[id]; c*s.sumWA < free-eps && f.cap/f.w != c {
				s.aCap.update(e, id, f.cap/f.w) // stale key
				continue
			}
			if c*s.sumWA < free-eps {
				rem := e.detach(s, id)
				e.insertB(s, id, rem)
				continue
			}
		}
		if s.nB > 0 {
			id, nc := s.bCap.min()
			if c := -nc; c*s.sumWA >= free+eps {
				rem := e.detach(s, id)
				e.insertA(s, id, rem)
				continue
			}
		}
		break
	}
	if s.nA > 0 {
		s.lambda = max(s.capacity-s.sumB, 0) / s.sumWA
	} else {
		s.lambda = 0
	}
}

// reschedule recomputes s's next completion and its place in the heap.
func (e *engine) reschedule(sid int32) {
	s := &e.srvs[sid]
	next := math.Inf(1)
	if s.nA > 0 && s.lambda > 0 {
		_, fv := s.aFin.min()
		next = s.vT + max(fv-s.v, 0)/s.lambda
	}
	if s.nB > 0 {
		if _, ft := s.bFin.min(); ft < next {
			next = ft
		}
	}
	s.next = next
	e.sfix(int(s.hpos))
}

// startFlow starts a flow of size bytes from server sid to host dst,
// crossing site links su and sd (-1: none). The caller has counted it in
// the receiver's flows; its cap is set by recap.
func (e *engine) startFlow(sid, dst, chunk, vm int32, size float64, su, sd int32) int32 {
	return e.startFlowCPU(sid, dst, chunk, vm, size, su, sd, false)
}

// startFlowCPU is startFlow; job: the flow is start-up work on the
// shared CPU (cpu.go), in no receiver's flows and on no site link.
func (e *engine) startFlowCPU(sid, dst, chunk, vm int32, size float64, su, sd int32, job bool) int32 {
	var id int32
	if k := len(e.free); k > 0 {
		id = e.free[k-1]
		e.free = e.free[:k-1]
	} else {
		e.flows = append(e.flows, flow{})
		e.hpos = append(e.hpos, 0, 0)
		id = int32(len(e.flows) - 1)
	}
	e.flows[id] = flow{srv: sid, dst: dst, chunk: chunk, vm: vm, size: size, live: true, pkg: e.tag, su: su, sd: sd, w: 1}
	if e.pend != nil {
		e.pend[e.tag]++
	}
	cf := e.joinCPU(id, sid, su, sd, job)
	f := &e.flows[id]
	if su >= 0 {
		l := &e.links[su]
		f.suPos = int32(len(l.flows))
		l.flows = append(l.flows, id)
	}
	if sd >= 0 {
		l := &e.links[sd]
		f.sdPos = int32(len(l.flows))
		l.flows = append(l.flows, id)
	}
	s := &e.srvs[sid]
	rem, parked := e.pieceJoin(s, id, size)
	f.cap = e.flowCap(id)
	if su >= 0 {
		f.cap = min(f.cap, e.links[su].equal())
	}
	if sd >= 0 {
		f.cap = min(f.cap, e.links[sd].equal())
	}
	if cf != nil {
		f.cap = min(f.cap, e.links[e.cpu.link].equal()/cf.w)
	}
	e.advance(s)
	if s.perPeer && !job && s.pq == nil {
		e.flows[id].w = e.reweigh(sid, dst, id, true)
	}
	if parked {
		e.insertB(s, id, rem)
	} else {
		e.insertA(s, id, rem)
	}
	e.rebalance(s)
	e.reschedule(sid)
	e.linkChanged(su)
	e.linkChanged(sd)
	if cf != nil {
		e.linkChanged(e.cpu.link)
	}
	return id
}

// reweigh gives server sid's live flows to host dst (a per-peer server,
// advanced to now), other than skip, the weight 1 ÷ their count, plus
// one if add (a flow about to start), and returns it. The flows are
// found in the receiver's list (a few dozen at most), not counted apart:
// a count per pair of hosts grew with the square of the hosts and kept
// its memory. The caller rebalances the server.
func (e *engine) reweigh(sid, dst, skip int32, add bool) float64 {
	in := e.rin[dst].in
	n := 0
	if add {
		n = 1
	}
	for _, o := range in {
		if o >= 0 && o != skip && e.flows[o].live && e.flows[o].srv == sid {
			n++
		}
	}
	if n <= 1 {
		if n == 1 && !add {
			for _, o := range in {
				if o >= 0 && o != skip && e.flows[o].live && e.flows[o].srv == sid && e.flows[o].w != 1 {
					e.setWeight(sid, o, 1)
				}
			}
		}
		return 1
	}
	w := 1 / float64(n)
	for _, o := range in {
		if o >= 0 && o != skip && e.flows[o].live && e.flows[o].srv == sid && e.flows[o].w != w {
			e.setWeight(sid, o, w)
		}
	}
	return w
}

// setWeight gives flow id of server sid (advanced to now) weight w.
func (e *engine) setWeight(sid, id int32, w float64) {
	s := &e.srvs[sid]
	rem := e.detach(s, id)
	e.flows[id].w = w
	if e.flows[id].inA {
		e.insertA(s, id, rem)
	} else {
		e.insertB(s, id, rem)
	}
}

// endFlow removes flow id (finished or aborted) and returns the bytes it
// had left.
func (e *engine) endFlow(id int32) float64 {
	f := &e.flows[id]
	if e.pend != nil {
		e.pend[f.pkg]--
	}
	sid := f.srv
	s := &e.srvs[sid]
	e.advance(s)
	rem := e.detach(s, id)
	left, next := e.pieceLeave(s, id)
	rem += left
	if s.perPeer && !e.isJob(id) && s.pq == nil {
		e.reweigh(sid, f.dst, id, false)
	}
	e.rebalance(s)
	e.reschedule(sid)
	su, sd := f.su, f.sd
	if su >= 0 {
		e.linkRemove(su, id, f.suPos)
	}
	if sd >= 0 {
		e.linkRemove(sd, id, e.flows[id].sdPos)
	}
	cl := int32(-1)
	if cf := e.onCPU(id); cf != nil {
		cl = e.cpu.link
		e.linkRemove(cl, id, cf.pos)
	}
	e.flows[id].live = false
	e.free = append(e.free, id)
	e.linkChanged(su)
	e.linkChanged(sd)
	e.linkChanged(cl)
	if next >= 0 {
		e.touchLinks(next) // given the turn (piece.go)
	}
	return rem
}

func (e *engine) linkRemove(lid, id, pos int32) {
	l := &e.links[lid]
	last := l.flows[len(l.flows)-1]
	l.flows[pos] = last
	if last != id {
		switch lf := &e.flows[last]; lid {
		case lf.su:
			lf.suPos = pos
		case lf.sd:
			lf.sdPos = pos
		default:
			e.cpuF[last].pos = pos
		}
	}
	l.flows = l.flows[:len(l.flows)-1]
}

// linkChanged levels a link whose count drifted again and refreshes the
// caps of its flows.
func (e *engine) linkChanged(lid int32) {
	if lid < 0 {
		return
	}
	l := &e.links[lid]
	if l.capacity <= 0 {
		return
	}
	n := len(l.flows)
	// The CPU link is levelled at every change: the time of a run it
	// binds is its capacity over the work, with no drift to spare.
	if float64(n) <= float64(l.nRef)*(1+linkDrift)+1 && float64(n) >= float64(l.nRef)/(1+linkDrift)-1 && !(e.cpu.on && lid == e.cpu.link) {
		return
	}
	l.nRef = n
	e.relevel(lid)
	for k := 0; k < len(e.links[lid].flows); k++ {
		e.setCap(e.links[lid].flows[k], -1)
	}
}

// flowCap is a flow's cap: its receiver's share and the current shares
// of the site links it crosses.
func (e *engine) flowCap(id int32) float64 {
	if e.isJob(id) {
		return e.capWith(id, jobCap) // one core
	}
	return e.capWith(id, e.recvShare(e.flows[id].dst))
}

// capWith is flow id's cap given its receiver's share rs.
func (e *engine) capWith(id int32, rs float64) float64 {
	if e.parked(id) {
		return 0 // waiting for its sender's turn (piece.go)
	}
	f := &e.flows[id]
	c := rs
	if f.su >= 0 {
		c = min(c, e.links[f.su].share)
	}
	if f.sd >= 0 {
		c = min(c, e.links[f.sd].share)
	}
	if cf := e.onCPU(id); cf != nil {
		c = min(c, e.links[e.cpu.link].share/cf.w)
	}
	return max(c, 1) // never zero: a stuck flow would never end
}

// setCap recomputes flow id's cap (c < 0: from its receiver and links).
func (e *engine) setCap(id int32, c float64) {
	if c < 0 {
		c = e.flowCap(id)
	}
	f := &e.flows[id]
	if c == f.cap {
		return
	}
	sid := f.srv
	s := &e.srvs[sid]
	if f.inA && c >= s.lambda*f.w && f.cap >= s.lambda*f.w {
		// still sharing at the fair level: only its cap key changes,
		// and a key lower than the cap (a lower bound) is fixed lazily
		// by rebalance
		if c/f.w < s.aCap.key[e.hpos[2*int(id)+1]] {
			s.aCap.update(e, id, c/f.w)
		}
		f.cap = c
		return
	}
	e.advance(s)
	rem := e.detach(s, id)
	e.flows[id].cap = c
	e.insertA(s, id, rem)
	e.rebalance(s)
	e.reschedule(sid)
}

// nextServer returns the server whose flow ends first and when.
func (e *engine) nextServer() (int32, float64) {
	if len(e.sheap) == 0 {
		return -1, math.Inf(1)
	}
	sid := e.sheap[0]
	return sid, e.srvs[sid].next
}

// finishing returns the flow of server sid that ends now.
func (e *engine) finishing(sid int32) int32 {
	s := &e.srvs[sid]
	e.advance(s)
	tA, tB := math.Inf(1), math.Inf(1)
	var a, b int32 = -1, -1
	if s.nA > 0 && s.lambda > 0 {
		id, fv := s.aFin.min()
		a, tA = id, s.vT+max(fv-s.v, 0)/s.lambda
	}
	if s.nB > 0 {
		b, tB = s.bFin.min()
	}
	if tA <= tB {
		return a
	}
	return b
}

// sentNow returns server sid's bytes sent up to now.
func (e *engine) sentNow(sid int32) float64 {
	s := &e.srvs[sid]
	e.advance(s)
	return s.sent
}
