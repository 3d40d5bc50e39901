package node

import (
	"context"
	"sync"
	"testing"
	"time"
)

// siteRun starts 2 sites of 3 daemons on loopback (real libp2p hosts),
// their sites configured or not, fetches one package on all at once and
// returns what came into each site (from the origin, and from daemons of
// the other site, by the swarm's per-peer counters), in package copies.
func siteRun(t *testing.T, withSites bool) map[string]float64 {
	t.Helper()
	size := 16 << 20
	o := newOrigin(t)
	o.publishChunked(t, "p", "1.0.0", 256<<10, map[string]int{"blob": size})
	siteOf := map[string]string{}
	var nodes []*swarmNode
	var boot []string
	for k := range 6 {
		site := []string{"A", "B"}[k%2]
		n := startSwarmNodeWith(t, o, boot, func(cfg *Config) {
			if withSites {
				cfg.Site = site
			}
		})
		if k == 0 {
			boot = n.addrs(t)
		}
		siteOf[string(n.d.p2p.ID())] = site
		nodes = append(nodes, n)
	}
	time.Sleep(500 * time.Millisecond) // let the overlay form
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = n.c.Fetch(context.Background(), "p", nil)
		}()
	}
	wg.Wait()
	in := map[string]float64{}
	for i, n := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: Fetch = %v", i, errs[i])
		}
		site := siteOf[string(n.d.p2p.ID())]
		st := n.d.swarm.Stats()
		in[site] += float64(st.BytesFromOrigin)
		for q, ps := range st.Peers {
			if siteOf[string(q)] != site {
				in[site] += float64(ps.Downloaded)
			}
		}
		status, err := n.c.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if withSites && (status.Site != site || status.SiteSource != "configured") {
			t.Errorf("node %d: status site %q (%s), want %q (configured)", i, status.Site, status.SiteSource, site)
		}
	}
	for s := range in {
		in[s] /= float64(size)
	}
	return in
}

// TestSwarmSitesLoopback: daemons that know their sites take about one
// copy into each site; the same daemons without sites take more across.
func TestSwarmSitesLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("12 daemons in turn")
	}
	without := siteRun(t, false)
	with := siteRun(t, true)
	t.Logf("copies into each site: with sites %v, without %v", with, without)
	for _, s := range []string{"A", "B"} {
		if with[s] > 1.5 {
			t.Errorf("site %s with sites: %.2f copies came in, want <= 1.5", s, with[s])
		}
	}
	if with["A"]+with["B"] >= without["A"]+without["B"]-0.3 {
		t.Errorf("copies into the sites: %.2f with sites, %.2f without; want at least 0.3 fewer with sites",
			with["A"]+with["B"], without["A"]+without["B"])
	}
}
