package swarm_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// siteCrowd is the result of a flash crowd of sites: the origin's copies,
// the chunks it sent whole more than once, and per site the copies that
// came in over its uplink: from the origin, and from the other sites'
// hosts (every byte written on a link from a host of another site:
// sessions and pull-through alike).
type siteCrowd struct {
	origin float64
	twice  int
	into   map[string]float64
	// done: per site, when its last host completed (from the start);
	// ctr: per site, its hosts' counters summed.
	done map[string]time.Duration
	ctr  map[string]swarm.Counters
}

// cappedSiteCrowd has 3 sites of 4 hosts (20 ms apart, 0.5 ms within a
// site), their sites configured and told to their peers at connection
// (MemNode.SetSite: the members' sites are known as a download starts),
// fetch one package at once from an origin whose rate makes one copy
// take about 3 x RequestTimeout, as the testbed's capped origin does.
// Each download trades with at most 2 peers of other sites
// (policy.DefaultCrossSitePeers(16)), so a chunk's claim reaches few of
// the other sites' hosts. cut, if not "", is a site whose hosts cannot
// reach the origin: their requests hang, and fail after 1.5 x
// RequestTimeout (as the origin client's stall timeout ends them: 15 s
// against 10 s by default).
func cappedSiteCrowd(t *testing.T, cut string) siteCrowd {
	t.Helper()
	const reqTimeout = 2 * time.Second
	const stall = reqTimeout * 3 / 2
	p := newTestPackage(t, 41, 256<<10, 12<<20)
	c := newCluster(t, transfertest.LinkShape{Latency: 500 * time.Microsecond, Rate: 64 << 20})
	origin := &countingOrigin{swarmOrigin: newSwarmOrigin(p, 2<<20, 20*time.Millisecond), served: map[cid.Cid]int{}}
	siteOf := map[swarm.PeerID]string{}
	sites := []string{"A", "B", "C"}
	fromOrigin := map[string]*atomic.Int64{}
	for _, s := range sites {
		fromOrigin[s] = new(atomic.Int64)
	}
	for _, s := range sites {
		for k := range 4 {
			id := fmt.Sprintf("%s%d", s, k)
			siteOf[swarm.PeerID(id)] = s
			var src swarm.ChunkSource = siteOrigin{origin, fromOrigin[s]}
			if s == cut {
				src = cutOrigin{origin.swarmOrigin, blackhole{stall: stall}, cutAlways}
			}
			n := c.add(id, src, func(cfg *swarm.Config) {
				cfg.RequestTimeout = reqTimeout
				cfg.MaxPeersPerDownload = 16
				cfg.Site = "site-" + s
			})
			n.mn.SetSite("site-" + s)
		}
	}
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if siteOf[a.id] != siteOf[b.id] {
				c.net.SetLink(a.id, b.id, transfertest.LinkShape{Latency: 20 * time.Millisecond, Rate: 16 << 20})
			}
		}
	}
	r := siteCrowd{into: map[string]float64{}, done: map[string]time.Duration{}, ctr: map[string]swarm.Counters{}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for k, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[k] = n.download(ctx, p)
			el := time.Since(start)
			mu.Lock()
			r.done[siteOf[n.id]] = max(r.done[siteOf[n.id]], el)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for k, n := range c.nodes {
		if errs[k] != nil {
			t.Fatalf("node %s: Download: %v", n.id, errs[k])
		}
		checkCopy(t, n, p)
		r.ctr[siteOf[n.id]] = r.ctr[siteOf[n.id]].Add(n.swarm.Counters())
	}
	r.origin = float64(origin.bytes.Load()) / float64(p.size)
	r.twice = origin.twice()
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if siteOf[a.id] != siteOf[b.id] {
				r.into[siteOf[b.id]] += float64(c.net.Bytes(a.id, b.id)) / float64(p.size)
			}
		}
	}
	for s, n := range fromOrigin {
		r.into[s] += float64(n.Load()) / float64(p.size)
	}
	return r
}

// siteOrigin counts the bytes a site's hosts take from the origin (over
// the site's uplink, as the testbed's are).
type siteOrigin struct {
	swarm.ChunkSource
	n *atomic.Int64
}

