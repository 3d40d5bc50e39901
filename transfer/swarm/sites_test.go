package swarm_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/storkpm/stork/transfer/policy"
	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// How the nodes of siteCopies know their site.
type siteMode int

const (
	noSites      siteMode = iota
	configured            // Config.Site
	inferredRTTs          // Config.RTT: the links' round trips
)

// siteCopies runs 2 sites of 3 nodes downloading one package at once from
// an origin and each other, with the site rule (the nodes' sites
// configured or inferred) or without, and returns the bytes each site's
// nodes received from the other site's nodes, in package copies.
func siteCopies(t *testing.T, mode siteMode) map[string]float64 {
	t.Helper()
	p := newTestPackage(t, 21, 256<<10, 8<<20, 8<<20)
	local := transfertest.LinkShape{Latency: 500 * time.Microsecond, Rate: 50 << 20}
	c := newCluster(t, local)
	origin := newSwarmOrigin(p, 40<<20, 20*time.Millisecond)
	siteOf := map[swarm.PeerID]string{}
	for _, s := range []string{"A", "B"} {
		for k := range 3 {
			id := fmt.Sprintf("%s%d", s, k)
			siteOf[swarm.PeerID(id)] = s
			c.add(id, origin, func(cfg *swarm.Config) {
				cfg.RequestTimeout = 0
				switch mode {
				case configured:
					cfg.Site = "site-" + s
				case inferredRTTs:
					cfg.RTT = func(q swarm.PeerID) time.Duration {
						if siteOf[q] == s {
							return time.Millisecond
						}
						return 20 * time.Millisecond
					}
				}
			})
		}
	}
	// Across sites: 5 ms each way, the same rate: only the rule keeps
	// chunks from crossing.
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if siteOf[a.id] != siteOf[b.id] {
				c.net.SetLink(a.id, b.id, transfertest.LinkShape{Latency: 5 * time.Millisecond, Rate: 50 << 20})
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	stats := make([]*swarm.DownloadStats, len(c.nodes))
	for k, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stats[k], errs[k] = n.download(ctx, p)
		}()
	}
	wg.Wait()
	across := map[string]float64{}
	for k, n := range c.nodes {
		if errs[k] != nil {
			t.Fatalf("node %s: Download: %v", n.id, errs[k])
		}
		checkCopy(t, n, p)
		s := siteOf[n.id]
		for q, ps := range n.swarm.Stats().Peers {
			if siteOf[q] != s {
				across[s] += float64(ps.Downloaded)
			}
		}
		if mode == inferredRTTs {
			if got := n.swarm.Site(); got != (policy.Site{Name: "~" + s + "0", Source: policy.SiteInferred}) {
				t.Errorf("node %s: Site() = %v, want ~%s0 inferred", n.id, got, s)
			}
		}
		if mode == configured {
			if got := n.swarm.Site(); got != (policy.Site{Name: "site-" + s, Source: policy.SiteConfigured}) {
				t.Errorf("node %s: Site() = %v, want site-%s configured", n.id, got, s)
			}
			for _, ps := range n.swarm.PeerSites() {
				if ps.Local != (siteOf[ps.Peer] == s) || ps.Site != "site-"+siteOf[ps.Peer] {
					t.Errorf("node %s: PeerSites has %+v, want site-%s, local %v", n.id, ps, siteOf[ps.Peer], siteOf[ps.Peer] == s)
				}
			}
		}
	}
	for s := range across {
		across[s] /= float64(p.size)
	}
	return across
}

// With their sites configured, or inferred from round trips, 2 sites of
// 3 nodes each take about one copy of the package, at most, from the other
// site (the rest is the origin's); the same run without sites takes more
// across.
func TestSwarmSitesOneCopyPerSite(t *testing.T) {
	without := siteCopies(t, noSites)
	for _, mode := range []siteMode{configured, inferredRTTs} {
		with := siteCopies(t, mode)
		t.Logf("copies from the other site: with sites (mode %d) %v, without %v", mode, with, without)
		// At most about one copy: a chunk whose designated node is slow
		// to fetch it is fetched by a second node after its ranked wait,
		// more often on a loaded machine or under the race detector.
		for _, s := range []string{"A", "B"} {
			if with[s] > 1.3 {
				t.Errorf("mode %d: site %s: %.2f copies from the other site, want <= 1.3", mode, s, with[s])
			}
		}
		if w, wo := with["A"]+with["B"], without["A"]+without["B"]; w > 0.75*wo {
			t.Errorf("mode %d: copies across sites: %.2f with sites, %.2f without; want at most 3/4 as many with sites", mode, w, wo)
		}
	}
}

