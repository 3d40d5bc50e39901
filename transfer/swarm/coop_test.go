package swarm_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// flashCrowd has hosts nodes, each started by add, download p at once
// from origin, and returns the origin's copies of p.
func flashCrowd(t *testing.T, c *cluster, p *testPackage, origin *swarmOrigin) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for k, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[k] = n.download(ctx, p)
		}()
	}
	wg.Wait()
	for k, n := range c.nodes {
		if errs[k] != nil {
			t.Fatalf("node %s: Download: %v", n.id, errs[k])
		}
		checkCopy(t, n, p)
	}
	return float64(origin.bytes.Load()) / float64(p.size)
}

// 24 hosts that see each other fetch a package of one chunk at once: the
// chunk's fetcher takes it from the origin, every other host asks the
// fetcher, and the origin sends one copy. Without pull-through every host
// asks the origin before it learns of the others.
func TestSwarmPullThroughOneChunk(t *testing.T) {
	const hosts = 24
	p := newTestPackage(t, 11, 1<<20, 1<<20)
	for _, pull := range []bool{true, false} {
		t.Run(fmt.Sprintf("pull=%v", pull), func(t *testing.T) {
			c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
			origin := newSwarmOrigin(p, 0, 20*time.Millisecond)
			for k := range hosts {
				c.add(fmt.Sprintf("node%02d", k), origin, func(cfg *swarm.Config) { cfg.NoPullThrough = !pull })
			}
			copies := flashCrowd(t, c, p, origin)
			t.Logf("pull-through %v: %d hosts, one 1 MiB chunk: origin sent %.2f copies (%d requests)", pull, hosts, copies, origin.reqs.Load())
			if pull && copies > 1 {
				t.Fatalf("origin sent %.2f copies with pull-through, want 1", copies)
			}
			if !pull && copies < 2 {
				t.Fatalf("origin sent %.2f copies without pull-through: the test no longer shows the flash crowd", copies)
			}
		})
	}
}
