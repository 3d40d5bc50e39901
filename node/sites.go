package node

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/storkpm/stork/transfer/swarm"
)

// Sites: the daemon's site (Config.Site, or inferred by the swarm from the
// round trips the libp2p host measures), in the status.

// RTT returns the smallest of the round trips measured to peer once
// rttSamples pings have answered, 0 before (not measured yet: the swarm
// leaves the peer out of its site inference); a peer with fewer samples
// is pinged again in the background. The smallest, not an average: a
// queue (a loaded host, a busy link) only ever adds to a round trip, so
// one slow answer, such as the first ping of 24 daemons starting on one
// machine, must not set a peer apart from the others (the moving
// average kept it there for minutes, and the swarm inferred a site from
// it, which turned cooperative fetching off).
//
// A peer reached only over loopback is on this machine: its round trip
// says nothing about sites (on a loaded machine it is queueing noise from
// microseconds to tens of milliseconds, and a site inferred from it split
// daemons on one machine apart and slowed their swarm), so RTT reports it
// unmeasured.
func (p *P2P) RTT(to swarm.PeerID) time.Duration {
	id, err := peer.Decode(string(to))
	if err != nil || p.loopbackOnly(id) {
		return 0
	}
	return p.measuredRTT(id)
}

// loopbackOnly reports whether every connection to id is over a loopback
// address (and there is one).
func (p *P2P) loopbackOnly(id peer.ID) bool {
	conns := p.host.Network().ConnsToPeer(id)
	for _, c := range conns {
		if !manet.IsIPLoopback(c.RemoteMultiaddr()) {
			return false
		}
	}
	return len(conns) > 0
}

// measuredRTT is RTT without the loopback rule.
func (p *P2P) measuredRTT(id peer.ID) time.Duration {
	d, n := p.rtts.get(id)
	if n < rttSamples && p.track() {
		go func() {
			defer p.wg.Done()
			p.pingOnce(id)
		}()
	}
	if n < rttSamples {
		return 0
	}
	return d
}

// rttSamples is how many pings answered before a peer's round trip
// counts for site inference.
const rttSamples = 3

// rttMins keeps each peer's smallest round trip and how many were
// measured. Safe for concurrent use.
type rttMins struct {
	mu sync.Mutex
	m  map[peer.ID]rttMin
}

type rttMin struct {
	min time.Duration
	n   int
}

// add records one round trip to id.
func (r *rttMins) add(id peer.ID, d time.Duration) {
	if d <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[peer.ID]rttMin)
	}
	e := r.m[id]
	if e.n == 0 || d < e.min {
		e.min = d
	}
	e.n++
	r.m[id] = e
}

// get returns id's smallest round trip and the count measured.
func (r *rttMins) get(id peer.ID) (time.Duration, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.m[id]
	return e.min, e.n
}

// siteStatus fills the status's site fields from the swarm.
func (d *Daemon) siteStatus(st *Status) {
	st.SiteSource = "unknown"
	if d.swarm == nil {
		return
	}
	site := d.swarm.Site()
	st.Site, st.SiteSource = site.Name, site.Source.String()
	st.SitePeers = d.swarm.PeerSites()
}
