package node

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/storkpm/stork/transfer/swarm"
)

// Sites: the daemon's site (Config.Site, or inferred by the swarm from the
// round trips the libp2p host measures), in the status.

// RTT returns the peerstore's moving average of ping round trips to peer,
// 0 until a ping answers; a peer not measured yet is pinged in the
// background (the swarm infers the site from these).
func (p *P2P) RTT(to swarm.PeerID) time.Duration {
	id, err := peer.Decode(string(to))
	if err != nil {
		return 0
	}
	d := p.host.Peerstore().LatencyEWMA(id)
	if d == 0 && p.track() {
		go func() {
			defer p.wg.Done()
			p.pingOnce(id)
		}()
	}
	return d
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
