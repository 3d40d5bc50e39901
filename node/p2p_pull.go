package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
	"github.com/storkpm/stork/transfer/swarm"
)

// Cooperative origin fetching on libp2p: the connected peers that speak
// swarm.PullProtocol are the swarm's members (no DHT look-up: identify
// has told us their protocols), and each chunk's first-ranked member
// fetches it from the origin for the others (transfer/swarm/pull.go).

var _ swarm.PullNetwork = (*P2P)(nil)

// agentPrefix starts the agent version of a host that tells its site.
const agentPrefix = "stork site="

// agentVersion is the agent version identify tells peers: "stork", or
// "stork site=NAME" for a host of site NAME.
func agentVersion(site string) string {
	if site == "" {
		return "stork"
	}
	return agentPrefix + site
}

// agentSite returns the site an agent version tells ("" none, or not a
// valid site name).
func agentSite(agent string) string {
	site, ok := strings.CutPrefix(agent, agentPrefix)
	if !ok || policy.CheckSiteName(site) != nil {
		return ""
	}
	return site
}

// membersTTL bounds how long Members answers from its cache when nothing
// it watches changed: a block that expires, or a peer's protocols changed
// after identify, shows within it.
const membersTTL = 500 * time.Millisecond

// membersCache is Members' last answer, valid while no connection came or
// went, no identify completed and no peer was banned since (gen), and for
// membersTTL at most. Every download asks for the members as it starts
// and every quarter FindInterval after, so a host with many downloads
// asks many times a second, and an answer built afresh costs a peer ID's
// base58 form and a peerstore lookup per connected peer.
type membersCache struct {
	gen   atomic.Uint64 // bumped by changed
	mu    sync.Mutex
	built uint64 // gen when ms was built
	at    time.Time
	ms    []policy.Member
	ok    bool
	ttl   time.Duration // 0: membersTTL (tests set it)
}

// changed invalidates the cache.
func (c *membersCache) changed() { c.gen.Add(1) }

// Members implements swarm.PullNetwork: the connected peers that serve
// pull-through requests, less the blocked ones, each with the site its
// identify told (agentVersion; "" none). The caller owns the slice.
func (p *P2P) Members() []policy.Member {
	c := &p.members
	c.mu.Lock()
	defer c.mu.Unlock()
	gen := c.gen.Load()
	ttl := c.ttl
	if ttl == 0 {
		ttl = membersTTL
	}
	if c.ok && c.built == gen && time.Since(c.at) < ttl {
		return slices.Clone(c.ms)
	}
	ms := p.members0()
	c.ms, c.built, c.at, c.ok = ms, gen, time.Now(), true
	return slices.Clone(ms)
}

// members0 is Members without the cache.
func (p *P2P) members0() []policy.Member {
	ps := p.host.Peerstore()
	var out []policy.Member
	for _, id := range p.host.Network().Peers() {
		if p.gater.blocked(id) {
			continue
		}
		if ok, err := ps.SupportsProtocols(id, swarm.PullProtocol); err != nil || len(ok) == 0 {
			continue
		}
		m := policy.Member{ID: swarm.PeerID(id.String())}
		if v, err := ps.Get(id, "AgentVersion"); err == nil {
			if agent, ok := v.(string); ok {
				m.Site = agentSite(agent)
			}
		}
		out = append(out, m)
	}
	return out
}

// OpenPull implements swarm.PullNetwork: a PullProtocol stream to a
// connected member (it never dials: members are connected).
func (p *P2P) OpenPull(ctx context.Context, to swarm.PeerID) (swarm.Stream, error) {
	id, err := peer.Decode(string(to))
	if err != nil {
		return nil, fmt.Errorf("open pull stream to %q: %w", to, err)
	}
	if p.gater.blocked(id) {
		return nil, fmt.Errorf("open pull stream to %s: %w", id, ErrPeerBlocked)
	}
	s, err := p.host.NewStream(network.WithNoDial(ctx, "pull-through"), id, swarm.PullProtocol)
	if err != nil {
		return nil, fmt.Errorf("open pull stream to %s: %w", id, err)
	}
	return s, nil
}

// SetPullHandler serves swarm.PullProtocol with h (the swarm's
// HandlePull), which owns the stream; nil stops serving it.
func (p *P2P) SetPullHandler(h func(peer swarm.PeerID, s swarm.Stream)) {
	if h == nil {
		p.host.RemoveStreamHandler(swarm.PullProtocol)
		return
	}
	p.host.SetStreamHandler(swarm.PullProtocol, func(s network.Stream) {
		h(swarm.PeerID(s.Conn().RemotePeer().String()), s)
	})
}

// pullManifests is the daemon's swarm.ManifestResolver: a peer may make
// this host fetch chunks only of packages that the signed metadata this
// host trusts publishes. It looks the manifest CID up among the
// published packages (listed once per metadata version) and resolves
// that package, which fetches the manifest (store, origin or peers) and
// checks it against the signed target.
type pullManifests struct {
	d *Daemon // its metadata client (made after the swarm)

	mu      sync.Mutex
	version int64
	refs    map[cid.Cid]string // manifest -> NAME@VERSION
}

var _ swarm.ManifestResolver = (*pullManifests)(nil)

// ResolveManifest implements swarm.ManifestResolver. A manifest not
// published in the metadata this host holds is looked for again once a
// refresh under way (this host's own request's) has ended, or after the
// refresh RefreshInterval asks for; a peer's request never forces one
// (a forced refresh would make this host skip the one a newer
// announcement asks for within minForcedRefresh).
func (r *pullManifests) ResolveManifest(ctx context.Context, c cid.Cid) (*metadata.Manifest, error) {
	ref, err := r.lookup(ctx, c)
	if errors.Is(err, metadata.ErrNotFound) {
		if _, rerr := r.d.meta.refresh(ctx, false); rerr == nil {
			ref, err = r.lookup(ctx, c)
		}
	}
	if err != nil {
		return nil, err
	}
	res, err := r.d.meta.c.Resolve(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("resolve manifest %s (%s): %w", c, ref, err)
	}
	if !res.ManifestCID.Equals(c) {
		return nil, fmt.Errorf("resolve manifest %s: %s names manifest %s: %w", c, ref, res.ManifestCID, metadata.ErrNotFound)
	}
	return res.Manifest, nil
}

// lookup returns the NAME@VERSION that publishes manifest c.
func (r *pullManifests) lookup(ctx context.Context, c cid.Cid) (string, error) {
	_, version := r.d.meta.state()
	if version == 0 {
		return "", fmt.Errorf("resolve manifest %s: %w: no trusted metadata yet", c, metadata.ErrNotFound)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refs == nil || r.version != version {
		pkgs, err := r.d.meta.c.Packages(ctx)
		if err != nil {
			return "", fmt.Errorf("resolve manifest %s: %w", c, err)
		}
		r.refs = make(map[cid.Cid]string, len(pkgs))
		for _, p := range pkgs {
			r.refs[p.ManifestCID] = p.Name + "@" + p.Version
		}
		r.version = version
	}
	ref, ok := r.refs[c]
	if !ok {
		return "", fmt.Errorf("resolve manifest %s: %w: not published", c, metadata.ErrNotFound)
	}
	return ref, nil
}
