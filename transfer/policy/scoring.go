package policy

import (
	"math"
	"slices"
	"time"
)

// Peer scoring: throughput and round-trip time measured per peer, which
// size each peer's pipeline, rank the peers, and tell the slow ones.

// PeerScore is what a Picker knows of a peer's service.
type PeerScore struct {
	// Throughput is an EWMA of bytes/s, each sample a chunk's bytes over
	// the time the peer spent on it (since it was asked or since the
	// previous chunk from the peer arrived, whichever is later).
	Throughput float64
	// RTT is an EWMA of request-to-arrival times of requests made while
	// nothing else was in flight to the peer (latency plus one chunk).
	RTT time.Duration
	// Chunks and Bytes received from the peer.
	Chunks int64
	Bytes  int64
	// Failures (Failed) and Timeouts in all; Strikes counts consecutive
	// ones and is reset by a received chunk.
	Failures int
	Timeouts int
	Strikes  int
}

// Value orders peers: throughput, halved for each strike.
func (s PeerScore) Value() float64 {
	return s.Throughput / float64(int(1)<<min(s.Strikes, 30))
}

func ewma(old, sample float64) float64 {
	if old == 0 {
		return sample
	}
	return old + scoreAlpha*(sample-old)
}

// Score returns what the Picker knows of peer.
func (p *Picker) Score(peer PeerID) PeerScore {
	if s, ok := p.peers[peer]; ok {
		return p.slots[s].score
	}
	return PeerScore{}
}

// PipelineDepth is how many requests to keep open to peer so that its link
// stays busy: one bandwidth-delay product of chunks plus one,
// clamp(ceil(throughput*rtt/chunkLen)+1, 2, MaxInflightPerPeer), where
// chunkLen is the mean chunk length. An unmeasured peer is assumed to have
// a bandwidth-delay product of InitialBDP.
func (p *Picker) PipelineDepth(peer PeerID) int {
	s, ok := p.peers[peer]
	if !ok {
		return 0
	}
	return p.pipelineDepth(s)
}

func (p *Picker) pipelineDepth(s int32) int {
	sc := &p.slots[s].score
	bdp := float64(p.cfg.InitialBDP)
	if sc.Throughput > 0 && sc.RTT > 0 {
		bdp = sc.Throughput * sc.RTT.Seconds()
	}
	d := math.Ceil(bdp/p.avgLen) + 1
	capB := max(p.cfg.MaxInflightBytes, p.cfg.DownloadInflight/int64(max(p.numPeers, 1)))
	d = min(d, float64(p.cfg.MaxInflightPerPeer), math.Floor(float64(capB)/p.avgLen))
	return max(int(d), 2)
}

// RankPeers sorts peers (known ones only are kept) best first by
// PeerScore.Value, and returns the slice.
func (p *Picker) RankPeers(peers []PeerID) []PeerID {
	out := peers[:0]
	for _, id := range peers {
		if _, ok := p.peers[id]; ok {
			out = append(out, id)
		}
	}
	slices.SortStableFunc(out, func(a, b PeerID) int {
		va, vb := p.slots[p.peers[a]].score.Value(), p.slots[p.peers[b]].score.Value()
		switch {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return 0
	})
	return out
}

// slowFactor: with the members known, a peer serving us more than this
// many times slower than the mean of our measured peers is asked, while a
// request to it is open, only for chunks no other known peer has (see
// slowPeer).
const slowFactor = 4

// slowPeer: with the members known, a measured peer much slower than the
// others (overloaded, or on a thin uplink). Asking it for a chunk others
// also have wastes its upload, which the chunks only it holds need (often
// the ones it owns at the origin), and makes us wait on it.
//
// A peer is slow if it has been asked and delivered nothing for
// slowFactor times the mean time our peer requests take, or if its
// measured throughput is slowFactor times below the mean of the others'.
func (p *Picker) slowPeer(sl *peerSlot, t int64) bool {
	if !p.mem.on {
		return false
	}
	if sl.inflight > 0 && p.lat > 0 && float64(t-max(sl.busySince, sl.lastRecv)) > slowFactor*p.lat {
		return true
	}
	return p.measuredSlow(sl)
}

// measuredSlow: slowPeer's throughput test alone (the peer's measured
// throughput slowFactor times below the mean of our measured peers').
func (p *Picker) measuredSlow(sl *peerSlot) bool {
	return p.mem.on && p.tpN >= 4 && sl.score.Throughput > 0 &&
		sl.score.Throughput*slowFactor*float64(p.tpN) < p.tpSum
}

// reroute withdraws the requests for chunk i when every one of them is
// open at a slow peer (slowPeer) and sl, which now has i too, is not slow:
// the chunk becomes pickable again (sl is asked next), and the slow peers'
// uploads go to the chunks only they hold. A request asked of a slow peer
// while it was the chunk's only holder otherwise waits behind everything
// else that peer's upload is split among (seconds) while the chunk
// spreads around it.
func (p *Picker) reroute(i int, sl *peerSlot) {
	if p.slowPeer(sl, p.lastT) || p.tpN < 4 {
		return // (with under 4 peers measured, none is measuredSlow)
	}
	for id := p.ck[i].reqHead; id >= 0; id = p.recs[id].next {
		if r := &p.recs[id]; r.peer < 0 || !p.measuredSlow(&p.slots[r.peer]) {
			return
		}
	}
	for id := p.ck[i].reqHead; id >= 0; {
		r := &p.recs[id]
		next := r.next
		p.withdrawn = append(p.withdrawn, Request{Chunk: i, Peer: p.slots[r.peer].id, At: p.epoch.Add(time.Duration(r.at))})
		p.endRequest(id)
		id = next
	}
}

// Withdrawn appends to dst, and forgets, the peer requests the Picker
// closed by itself since the last call (without blame: see reroute): the
// caller should cancel them. Call it after PeerHave.
func (p *Picker) Withdrawn(dst []Request) []Request {
	dst = append(dst, p.withdrawn...)
	p.withdrawn = p.withdrawn[:0]
	return dst
}

// HasWithdrawn reports whether Withdrawn has anything to return.
func (p *Picker) HasWithdrawn() bool { return len(p.withdrawn) > 0 }
