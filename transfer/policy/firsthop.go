package policy

import "time"

// First-hop deferral. A chunk that has just reached its first holder among
// our peers (often its origin owner) is wanted at once by every host that
// knows that holder, and a holder that serves them all at once delivers
// every copy late (its upload is shared; a slow one takes seconds). So,
// among the members, each host asks the sole holder at once only with
// probability firstHopRequesters/peers (a hash of the host and the chunk
// decides); the others leave the chunk alone until a second known peer has
// it, or for deferTime at most. The few first requesters get the chunk
// fast and pass it on.
const firstHopRequesters = 2

// deferTime bounds how long a chunk is left alone: OriginFallbackDelay/4,
// extended up to slowHolderExtends times while its sole holder is slow.
func (p *Picker) deferTime() int64 { return int64(p.cfg.OriginFallbackDelay / 4) }

// slowHolderExtends: a chunk whose sole holder is measured slow (a thin
// uplink, or one shared by many) stays deferred for up to this many more
// deferTimes, until a second known peer has it; at each, about
// firstHopRequesters more hosts ask (firstHop). Asked by every host at
// once, a slow holder's upload is split so many ways that each copy takes
// seconds, and the chunk spreads no faster than that; asked by a few
// hosts at a time, it reaches them quickly and they pass it on.
const slowHolderExtends = 6

// deferFirst may defer chunk i, which peer s alone has (just told us).
// A peer measured fast is asked at once: it serves many at once quickly.
func (p *Picker) deferFirst(i int, s int32) {
	ms := &p.mem
	sl := &p.slots[s]
	if !ms.on || p.have.Has(i) || p.numPeers <= firstHopRequesters {
		return
	}
	if sl.score.Throughput > 0 && !p.slowPeer(sl, p.lastT) {
		return
	}
	if p.firstHop(i, 0) {
		return
	}
	ms.deferred.Set(i)
	ms.deferQ = append(ms.deferQ, pendEntry{slot: s, gen: sl.gen, chunk: int32(i), at: p.lastT + p.deferTime()})
}

// firstHop reports whether we are among the about firstHopRequesters of
// our peers' number that ask chunk i's sole holder at draw k (a hash of
// us, the chunk and k decides).
func (p *Picker) firstHop(i, k int) bool {
	h := p.mem.self ^ chunkHash(i)
	if k > 0 {
		h = mix64(h + uint64(k))
	}
	u := float64(mix64(h)>>11) / (1 << 53)
	return u*float64(p.numPeers) < firstHopRequesters
}

func (p *Picker) expireDeferred(t int64) {
	ms := &p.mem
	for ms.deferH < len(ms.deferQ) && ms.deferQ[ms.deferH].at <= t {
		e := ms.deferQ[ms.deferH]
		ms.deferH++
		i := int(e.chunk)
		if !ms.deferred.Has(i) {
			continue
		}
		if sl := &p.slots[e.slot]; sl.gen == e.gen && sl.have.Has(i) && p.measuredSlow(sl) {
			// Each extension is another draw of firstHopRequesters in
			// peers, so that a few more hosts ask per deferTime even if
			// none did at first. Extended from its expiry, not from now:
			// a late look does not stretch it (the queue stays in order
			// within deferTime).
			for e.ext < slowHolderExtends && e.at <= t && !p.firstHop(i, int(e.ext)+1) {
				e.ext++
				e.at += p.deferTime()
			}
			if e.at > t {
				ms.deferQ = append(ms.deferQ, e)
				continue
			}
		}
		ms.deferred.Clear(i)
		ms.thawed = true
	}
	if ms.deferH == len(ms.deferQ) {
		ms.deferQ, ms.deferH = ms.deferQ[:0], 0
	}
}

// Thawed expires first-hop deferrals up to now and reports whether one
// ended since the last call with its chunk still at one holder: the
// caller should ask its peers again.
func (p *Picker) Thawed(now time.Time) bool {
	p.expireDeferred(p.t(now))
	ok := p.mem.thawed
	p.mem.thawed = false
	return ok
}
