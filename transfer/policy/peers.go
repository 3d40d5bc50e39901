package policy

import (
	"math/bits"
	"time"
)

// What the Picker knows of each peer: its have-map, its claims of origin
// fetches (PeerPending), its open requests and its score.

type peerSlot struct {
	// What a HaveUpdate and the pick that follows read first, together.
	have      Bitfield
	gen       uint32
	npend     int32 // chunks set in pending
	live      bool
	inflight  int
	busySince int64 // when inflight last went from 0 to 1
	lastRecv  int64
	score     PeerScore
	pending   Bitfield
	id        PeerID
	lastByte  int64 // last Progress: part of a chunk arrived
	// renewed: the latest time each renewed claim (pending) was made
	// again; the claim's earlier pendQ entries do not expire it.
	renewed map[int32]int64
}

type pendEntry struct {
	slot  int32
	gen   uint32
	chunk int32
	ext   uint8 // first-hop deferral: times extended (slowHolderExtends)
	at    int64
}

func (p *Picker) slotOf(from PeerID) (int32, bool) {
	if from == OriginPeer {
		return -1, true
	}
	s, ok := p.peers[from]
	return s, ok
}

// PeerJoined records a peer and its have-map (copied; nil: nothing). For
// a known peer the have-map is replaced in place: its open requests and
// PeerPending claims stay.
func (p *Picker) PeerJoined(peer PeerID, have Bitfield) {
	if peer == OriginPeer {
		return
	}
	if s, ok := p.peers[peer]; ok {
		hb := p.slots[s].have
		for w := range hb {
			var x uint64
			if w < len(have) {
				x = have[w] & hb.mask(w, p.n)
			}
			for d := x ^ hb[w]; d != 0; d &= d - 1 {
				i := w*64 + bits.TrailingZeros64(d)
				if x&(1<<(i&63)) != 0 {
					p.PeerHave(peer, i)
				} else {
					p.PeerLacks(peer, i)
				}
			}
		}
		return
	}
	var s int32
	if k := len(p.free); k > 0 {
		s = p.free[k-1]
		p.free = p.free[:k-1]
	} else {
		p.slots = append(p.slots, peerSlot{})
		s = int32(len(p.slots) - 1)
	}
	sl := &p.slots[s]
	gen := sl.gen + 1
	hb, pb := sl.have, sl.pending
	if hb == nil {
		hb, pb = NewBitfield(p.n), NewBitfield(p.n)
	} else {
		clear(hb)
		clear(pb)
	}
	*sl = peerSlot{id: peer, have: hb, pending: pb, gen: gen, live: true}
	p.peers[peer] = s
	p.numPeers++
	for w, x := range have {
		if w >= len(hb) {
			break
		}
		x &= hb.mask(w, p.n)
		for x != 0 {
			b := bits.TrailingZeros64(x)
			x &= x - 1
			i := w*64 + b
			hb.Set(i)
			p.setAvail(i, p.ck[i].avail+1)
		}
	}
}

// PeerHave records that peer has chunk i (a HaveUpdate). It also ends the
// peer's PeerPending claim on i.
func (p *Picker) PeerHave(peer PeerID, i int) {
	if s, ok := p.peers[peer]; ok {
		p.peerHave(s, i)
	}
}

func (p *Picker) peerHave(s int32, i int) {
	if !p.valid(i) {
		return
	}
	sl := &p.slots[s]
	if sl.npend > 0 && sl.pending.Has(i) {
		sl.pending.Clear(i)
		delete(sl.renewed, int32(i))
		sl.npend--
		p.addPend(i, -1)
	}
	if sl.have.Has(i) {
		return
	}
	sl.have.Set(i)
	p.siteHave(s, i, 1)
	p.setAvail(i, p.ck[i].avail+1)
	if p.ck[i].avail == 1 {
		p.deferFirst(i, s)
	} else if p.ck[i].reqCount > 0 && p.mem.on {
		p.reroute(i, sl)
	}
}

