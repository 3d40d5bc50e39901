package policy

import (
	"math"
	"time"
)

// Open requests, to peers and to the origin: what was asked of whom and
// when, how each one ended (Received, Failed, Cancelled, Timeouts), and
// the stalls that send a chunk to the origin as well.

// Request is one outstanding request, as Timeouts reports it.
type Request struct {
	Chunk int
	Peer  PeerID
	At    time.Time
}

type reqRec struct {
	chunk   int32
	peer    int32 // slot, or -1 for the origin
	next    int32
	gen     uint32
	live    bool
	stalled bool
	alone   bool // nothing else was in flight to the peer when asked
	// streaming: the chunk's bytes are on their way (Streaming).
	streaming bool
	at        int64
}

type fifoEntry struct {
	id  int32
	gen uint32
	due int64 // when to look at the request again
}

type fifo struct {
	q    []fifoEntry
	head int
}

func (f *fifo) push(e fifoEntry) { f.q = append(f.q, e) }

func (f *fifo) peek() (fifoEntry, bool) {
	if f.head >= len(f.q) {
		return fifoEntry{}, false
	}
	return f.q[f.head], true
}

func (f *fifo) pop() {
	f.head++
	if f.head == len(f.q) {
		f.q, f.head = f.q[:0], 0
	} else if f.head > 1024 && f.head*2 > len(f.q) {
		f.q = f.q[:copy(f.q, f.q[f.head:])]
		f.head = 0
	}
}

// Requested records a request for chunk i sent to from (OriginPeer for the
// origin) at now.
func (p *Picker) Requested(i int, from PeerID, now time.Time) {
	s := int32(-1)
	if from != OriginPeer {
		var ok bool
		if s, ok = p.peers[from]; !ok {
			return
		}
	}
	p.requested(i, s, now)
}

// requested is Requested for slot s (-1: the origin).
func (p *Picker) requested(i int, s int32, now time.Time) {
	if !p.valid(i) || p.have.Has(i) {
		return
	}
	t := p.t(now)
	if s < 0 {
		if p.origReq.Has(i) {
			return
		}
		p.origReq.Set(i)
		p.originInflight++
		p.jitterOrigin(t)
	} else if p.askedFrom(i, s) {
		return
	}
	if p.ck[i].reqCount == 0 {
		p.levels[p.ck[i].avail].remove(i)
		p.pickU.Clear(i)
	}
	was := p.originEligible(i)
	if p.ck[i].reqCount < math.MaxUint8 {
		p.ck[i].reqCount++
	}
	p.updElig(i, was)
	var id int32
	if k := len(p.freeRecs); k > 0 {
		id = p.freeRecs[k-1]
		p.freeRecs = p.freeRecs[:k-1]
	} else {
		p.recs = append(p.recs, reqRec{})
		id = int32(len(p.recs) - 1)
	}
	r := &p.recs[id]
	*r = reqRec{chunk: int32(i), peer: s, next: p.ck[i].reqHead, gen: r.gen + 1, live: true, at: t}
	p.ck[i].reqHead = id
	if s >= 0 {
		sl := &p.slots[s]
		r.alone = sl.inflight == 0
		if r.alone {
			sl.busySince = t
		}
		sl.inflight++
		p.peerInflight++
		p.stallQ.push(fifoEntry{id, r.gen, t + int64(p.cfg.StallTimeout)})
		p.timeQ.push(fifoEntry{id, r.gen, t + int64(p.cfg.RequestTimeout)})
	}
}

// findReq returns the open request of chunk i to slot s (-1: origin).
func (p *Picker) findReq(i int, s int32) int32 {
	for id := p.ck[i].reqHead; id >= 0; id = p.recs[id].next {
		if p.recs[id].peer == s {
			return id
		}
	}
	return -1
}

func (p *Picker) askedFrom(i int, s int32) bool {
	for id := p.ck[i].reqHead; id >= 0; id = p.recs[id].next {
		if p.recs[id].peer == s {
			return true
		}
	}
	return false
}

