package policy

import "time"

// Piece selection: which chunk to ask a peer for next.

// NextForPeer returns the chunk to request next from peer, or false if the
// peer has nothing we need that is not requested already, or its pipeline
// is full (Inflight >= PipelineDepth). It changes nothing: call Requested
// for the chunk actually asked for.
func (p *Picker) NextForPeer(peer PeerID, now time.Time) (int, bool) {
	s, ok := p.peers[peer]
	if !ok {
		return 0, false
	}
	return p.nextForPeer(s, p.t(now))
}

func (p *Picker) nextForPeer(s int32, t int64) (int, bool) {
	if p.remaining == 0 {
		return 0, false
	}
	sl := &p.slots[s]
	if sl.inflight >= p.pipelineDepth(s) {
		return 0, false
	}
	top := len(p.levels)
	if p.slowPeer(sl, t) && (sl.inflight > 0 || p.peerInflight > 0) && !p.Endgame() {
		// Only what no other known peer has: its upload is for those.
		// Unless nothing else is on its way to us (starving) or the end
		// game is on: then anything, one request at a time (measured again).
		top = min(top, 2)
	}
	// With no level holding a chunk the peer has, each pick below would
	// only draw its random start and fail: draw the same, skip the scans.
	// Asked once a level holds a chunk: a download waiting for chunks no
	// peer holds has none, and its peers' have-maps stay untouched.
	none, asked := false, false
	for a := 1; a < top; a++ {
		if p.levels[a].count == 0 {
			continue
		}
		if !asked {
			none, asked = !p.anyPickable(sl.have), true
		}
		if none {
			if nw := len(p.levels[a].words); nw != 0 {
				p.rng.IntN(nw)
			}
			continue
		}
		var skip Bitfield
		if a == 1 && p.mem.on {
			skip = p.mem.deferred
		}
		skip = p.siteSkip(s, skip)
		if i, ok := p.levels[a].pick(sl.have, skip, p.rng); ok {
			return i, true
		}
	}
	if !p.Endgame() || top < len(p.levels) {
		return 0, false
	}
	return p.nextEndgame(sl, s, t)
}