// With their sites configured or inferred, 3 sites of 4 nodes whose
// downloads may trade with 16 peers each: every node receives chunks from
// at most policy.DefaultCrossSitePeers(16) = 2 peers of other sites (the
// swarm keeps the policy's cap, as the simulator does), and each site
// still takes about one copy from the others (at most 1.5).
func TestSwarmSitesCapCrossSitePeers(t *testing.T) {
	t.Run("configured", func(t *testing.T) { capCrossSitePeers(t, configured) })
	t.Run("inferred", func(t *testing.T) {
		if testing.Short() {
			// Until a node's round trips show its site it trades with
			// anyone, so how many peers of other sites it received from
			// depends on how soon they are in: on a loaded machine under
			// the race detector, sometimes one too many.
			t.Skip("inferred sites: depends on how fast round trips are measured")
		}
		capCrossSitePeers(t, inferredRTTs)
	})
}

func capCrossSitePeers(t *testing.T, mode siteMode) {
	const maxPeers = 16
	crossMax := policy.DefaultCrossSitePeers(maxPeers)
	p := newTestPackage(t, 22, 256<<10, 8<<20)
	c := newCluster(t, transfertest.LinkShape{Latency: 500 * time.Microsecond, Rate: 50 << 20})
	origin := newSwarmOrigin(p, 40<<20, 20*time.Millisecond)
	siteOf := map[swarm.PeerID]string{}
	for _, s := range []string{"A", "B", "C"} {
		for k := range 4 {
			id := fmt.Sprintf("%s%d", s, k)
			siteOf[swarm.PeerID(id)] = s
			c.add(id, origin, func(cfg *swarm.Config) {
				cfg.RequestTimeout = 0
				cfg.MaxPeersPerDownload = maxPeers
				// The cap is on swarm sessions: no chunk through a
				// pull-through fetcher, which is chosen among all members.
				cfg.NoPullThrough = true
				if mode == configured {
					cfg.Site = "site-" + s
					return
				}
				cfg.RTT = func(q swarm.PeerID) time.Duration {
					if siteOf[q] == s {
						return time.Millisecond
					}
					return 20 * time.Millisecond
				}
			})
		}
	}
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if siteOf[a.id] != siteOf[b.id] {
				c.net.SetLink(a.id, b.id, transfertest.LinkShape{Latency: 5 * time.Millisecond, Rate: 50 << 20})
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := c.startDownloads(ctx, p)()
	// The cap is on the peers traded with at once, and this counts every
	// peer received from: one that times out and is dropped makes room
	// for another. With -short (the race detector's run, where timeouts
	// happen on a loaded machine) one more is allowed.
	bound := crossMax
	if testing.Short() {
		bound++
	}
	into := map[string]float64{}
	for k, n := range c.nodes {
		if errs[k] != nil {
			t.Fatalf("node %s: Download: %v", n.id, errs[k])
		}
		checkCopy(t, n, p)
		s := siteOf[n.id]
		var from []swarm.PeerID
		for q, ps := range n.swarm.Stats().Peers {
			if siteOf[q] != s && ps.Downloaded > 0 {
				from = append(from, q)
				into[s] += float64(ps.Downloaded)
			}
		}
		if len(from) > bound {
			t.Errorf("node %s: received chunks from %d peers of other sites %v, want at most %d", n.id, len(from), from, bound)
		}
	}
	// About one copy: with an inferred site, chunks cross freely until
	// the round trips are in, and a loaded machine (or the race
	// detector) makes designated nodes late more often. Under -short
	// (the race detector's run) the copies are not bound: its timeouts
	// drop peers, and each peer replaced across sites brings a share of
	// the package more, by how late the timeouts come; the peer cap above
	// still holds there.
	if testing.Short() {
		return
	}
	for _, s := range []string{"A", "B", "C"} {
		if cp := into[s] / float64(p.size); cp > 1.5 {
			t.Errorf("site %s: %.2f copies from other sites' peers, want <= 1.5", s, cp)
		}
	}
}