func (o siteOrigin) FetchChunk(ctx context.Context, c cid.Cid, size int64) ([]byte, error) {
	b, err := o.ChunkSource.FetchChunk(ctx, c, size)
	if err == nil {
		o.n.Add(int64(len(b)))
	}
	return b, err
}

// Two-level pull-through: with the members' sites known, each chunk is
// fetched from the origin by its global fetcher alone, each site's
// fetcher takes one copy from it across the sites' links, and the
// site's hosts take it from their site's fetcher. The origin sends about
// one copy and each site takes about one copy in, however few of the
// other sites' hosts a download trades with.
func TestSwarmSitesTwoLevelOneCopy(t *testing.T) {
	r := cappedSiteCrowd(t, "")
	t.Logf("origin sent %.3f copies (%d chunks more than once); copies into each site: %v", r.origin, r.twice, r.into)
	if testing.Short() {
		// The race detector's run, on a loaded machine: fetchers are late
		// and requests time out, and the figures say little.
		return
	}
	// Before two-level pull-through: 1.06-1.10 from the origin, 1.27-1.59
	// into a site, 1.35-1.40 on average. The bounds leave room for a
	// loaded machine.
	if r.origin > 1.1 {
		t.Errorf("origin sent %.3f copies (%d chunks more than once), want <= 1.1", r.origin, r.twice)
	}
	var sum float64
	for s, cp := range r.into {
		sum += cp
		if cp > 1.35 {
			t.Errorf("site %s: %.3f copies in, want <= 1.35", s, cp)
		}
	}
	if mean := sum / float64(len(r.into)); mean > 1.25 {
		t.Errorf("%.3f copies into a site on average, want <= 1.25", mean)
	}
}

// cutAlways cuts a cutOrigin from the start.
var cutAlways = func() *atomic.Bool { var b atomic.Bool; b.Store(true); return &b }()

// Two-level pull-through with a site cut off from the origin (its hosts'
// requests hang, then fail): every host completes, the cut site's through
// the other sites (its hosts' site fetchers ask the chunks' global
// fetchers; a chunk whose global fetcher is cut off is fetched by the next
// in rank, once, for every site); cappedSiteCrowd fails the test
// otherwise. A third of the chunks have their global fetcher in the cut
// site: a cut host that has found its origin unreachable says so at once
// (TestSwarmPullOriginKnownDown), and the other sites' fetchers pass it
// over for the rest of their download, forwarded requests included.
func TestSwarmSitesTwoLevelSiteCut(t *testing.T) {
	var base siteCrowd
	if !testing.Short() {
		base = cappedSiteCrowd(t, "") // the same run without the cut, for the ratio
	}
	r := cappedSiteCrowd(t, "C")
	t.Logf("site C cut off: origin sent %.3f copies (%d chunks more than once); copies into each site: %v", r.origin, r.twice, r.into)
	for _, s := range []string{"A", "B", "C"} {
		ratio := ""
		if base.done != nil {
			ratio = fmt.Sprintf(" (%.2f x the run without the cut)", float64(r.done[s])/float64(base.done[s]))
		}
		t.Logf("site %s all done in %v%s; pulls given up: silent %d, claimed %d; its hosts answered pull-through requests origin down %d times at once, %d after waiting on their origin",
			s, r.done[s].Round(time.Millisecond), ratio, r.ctr[s].PullsSilent, r.ctr[s].PullsClaimed, r.ctr[s].OriginDownAtOnce, r.ctr[s].OriginDownWaited)
	}
	if testing.Short() {
		return // as in TestSwarmSitesTwoLevelOneCopy
	}
	// Each chunk whose global fetcher is cut off is fetched once, by the
	// member ranked next: the other sites' fetchers pass the cut host
	// over for it, not each site fetching its own copy. That failure is
	// about 1.33 copies (a third of the chunks, fetched again by both
	// other sites); the bound sits between it and 1.0, because on a
	// machine running every package's tests at once a few answers come
	// after their askers' timeouts and those chunks are fetched twice.
	if r.origin > 1.2 {
		t.Errorf("origin sent %.3f copies (%d chunks more than once), want <= 1.2", r.origin, r.twice)
	}
}
