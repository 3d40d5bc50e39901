package swarm_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// blackhole is an origin behind silent drops: every request hangs until
// its context ends, as a TCP connect or read whose packets are dropped,
// or, with stall set, fails after stall (as the origin client's stall
// watchdog ends it).
type blackhole struct{ stall time.Duration }

var errStalled = errors.New("test origin: no byte for the stall timeout")

// cutOrigin is origin until cut, then b.
type cutOrigin struct {
	origin *swarmOrigin
	b      blackhole
	cut    *atomic.Bool
}

func (o cutOrigin) FetchChunk(ctx context.Context, c cid.Cid, size int64) ([]byte, error) {
	if o.cut.Load() {
		return o.b.FetchChunk(ctx, c, size)
	}
	return o.origin.FetchChunk(ctx, c, size)
}

func (b blackhole) FetchChunk(ctx context.Context, _ cid.Cid, _ int64) ([]byte, error) {
	if b.stall <= 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	t := time.NewTimer(b.stall)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errStalled
	}
}

// TestSwarmSiteCut: three sites of two hosts download one package at
// once; the hosts of the last site cannot reach the origin (silent drops:
// their requests hang) but reach every other host. Every host completes:
// no claim of a cut host (its Fetching, a pull-through request it
// serves, its rank as a chunk's origin owner or fetcher) keeps the
// others from asking the origin for a chunk.
func TestSwarmSiteCut(t *testing.T) {
	for _, tc := range []struct {
		sites bool
		stall time.Duration
	}{{false, 0}, {true, 0}, {false, 3 * time.Second}, {true, 3 * time.Second}} {
		sites := tc.sites
		t.Run(fmt.Sprintf("sites=%v/stall=%v", sites, tc.stall), func(t *testing.T) {
			p := newTestPackage(t, 31, 128<<10, 8<<20)
			c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
			origin := newSwarmOrigin(p, 8<<20, 20*time.Millisecond)
			// The last site is cut off once one of its hosts holds a fifth
			// of the package, as the testbed's fault does.
			var cut atomic.Bool
			for s := range 3 {
				for h := range 2 {
					var src swarm.ChunkSource = origin
					if s == 2 {
						src = cutOrigin{origin, blackhole{stall: tc.stall}, &cut}
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
			go func() {
				for !cut.Load() && ctx.Err() == nil {
					for _, n := range c.nodes[4:] {
						if st, ok := n.swarm.DownloadState(p.c); ok && st.Done*5 >= p.size {
							cut.Store(true)
						}
					}
					time.Sleep(time.Millisecond)
				}
			}()
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