// endRequest closes request id; its chunk becomes pickable again if it was
// the last one and we still lack the chunk.
func (p *Picker) endRequest(id int32) {
	r := &p.recs[id]
	i := int(r.chunk)
	// unlink
	if p.ck[i].reqHead == id {
		p.ck[i].reqHead = r.next
	} else {
		for q := p.ck[i].reqHead; q >= 0; q = p.recs[q].next {
			if p.recs[q].next == id {
				p.recs[q].next = r.next
				break
			}
		}
	}
	if r.peer < 0 {
		p.origReq.Clear(i)
		p.originInflight--
		p.jitterOrigin(p.lastT)
	} else {
		p.slots[r.peer].inflight--
		p.peerInflight--
	}
	r.live = false
	r.gen++
	p.freeRecs = append(p.freeRecs, id)
	was := p.originEligible(i)
	p.ck[i].reqCount--
	p.updElig(i, was)
	if p.ck[i].reqCount == 0 && !p.have.Has(i) {
		p.makePickable(i)
	}
}

// Asked reports whether a request for chunk i to from (a peer or
// OriginPeer) is open.
func (p *Picker) Asked(i int, from PeerID) bool {
	if !p.valid(i) {
		return false
	}
	s, ok := p.slotOf(from)
	return ok && p.findReq(i, s) >= 0
}

// PeerAsked reports whether a request for chunk i is open to a peer (not
// the origin).
func (p *Picker) PeerAsked(i int) bool {
	if !p.valid(i) {
		return false
	}
	for id := p.ck[i].reqHead; id >= 0; id = p.recs[id].next {
		if p.recs[id].peer >= 0 {
			return true
		}
	}
	return false
}

// Inflight returns the open requests to peer (OriginPeer: the origin).
func (p *Picker) Inflight(peer PeerID) int {
	if peer == OriginPeer {
		return p.originInflight
	}
	if s, ok := p.peers[peer]; ok {
		return p.slots[s].inflight
	}
	return 0
}

// PartSize: the swarm sends chunks larger than this as ChunkParts of this
// size, so that a Cancel stops them part way (a chunk asked of a host
// while it was the only holder is often wanted elsewhere by the time a
// shared, slow uplink has sent half of it), control messages need not wait
// behind a whole chunk, and the receiver sees progress (Progress) before
// the chunk is whole. With an upload rate limit the parts are smaller (the
// limiter's pieces).
const PartSize = 256 << 10

// Progress records that part of a chunk we asked from for has arrived
// (a ChunkPart): a peer sending a large chunk slowly, as one serving many
// hosts on a busy machine does, is slow but not stalled, and its requests
// neither stall nor time out while bytes flow.
func (p *Picker) Progress(from PeerID, now time.Time) {
	if s, ok := p.peers[from]; ok {
		p.slots[s].lastByte = p.t(now)
	}
}

// Received records that chunk i arrived from from (verified, bytes long)
// and marks it had. It returns the other peers (OriginPeer included) still
// asked for i, whose requests it closed: the caller should cancel them. The
// slice is reused by the next call. A chunk we did not ask from for is
// still taken (SetHave) and counted.
func (p *Picker) Received(i int, from PeerID, now time.Time, bytes int64) []PeerID {
	s, ok := p.slotOf(from)
	return p.received(i, s, ok, now, bytes)
}

// received is Received from slot s (-1: the origin), ok false for a
// sender we do not know.
func (p *Picker) received(i int, s int32, ok bool, now time.Time, bytes int64) []PeerID {
	p.cancelBuf = p.cancelBuf[:0]
	if !p.valid(i) {
		return nil
	}
	t := p.t(now)
	if ok {
		if id := p.findReq(i, s); id >= 0 {
			r := p.recs[id]
			if s >= 0 {
				sl := &p.slots[s]
				start := max(r.at, sl.lastRecv)
				if dt := t - start; dt > 0 {
					tp := float64(bytes) / (float64(dt) / 1e9)
					old := sl.score.Throughput
					sl.score.Throughput = ewma(old, tp)
					if old == 0 {
						p.tpN++
					}
					p.tpSum += sl.score.Throughput - old
				}
				p.lat = ewma(p.lat, float64(t-r.at))
				if r.alone {
					rtt := time.Duration(t - r.at)
					if sl.score.RTT == 0 {
						sl.score.RTT = rtt
					} else {
						sl.score.RTT = time.Duration(ewma(float64(sl.score.RTT), float64(rtt)))
					}
				}
			} else {
				p.originDone++
				p.mem.originLat = ewma(p.mem.originLat, float64(t-r.at))
			}
			p.endRequest(id)
		}
		if s >= 0 {
			sl := &p.slots[s]
			sl.lastRecv = t
			sl.score.Chunks++
			sl.score.Bytes += bytes
			sl.score.Strikes = 0
		}
	}
	p.SetHave(i)
	for id := p.ck[i].reqHead; id >= 0; {
		r := &p.recs[id]
		next := r.next
		if r.peer < 0 {
			p.cancelBuf = append(p.cancelBuf, OriginPeer)
		} else {
			p.cancelBuf = append(p.cancelBuf, p.slots[r.peer].id)
		}
		p.endRequest(id)
		id = next
	}
	return p.cancelBuf
}

