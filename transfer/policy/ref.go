package policy

import "time"

// PeerRef is a handle on a known peer for the *Ref methods, which skip
// looking the peer up by ID (the simulator calls them millions of times).
// It is valid until the peer leaves; a stale or zero PeerRef is ignored.
type PeerRef struct {
	slot int32
	gen  uint32
}

// Ref returns a handle on peer, false if the peer is not known.
func (p *Picker) Ref(peer PeerID) (PeerRef, bool) {
	s, ok := p.peers[peer]
	if !ok {
		return PeerRef{}, false
	}
	return PeerRef{s, p.slots[s].gen}, true
}

func (p *Picker) refSlot(r PeerRef) (int32, bool) {
	if r.slot < 0 || int(r.slot) >= len(p.slots) {
		return 0, false
	}
	sl := &p.slots[r.slot]
	return r.slot, sl.live && sl.gen == r.gen
}

// PeerHaveRef is PeerHave for a handle.
func (p *Picker) PeerHaveRef(r PeerRef, i int) {
	if s, ok := p.refSlot(r); ok {
		p.peerHave(s, i)
	}
}

// PeerPendingRef is PeerPending for a handle.
func (p *Picker) PeerPendingRef(r PeerRef, i int, now time.Time) {
	if s, ok := p.refSlot(r); ok {
		p.peerPending(s, i, now)
	}
}

// NextForPeerRef is NextForPeer for a handle.
func (p *Picker) NextForPeerRef(r PeerRef, now time.Time) (int, bool) {
	if s, ok := p.refSlot(r); ok {
		return p.nextForPeer(s, p.t(now))
	}
	return 0, false
}

// RequestedRef is Requested for a handle (a peer, never the origin).
func (p *Picker) RequestedRef(i int, r PeerRef, now time.Time) {
	if s, ok := p.refSlot(r); ok {
		p.requested(i, s, now)
	}
}

// ReceivedRef is Received for a handle (a peer, never the origin); a
// handle on a peer that left is a peer Received does not know.
func (p *Picker) ReceivedRef(i int, r PeerRef, now time.Time, bytes int64) []PeerID {
	s, ok := p.refSlot(r)
	return p.received(i, s, ok, now, bytes)
}

// ProgressRef is Progress for a handle.
func (p *Picker) ProgressRef(r PeerRef, now time.Time) {
	if s, ok := p.refSlot(r); ok {
		p.slots[s].lastByte = p.t(now)
	}
}

// StreamingRef is Streaming for a handle (a peer, never the origin).
func (p *Picker) StreamingRef(i int, r PeerRef) {
	s, ok := p.refSlot(r)
	p.streaming(i, s, ok)
}
