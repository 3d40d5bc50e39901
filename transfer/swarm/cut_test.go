package swarm_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// blackhole is an origin behind silent drops: every request hangs until
// its context ends, as a TCP connect or read whose packets are dropped.
type blackhole struct{}

func (blackhole) FetchChunk(ctx context.Context, _ cid.Cid, _ int64) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestSwarmSiteCut: three sites of two hosts download one package at
// once; the hosts of the last site cannot reach the origin (silent drops:
// their requests hang) but reach every other host. Every host completes:
// no claim of a cut host (its Fetching, a pull-through request it
// serves, its rank as a chunk's origin owner or fetcher) keeps the
// others from asking the origin for a chunk.
func TestSwarmSiteCut(t *testing.T) {
	for _, sites := range []bool{false, true} {
		t.Run(fmt.Sprintf("sites=%v", sites), func(t *testing.T) {
			p := newTestPackage(t, 31, 64<<10, 2<<20)
			c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
			origin := newSwarmOrigin(p, 0, 5*time.Millisecond)
			for s := range 3 {
				for h := range 2 {
					var src swarm.ChunkSource = origin
					if s == 2 {
						src = blackhole{}
					}
					c.add(fmt.Sprintf("s%dh%d", s, h), src, func(cfg *swarm.Config) {
						cfg.OriginRequestTimeout = 3 * time.Second
						if sites {
							cfg.Site = fmt.Sprintf("site%d", s)
						}
					})
				}
			}
			// A hang guard, not a performance target.
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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
					t.Errorf("node %s: Download: %v", n.id, errs[k])
					continue
				}
				checkCopy(t, n, p)
			}
		})
	}
}