// Failed records that the request of chunk i to from failed (an error, a
// Reject, a chunk that failed its hash, a cancelled origin request): the
// chunk becomes pickable again and the peer takes a strike. It returns the
// peer's consecutive strikes.
func (p *Picker) Failed(i int, from PeerID) int {
	if !p.valid(i) {
		return 0
	}
	s, ok := p.slotOf(from)
	if !ok {
		return 0
	}
	if id := p.findReq(i, s); id >= 0 {
		p.endRequest(id)
	}
	if s < 0 {
		return 0
	}
	sc := &p.slots[s].score
	sc.Failures++
	sc.Strikes++
	return sc.Strikes
}

// Cancelled closes the request of chunk i to from without blame (we
// cancelled it ourselves).
func (p *Picker) Cancelled(i int, from PeerID) {
	if !p.valid(i) {
		return
	}
	if s, ok := p.slotOf(from); ok {
		if id := p.findReq(i, s); id >= 0 {
			p.endRequest(id)
		}
	}
}

// Timeouts closes every peer request older than RequestTimeout, gives each
// peer a strike (PeerScore.Timeouts), and appends the closed requests to
// dst: the caller should cancel them and may drop a peer with many
// strikes. Origin requests never time out here (the origin has its own
// stall and rate limits).
func (p *Picker) Timeouts(now time.Time, dst []Request) []Request {
	t := p.t(now)
	p.advance(t)
	for {
		e, ok := p.timeQ.peek()
		if !ok {
			break
		}
		if e.due > t {
			break
		}
		p.timeQ.pop()
		r := &p.recs[e.id]
		if !r.live || r.gen != e.gen {
			continue
		}
		sl := &p.slots[r.peer]
		if quiet := max(r.at, sl.lastRecv, sl.lastByte); t-quiet < int64(p.cfg.RequestTimeout) {
			// The peer is delivering (other chunks of the pipeline, or
			// parts of one): not timed out, look again later.
			p.timeQ.push(fifoEntry{e.id, e.gen, quiet + int64(p.cfg.RequestTimeout)})
			continue
		}
		dst = append(dst, Request{Chunk: int(r.chunk), Peer: sl.id, At: p.epoch.Add(time.Duration(r.at))})
		sl.score.Timeouts++
		sl.score.Strikes++
		p.endRequest(e.id)
	}
	return dst
}

// advance expires PeerPending claims and first-hop deferrals, and marks
// stalled peer requests.
func (p *Picker) advance(t int64) {
	p.expireDeferred(t)
	for p.pendHead < len(p.pendQ) {
		e := p.pendQ[p.pendHead]
		if t-e.at < int64(p.cfg.PendingTimeout) {
			break
		}
		p.pendHead++
		sl := &p.slots[e.slot]
		if sl.live && sl.gen == e.gen && sl.pending.Has(int(e.chunk)) {
			if r, ok := sl.renewed[e.chunk]; ok {
				if r > e.at {
					continue // renewed since: a later entry expires it
				}
				delete(sl.renewed, e.chunk)
			}
			sl.pending.Clear(int(e.chunk))
			sl.npend--
			p.addPend(int(e.chunk), -1)
			p.maybeOrigin(int(e.chunk))
		}
	}
	if p.pendHead == len(p.pendQ) {
		p.pendQ, p.pendHead = p.pendQ[:0], 0
	}
	for {
		e, ok := p.stallQ.peek()
		if !ok {
			break
		}
		if e.due > t {
			break
		}
		p.stallQ.pop()
		r := &p.recs[e.id]
		if !r.live || r.gen != e.gen || r.stalled {
			continue
		}
		if quiet := max(r.at, p.slots[r.peer].lastRecv, p.slots[r.peer].lastByte); t-quiet < int64(p.cfg.StallTimeout) {
			p.stallQ.push(fifoEntry{e.id, e.gen, quiet + int64(p.cfg.StallTimeout)})
			continue
		}
		r.stalled = true
		p.stalled = append(p.stalled, r.chunk)
	}
}
