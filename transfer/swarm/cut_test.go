package swarm_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
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
			wait := c.startDownloads(ctx, p)
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
			errs := wait()
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

// fetchingObserver is a peer that holds nothing and records when each
// Fetching message arrives.
func fetchingObserver(p *testPackage, mu *sync.Mutex, at *[]time.Time) transfertest.StreamHandler {
	n := len(p.m.UniqueChunks())
	return func(from swarm.PeerID, st swarm.Stream) {
		defer st.Close()
		br := bufio.NewReader(st)
		m, err := swarm.ReadMessage(br, swarm.WireLimits{})
		if err != nil || m.Type != swarm.MsgHello {
			st.Reset()
			return
		}
		bw := bufio.NewWriter(st)
		swarm.WriteMessage(bw, &swarm.Message{Type: swarm.MsgHave, Manifest: p.c, Count: n, Have: policy.NewBitfield(n)})
		if bw.Flush() != nil {
			return
		}
		for {
			m, err := swarm.ReadMessage(br, swarm.WireLimits{})
			if err != nil {
				return
			}
			if m.Type == swarm.MsgFetching {
				mu.Lock()
				*at = append(*at, time.Now())
				mu.Unlock()
			}
		}
	}
}

// TestSwarmOutageProbesNotAnnounced: a host whose origin is unreachable
// probes it, but does not tell its peers it is fetching the probed
// chunks: the claim would keep peers that reach the origin off them.
func TestSwarmOutageProbesNotAnnounced(t *testing.T) {
	t.Parallel()
	p := newTestPackage(t, 33, 64<<10, 1<<20)
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	var mu sync.Mutex
	var at []time.Time
	mn := c.net.Node("observer", fetchingObserver(p, &mu, &at))
	c.disc.For(mn.ID()).Provide(context.Background(), p.c)
	origin := newSwarmOrigin(p, 0, time.Millisecond)
	origin.down.Store(true)
	n := c.add("dl", origin, func(cfg *swarm.Config) { cfg.NoPullThrough = true })
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var known atomic.Int64 // origin requests when the outage was known
	known.Store(-1)
	go func() {
		for ctx.Err() == nil {
			if st, ok := n.swarm.DownloadState(p.c); ok && !st.WaitingOriginSince.IsZero() {
				// Probes from here on: the outage is known. Fetching
				// messages sent before it have 1 ms of link to cross.
				time.Sleep(50 * time.Millisecond)
				mu.Lock()
				at = at[:0]
				known.Store(origin.reqs.Load())
				mu.Unlock()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	_, err := n.download(ctx, p)
	if err == nil {
		t.Fatal("download completed with the origin down and no peer holding anything")
	}
	mu.Lock()
	defer mu.Unlock()
	if k := known.Load(); k < 0 || origin.reqs.Load()-k < 2 {
		t.Fatalf("%d origin requests, %d when the outage was known: too few probes for the test to show anything", origin.reqs.Load(), k)
	}
	if len(at) != 0 {
		t.Errorf("%d Fetching messages sent while the origin was known unreachable, want 0", len(at))
	}
}

// scriptedOrigin fails the request for chunk fail at once, as an origin
// that cannot be reached (errOriginDown), and leaves every other request
// hanging until its context ends (silent drops), or, for chunk late,
// until release is closed: then it sends the chunk.
type scriptedOrigin struct {
	fail, late cid.Cid
	release    chan struct{}
	chunks     map[cid.Cid][]byte
	open       atomic.Int64 // requests hanging now
	sent       atomic.Int64 // chunks sent
}

func (o *scriptedOrigin) FetchChunk(ctx context.Context, c cid.Cid, _ int64) ([]byte, error) {
	if c.Equals(o.fail) {
		return nil, errOriginDown
	}
	o.open.Add(1)
	defer o.open.Add(-1)
	var release chan struct{}
	if c.Equals(o.late) {
		release = o.release
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-release:
		o.sent.Add(1)
		return o.chunks[c], nil
	}
}

// pullStatus asks f for chunk i (ref) of manifest on a stream from mn
// and returns the final status byte (pullWorking keepalives skipped);
// an error if none came before ctx ended.
func pullStatus(ctx context.Context, mn *transfertest.MemNode, f swarm.PeerID, manifest cid.Cid, i int, ref metadata.ChunkRef) (byte, error) {
	st, err := mn.OpenPull(ctx, f)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	defer context.AfterFunc(ctx, func() { st.Reset() })()
	if _, err := st.Write(pullRequestWithRef(manifest, i, ref)); err != nil {
		return 0, err
	}
	br := bufio.NewReader(st)
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		if b != 0 { // pullWorking
			return b, nil
		}
	}
}

// A fetcher that has found its origin unreachable (a request failed as
// an outage) says so to its askers at once: the request already waiting
// on its hanging origin is answered "origin down" as the outage is
// found, and a request that comes after is answered so without waiting
// on the origin. Today's fetcher left both waiting until its origin
// requests end (the origin client's stall timeout; here never before
// OriginRequestTimeout, 5 min): every asker of a host in a site cut off
// from the origin waited that long, once per chunk. The origin request
// the first asker stopped waiting for goes on: the chunk, if it comes
// after all, is served to the next asker.
func TestSwarmPullOriginKnownDown(t *testing.T) {
	t.Parallel()
	const pullOriginDown = 4 // the wire's status byte (pull.go)
	p := newTestPackage(t, 35, 64<<10, 3*64<<10)
	refs := p.m.UniqueChunks()
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	origin := &scriptedOrigin{fail: refs[0].CID, late: refs[1].CID, release: make(chan struct{}), chunks: p.chunks}
	f := c.add("fetcher", origin, nil)
	c.repo.Publish(p.c, p.m)
	asker := c.net.Node("asker", nil)
	// A hang guard, not a speed target: without the outage known, the
	// requests below wait for OriginRequestTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type answer struct {
		b   byte
		err error
	}
	waiting := make(chan answer, 1)
	go func() {
		b, err := pullStatus(ctx, asker, f.id, p.c, 1, refs[1])
		waiting <- answer{b, err}
	}()
	for origin.open.Load() == 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if b, err := pullStatus(ctx, asker, f.id, p.c, 0, refs[0]); err != nil || b != pullOriginDown {
		t.Fatalf("chunk 0, whose origin request fails: status %d, err %v; want %d (origin down)", b, err, pullOriginDown)
	}
	if a := <-waiting; a.err != nil || a.b != pullOriginDown {
		t.Errorf("chunk 1, whose origin request hangs, asked before the outage was found: status %d, err %v; want %d (origin down) once it is", a.b, a.err, pullOriginDown)
	}
	if b, err := pullStatus(ctx, asker, f.id, p.c, 2, refs[2]); err != nil || b != pullOriginDown {
		t.Errorf("chunk 2, asked after the outage was found: status %d, err %v; want %d (origin down) at once", b, err, pullOriginDown)
	}
	// Asked again until it comes (answered "origin down" at once until
	// then: chunk 2's probe hangs, and no other is sent meanwhile).
	close(origin.release)
	var b byte
	var err error
	for b != 1 && err == nil {
		b, err = pullStatus(ctx, asker, f.id, p.c, 1, refs[1])
		time.Sleep(time.Millisecond)
	}
	if err != nil || origin.sent.Load() != 1 {
		t.Errorf("chunk 1 asked again after its origin request was let go: err %v, the origin sent it %d times; want the chunk, from the request the first asker stopped waiting for", err, origin.sent.Load())
	}
}
