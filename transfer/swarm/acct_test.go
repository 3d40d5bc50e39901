package swarm_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// checkOriginAccounting checks the byte accounting of c's hosts, each of
// which downloaded p once (stats, in c's order) from origin: every
// host's origin and peer bytes add up to the package, in its
// DownloadStats and its Stats; and, when the origin sent no chunk twice,
// the hosts' origin bytes add up to what the origin sent.
func checkOriginAccounting(t *testing.T, c *cluster, p *testPackage, origin *countingOrigin, stats []*swarm.DownloadStats) {
	t.Helper()
	var sum int64
	for k, n := range c.nodes {
		ds, st := stats[k], n.swarm.Stats()
		if got := ds.FromOrigin + ds.FromPeers; got != p.size {
			t.Errorf("node %s: download from origin %d + from peers %d = %d, want the package's %d", n.id, ds.FromOrigin, ds.FromPeers, got, p.size)
		}
		if st.BytesFromOrigin != ds.FromOrigin || st.BytesFromPeers != ds.FromPeers {
			t.Errorf("node %s: Stats from origin %d, from peers %d; its download's %d, %d", n.id, st.BytesFromOrigin, st.BytesFromPeers, ds.FromOrigin, ds.FromPeers)
		}
		sum += st.BytesFromOrigin
	}
	sent := origin.bytes.Load()
	t.Logf("%d hosts: bytes_from_origin summed %d (%.2f copies), origin sent %d (%.2f copies), %d chunks sent twice",
		len(c.nodes), sum, float64(sum)/float64(p.size), sent, float64(sent)/float64(p.size), origin.twice())
	if origin.twice() > 0 {
		// A chunk sent twice is counted by no one, one host, or two:
		// nothing to check the sum against.
		return
	}
	if sum != sent {
		t.Errorf("bytes_from_origin summed over hosts = %d (%.2f copies), the origin sent %d (%.2f copies)",
			sum, float64(sum)/float64(p.size), sent, float64(sent)/float64(p.size))
	}
}

// Hosts whose downloads start at different times, with cooperative
// origin fetching: a host that fetched a chunk from the origin for a
// peer's pull-through request before its own download began counts the
// chunk in its bytes from the origin, whoever its download then takes it
// from (the chunks it fetched lately, or the asker that holds it by
// now); with sites (two-level pull-through), a site's fetcher that took a
// chunk from the chunk's global fetcher for a host of its site counts it
// from peers when its own download takes it from memory. Summed over the
// hosts, the bytes from the origin are what the origin sent. Before, such
// a host's download took the chunk from the asker and counted it from
// peers, and nobody counted it from the origin; and a site's fetcher
// counted a chunk from the global fetcher as one from the origin, as the
// global fetcher did.
func TestSwarmPullThroughOriginBytesAccounted(t *testing.T) {
	for _, tc := range []struct {
		name string
		// gap between one host's download start and the next's; 0: each
		// starts once the one before has finished.
		gap time.Duration
		// sites: the hosts are in two sites (configured and told to their
		// peers), two hosts each.
		sites bool
	}{
		{"one after another", 0, false},
		{"staggered", 100 * time.Millisecond, false},
		{"two sites one after another", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const hosts = 4
			p := newTestPackage(t, 51, 16<<10, 256*16<<10)
			c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
			origin := &countingOrigin{swarmOrigin: newSwarmOrigin(p, 0, 5*time.Millisecond), served: map[cid.Cid]int{}}
			for k := range hosts {
				site := ""
				if tc.sites {
					site = fmt.Sprintf("site-%d", k%2)
				}
				n := c.add(fmt.Sprintf("node%02d", k), origin, func(cfg *swarm.Config) {
					cfg.OriginParallel = 1
					cfg.Site = site
				})
				n.mn.SetSite(site)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			stats := make([]*swarm.DownloadStats, hosts)
			errs := make([]error, hosts)
			done := make(chan struct{}, hosts)
			pending := 0
			for k, n := range c.nodes {
				if k > 0 && tc.gap == 0 {
					<-done
					pending--
				} else if k > 0 {
					time.Sleep(tc.gap)
				}
				pending++
				go func() {
					stats[k], errs[k] = n.download(ctx, p)
					done <- struct{}{}
				}()
			}
			for ; pending > 0; pending-- {
				<-done
			}
			for k, n := range c.nodes {
				if errs[k] != nil {
					t.Fatalf("node %s: Download: %v", n.id, errs[k])
				}
				checkCopy(t, n, p)
			}
			checkOriginAccounting(t, c, p, origin, stats)
		})
	}
}
