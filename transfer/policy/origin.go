package policy

import "time"

// The origin window: which chunks may be asked of the origin, and how
// many at once. This file holds what every host does and the lone-host
// policy (no members known); window.go and ring.go the members' policy.

// originEligible: no peer has it or is fetching it, nobody is asked for it.
func (p *Picker) originEligible(i int) bool {
	return p.pickable(i) && p.ck[i].avail == 0 && p.ck[i].pend == 0
}

// addPend changes the PeerPending claims on chunk i.
func (p *Picker) addPend(i int, delta int32) {
	was := p.originEligible(i)
	p.ck[i].pend += delta
	p.updElig(i, was)
}

// updElig keeps elig (the number of origin-eligible chunks) after a change
// to chunk i, which was eligible before it or not.
func (p *Picker) updElig(i int, was bool) {
	switch now := p.originEligible(i); {
	case now && !was:
		p.elig++
	case was && !now:
		p.elig--
	}
}

func (p *Picker) maybeOrigin(i int) {
	if !p.originEligible(i) {
		return
	}
	if !p.inHeap.Has(i) {
		p.heapPush(int32(i))
	}
	p.memberEligible(i)
}

// originWindow is how many origin requests may be open now. With
// pull-through on and members known, no slow start: the origin sees each
// chunk once however many hosts ask (its fetcher fetches it for all), and
// at most the members' window of chunks at once, so a host ranked first
// for several chunks fetches them together, as the owners of today's
// policy do once their windows have grown.
func (p *Picker) originWindow() int {
	w := min(p.cfg.OriginParallel, p.cfg.OriginInitialWindow+p.originDone)
	if p.pull && p.mem.on {
		w = p.cfg.OriginParallel
	}
	if p.numPeers > 0 && !p.mem.on {
		w = min(w, max(1, p.cfg.OriginParallel/(p.numPeers+1)))
	}
	return w
}

// jitterOrigin closes the origin gate for a random while (OriginJitter).
func (p *Picker) jitterOrigin(t int64) {
	if p.numPeers == 0 || p.mem.on {
		return
	}
	j := max(float64(p.cfg.OriginJitter), p.lat) * float64(p.numPeers+1) / float64(max(p.elig, 1))
	j = min(j, float64(p.cfg.RequestTimeout/4))
	p.originGate = t + int64(p.rng.Float64()*j)
}

// OriginWindow returns how many origin requests may be open at once now.
func (p *Picker) OriginWindow() int { return p.originWindow() }

// OriginInflight returns the open origin requests.
func (p *Picker) OriginInflight() int { return p.originInflight }

// NextForOrigin returns the chunk to request next from the origin, or
// false if none qualifies or the origin window is full. Stalled chunks come
// first, then chunks no known peer has or fetches, in this host's private
// random order. It changes nothing but expiring stalls and PeerPending
// claims: call Requested(i, OriginPeer, now).
func (p *Picker) NextForOrigin(now time.Time) (int, bool) {
	t := p.t(now)
	p.advance(t)
	if p.remaining == 0 || p.originInflight >= p.originWindow() {
		return 0, false
	}
	for len(p.stalled) > 0 {
		i := int(p.stalled[0])
		if !p.have.Has(i) && !p.origReq.Has(i) && p.ck[i].reqCount > 0 {
			return i, true
		}
		p.stalled = p.stalled[1:]
	}
	if p.mem.on {
		return p.nextMember(t)
	}
	// Hosts that pick at the same moment (before hearing each other's
	// Fetching) collide at random, and hosts whose origin requests end
	// together pick together. With peers around, each start is delayed by
	// a random jitter (see OriginJitter), so starts spread out in time.
	if p.numPeers > 0 && t < p.originGate {
		return 0, false
	}
	for len(p.heap) > 0 {
		i := int(p.heap[0])
		if p.originEligible(i) {
			return i, true
		}
		p.heapPop()
		p.inHeap.Clear(i)
	}
	return 0, false
}

// heapPush adds chunk i to the heap of this host's private origin order
// (chunk indices by rank).
func (p *Picker) heapPush(i int32) {
	p.inHeap.Set(int(i))
	h := append(p.heap, i)
	k := len(h) - 1
	for k > 0 {
		parent := (k - 1) / 2
		if p.rank[h[parent]] <= p.rank[h[k]] {
			break
		}
		h[parent], h[k] = h[k], h[parent]
		k = parent
	}
	p.heap = h
}

// heapPop removes the heap's first chunk.
func (p *Picker) heapPop() {
	h := p.heap
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	k := 0
	for {
		l := 2*k + 1
		if l >= len(h) {
			break
		}
		c := l
		if r := l + 1; r < len(h) && p.rank[h[r]] < p.rank[h[l]] {
			c = r
		}
		if p.rank[h[k]] <= p.rank[h[c]] {
			break
		}
		h[k], h[c] = h[c], h[k]
		k = c
	}
	p.heap = h
}