// PeerLacks records that peer does not have chunk i after all (it rejected
// a request for it).
func (p *Picker) PeerLacks(peer PeerID, i int) {
	s, ok := p.peers[peer]
	if !ok || !p.valid(i) || !p.slots[s].have.Has(i) {
		return
	}
	p.slots[s].have.Clear(i)
	p.siteHave(s, i, -1)
	p.setAvail(i, p.ck[i].avail-1)
}

// PeerPending records that peer said it is fetching chunk i from the
// origin: we leave i to it (and fetch it from the peer once it has it)
// unless the claim is older than PendingTimeout. The peer saying it again
// renews the claim: it runs PendingTimeout from the latest.
func (p *Picker) PeerPending(peer PeerID, i int, now time.Time) {
	if s, ok := p.peers[peer]; ok {
		p.peerPending(s, i, now)
	}
}

func (p *Picker) peerPending(s int32, i int, now time.Time) {
	if !p.valid(i) {
		return
	}
	sl := &p.slots[s]
	if sl.have.Has(i) {
		return
	}
	at := p.t(now)
	if sl.pending.Has(i) {
		if sl.renewed == nil {
			sl.renewed = make(map[int32]int64)
		}
		sl.renewed[int32(i)] = at
		p.pendQ = append(p.pendQ, pendEntry{slot: s, gen: sl.gen, chunk: int32(i), at: at})
		return
	}
	sl.pending.Set(i)
	sl.npend++
	p.addPend(i, 1)
	p.pendQ = append(p.pendQ, pendEntry{slot: s, gen: sl.gen, chunk: int32(i), at: at})
}

// DropRequests closes every open request to peer without blame (the
// stream carrying them was replaced); the peer's have-map and claims stay.
// It returns how many it closed.
func (p *Picker) DropRequests(peer PeerID) int {
	s, ok := p.peers[peer]
	if !ok {
		return 0
	}
	n := 0
	for k := 0; k < len(p.missing.items) && p.slots[s].inflight > 0; k++ {
		i := p.missing.items[k]
		for id := p.ck[i].reqHead; id >= 0; {
			next := p.recs[id].next
			if p.recs[id].peer == s {
				p.endRequest(id)
				n++
			}
			id = next
		}
	}
	return n
}

// PeerLeft forgets a peer (gone, dropped or banned): its chunks no longer
// count, and its open requests are dropped (their chunks become pickable).
func (p *Picker) PeerLeft(peer PeerID) {
	s, ok := p.peers[peer]
	if !ok {
		return
	}
	sl := &p.slots[s]
	p.siteLeft(s)
	// Open requests first, so their chunks return at the right level.
	p.DropRequests(peer)
	for w, x := range sl.have {
		for x != 0 {
			b := bits.TrailingZeros64(x)
			x &= x - 1
			i := w*64 + b
			p.setAvail(i, p.ck[i].avail-1)
		}
	}
	for w, x := range sl.pending {
		for x != 0 {
			b := bits.TrailingZeros64(x)
			x &= x - 1
			i := w*64 + b
			p.addPend(i, -1)
			p.maybeOrigin(i)
		}
	}
	if tp := sl.score.Throughput; tp > 0 {
		p.tpSum -= tp
		p.tpN--
	}
	sl.live = false
	sl.gen++
	sl.id = ""
	delete(p.peers, peer)
	p.free = append(p.free, s)
	p.numPeers--
}

// PeerKnown reports whether peer's have-map is known (PeerJoined).
func (p *Picker) PeerKnown(peer PeerID) bool {
	_, ok := p.peers[peer]
	return ok
}

// PeerHas reports whether peer is known to have chunk i.
func (p *Picker) PeerHas(peer PeerID, i int) bool {
	s, ok := p.peers[peer]
	return ok && p.valid(i) && p.slots[s].have.Has(i)
}
