package swarm_test

import (
	"context"
	"fmt"
	"io"
	"maps"
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

// startDownloads starts a download of p at every node of c and returns a
// function that waits for them all and gives their errors, in c's order.
func (c *cluster) startDownloads(ctx context.Context, p *testPackage) (wait func() []error) {
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for k, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[k] = n.download(ctx, p)
		}()
	}
	return func() []error {
		wg.Wait()
		return errs
	}
}

// flashCrowd has hosts nodes, each started by add, download p at once
// from origin, and returns the origin's copies of p.
func flashCrowd(t *testing.T, c *cluster, p *testPackage, origin *swarmOrigin) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := c.startDownloads(ctx, p)()
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

// deadMember adds to c a member that takes pull-through streams and
// never answers them (a fetcher that hangs), recording when each asker
// opened one.
func deadMember(c *cluster, id string) (opened func() map[swarm.PeerID][]time.Time) {
	mn := c.net.Node(swarm.PeerID(id), nil)
	var mu sync.Mutex
	seen := map[swarm.PeerID][]time.Time{}
	mn.SetPullHandler(func(from swarm.PeerID, st swarm.Stream) {
		mu.Lock()
		seen[from] = append(seen[from], time.Now())
		mu.Unlock()
		_, _ = io.Copy(io.Discard, st) // until the asker gives up
		st.Reset()
	})
	return func() map[swarm.PeerID][]time.Time {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(seen)
	}
}

// A member that takes pull-through requests and never answers costs each
// host one timeout: the chunks it ranks first for go to the next in rank
// once it has been silent for the idle timeout, the host ranks it no
// more (no pull to it starts later), and the origin still sends one copy.
func TestSwarmPullThroughDeadFetcher(t *testing.T) {
	const hosts = 4
	p := newTestPackage(t, 12, 16<<10, 160*16<<10)
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	origin := newSwarmOrigin(p, 0, 5*time.Millisecond)
	opened := deadMember(c, "dead")
	for k := range hosts {
		c.add(fmt.Sprintf("node%02d", k), origin, func(cfg *swarm.Config) { cfg.RequestTimeout = 4 * time.Second })
	}
	// The dead member ranks first for some chunks.
	deadFirst := rankedFirst(c, p, "dead")
	if deadFirst < 3 {
		t.Fatalf("the dead member ranks first for %d chunks; the test needs a few", deadFirst)
	}
	copies := flashCrowd(t, c, p, origin)
	idle := 2 * time.Second // pullIdle for RequestTimeout 4s
	got := opened()
	t.Logf("dead member first for %d of %d chunks: origin sent %.2f copies; pulls to it: %v", deadFirst, len(p.chunks), copies, got)
	for _, n := range c.nodes {
		ts := got[n.id]
		if len(ts) == 0 {
			continue // it knew the chunks from its peers first
		}
		for _, at := range ts[1:] {
			// A request waiting for the dead member's slot may be sent as
			// the first ones are found silent (the race detector widens
			// that moment to tens of milliseconds); one request per chunk,
			// each waiting its own timeout, would ask again at 2, 3, 4
			// idle timeouts.
			if at.Sub(ts[0]) >= idle*5/4 {
				t.Errorf("node %s asked the dead member again %v after its first request, past the idle timeout", n.id, at.Sub(ts[0]))
			}
		}
	}
	// About one: the dead member's chunks (about a fifth) are fetched
	// once each by whoever ranks next, but hosts whose idle timeouts end
	// together on a loaded machine may each fetch some of them; every
	// host fetching alone would be 4.
	if copies > 1.5 {
		t.Errorf("origin sent %.2f copies, want about one", copies)
	}
}

// A host alone (a network with no other member) fetches from the origin
// exactly as with cooperative fetching off: as many requests, as many at
// once.
func TestSwarmPullThroughLoneHost(t *testing.T) {
	p := newTestPackage(t, 13, 64<<10, 64*64<<10)
	var reqs, peaks [2]int64
	for k, pull := range []bool{true, false} {
		c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
		// A slow origin: every request of the window is open at once.
		origin := newSwarmOrigin(p, 0, 300*time.Millisecond)
		c.add("alone", origin, func(cfg *swarm.Config) { cfg.NoPullThrough = !pull })
		copies := flashCrowd(t, c, p, origin)
		if copies != 1 {
			t.Errorf("pull-through %v: origin sent %.2f copies to a lone host, want 1", pull, copies)
		}
		reqs[k], peaks[k] = origin.reqs.Load(), origin.peak.Load()
	}
	t.Logf("lone host: origin requests %v, at most %v at once (pull-through on, off)", reqs, peaks)
	if reqs[0] != reqs[1] || peaks[0] != peaks[1] {
		t.Errorf("lone host with pull-through: %d origin requests, %d at once; without: %d, %d", reqs[0], peaks[0], reqs[1], peaks[1])
	}
}

// Hosts that arrive once others hold the package take it from them: a
// late host asks each chunk's fetcher, which serves it from its store,
// and the origin sends nothing more. Without pull-through the late host
// asks the origin for the chunks before it finds the holders.
func TestSwarmPullThroughLateArrivals(t *testing.T) {
	p := newTestPackage(t, 14, 256<<10, 1<<20)
	for _, pull := range []bool{true, false} {
		t.Run(fmt.Sprintf("pull=%v", pull), func(t *testing.T) {
			c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
			origin := newSwarmOrigin(p, 0, 20*time.Millisecond)
			mod := func(cfg *swarm.Config) { cfg.NoPullThrough = !pull }
			for k := range 4 {
				c.add(fmt.Sprintf("early%d", k), origin, mod)
			}
			first := flashCrowd(t, c, p, origin)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for k := range 3 {
				n := c.add(fmt.Sprintf("late%d", k), origin, mod)
				if _, err := n.download(ctx, p); err != nil {
					t.Fatalf("late host %s: Download: %v", n.id, err)
				}
				checkCopy(t, n, p)
			}
			total := float64(origin.bytes.Load()) / float64(p.size)
			t.Logf("pull-through %v: origin copies %.2f for 4 hosts at once, %.2f after 3 late hosts", pull, first, total)
			if pull && total > 1.25 {
				t.Errorf("origin sent %.2f copies with late hosts, want about one", total)
			}
		})
	}
}

// A host arriving after the others hold the package, and ranked first
// for its chunk, asks the next in rank whether it holds the chunk before
// it asks the origin: it takes the chunk from it, and the origin sends
// nothing more.
func TestSwarmPullThroughLateFirstRanked(t *testing.T) {
	p := newTestPackage(t, 15, 1<<20, 1<<20)
	c := newCluster(t, transfertest.LinkShape{Latency: 5 * time.Millisecond})
	origin := newSwarmOrigin(p, 0, 0)
	var early []policy.Member
	for k := range 4 {
		n := c.add(fmt.Sprintf("early%d", k), origin, nil)
		early = append(early, policy.Member{ID: n.id})
	}
	flashCrowd(t, c, p, origin)
	key := policy.ChunkKey(p.m.UniqueChunks()[0].CID.Bytes())
	late := ""
	for k := range 1000 {
		id := fmt.Sprintf("late%d", k)
		if policy.NewFetchers(policy.Member{ID: swarm.PeerID(id)}, early).First(key) == swarm.PeerID(id) {
			late = id
			break
		}
	}
	if late == "" {
		t.Fatal("no late host ranks first")
	}
	n := c.add(late, origin, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := n.download(ctx, p); err != nil {
		t.Fatalf("late host: Download: %v", err)
	}
	checkCopy(t, n, p)
	if copies := float64(origin.bytes.Load()) / float64(p.size); copies > 1 {
		t.Errorf("origin sent %.2f copies: the late host ranked first fetched from it", copies)
	}
}

// Two hosts fetch 300 one-chunk packages at once: each asks the other
// for the chunks it ranks first for, far more at once than the
// fetcher's per-peer limit; the requests wait their turn at the asker
// instead of being refused and sent to the origin, and the origin sends
// about one copy of each package.
func TestSwarmPullThroughManyPackages(t *testing.T) {
	const pkgs = 300
	c := newCluster(t, transfertest.LinkShape{Latency: 2 * time.Millisecond})
	var all []*testPackage
	chunks := map[cid.Cid][]byte{}
	var total int64
	for k := range pkgs {
		p := newTestPackage(t, uint64(100+k), 16<<10, 16<<10)
		all = append(all, p)
		maps.Copy(chunks, p.chunks)
		total += p.size
	}
	origin := newSwarmOrigin(&testPackage{chunks: chunks}, 0, 200*time.Millisecond)
	a := c.add("a", origin, nil)
	b := c.add("b", origin, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2*pkgs)
	for _, n := range []*node{a, b} {
		for _, p := range all {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := n.download(ctx, p); err != nil {
					errs <- fmt.Errorf("node %s: %w", n.id, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	copies := float64(origin.bytes.Load()) / float64(total)
	t.Logf("2 hosts, %d one-chunk packages at once: origin sent %.2f copies", pkgs, copies)
	if copies > 1.1 {
		t.Errorf("origin sent %.2f copies of the upgrade, want about one", copies)
	}
}

// gatedOrigin holds every origin request until open is closed, counting
// the distinct chunks asked of it meanwhile.
type gatedOrigin struct {
	*swarmOrigin
	open  chan struct{}
	mu    sync.Mutex
	asked map[cid.Cid]bool
}

func (o *gatedOrigin) FetchChunk(ctx context.Context, c cid.Cid, size int64) ([]byte, error) {
	o.mu.Lock()
	o.asked[c] = true
	o.mu.Unlock()
	select {
	case <-o.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return o.swarmOrigin.FetchChunk(ctx, c, size)
}

func (o *gatedOrigin) distinct() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.asked)
}

// In a flash crowd each host first asks the origin for the chunks it
// ranks first for, before it asks other fetchers for theirs, and with
// its whole origin window (no slow start with pull-through): with the
// origin holding every request, it is asked for every chunk of the
// package at once, not every host asking the first chunk of the global
// order of its fetcher while the origin has one request open.
func TestSwarmPullThroughOwnChunksFirst(t *testing.T) {
	const hosts = 8
	p := newTestPackage(t, 16, 16<<10, 64*16<<10)
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	origin := &gatedOrigin{swarmOrigin: newSwarmOrigin(p, 0, 0), open: make(chan struct{}), asked: map[cid.Cid]bool{}}
	var ms []policy.Member
	for k := range hosts {
		// A long request timeout: no pull-through claim expires while the
		// origin holds the requests.
		n := c.add(fmt.Sprintf("node%02d", k), origin, func(cfg *swarm.Config) { cfg.RequestTimeout = 20 * time.Second })
		ms = append(ms, policy.Member{ID: n.id})
	}
	// Each host's share, within its window (64 requests for 16 KiB
	// chunks): every chunk.
	want := len(p.chunks)
	// Counted while the downloads run (bounded: 5 s at most), then the
	// origin is let go.
	var got int
	counted := make(chan struct{})
	go func() {
		defer close(counted)
		defer close(origin.open)
		for k := 0; k < 500 && got < want; k++ {
			time.Sleep(10 * time.Millisecond)
			got = origin.distinct()
		}
	}()
	copies := flashCrowd(t, c, p, origin.swarmOrigin)
	<-counted
	t.Logf("%d hosts, %d chunks: %d distinct chunks asked of the held origin; %.2f copies", hosts, len(p.chunks), got, copies)
	if got < want {
		t.Errorf("the held origin was asked for %d distinct chunks, want %d", got, want)
	}
	// About one: under the race detector a request released with the
	// others may meet a fetcher that has not answered in time.
	if copies > 1.1 {
		t.Errorf("origin sent %.2f copies, want about 1", copies)
	}
}

// A host ranked first for a chunk that it could not fetch for an early
// host (it did not know the package yet), and that the next in rank does
// not hold, takes the chunk from the early host when it downloads the
// package later: it remembers who asked, and the origin sends one copy.
func TestSwarmPullThroughAskerHolds(t *testing.T) {
	p := newTestPackage(t, 18, 1<<20, 1<<20)
	key := policy.ChunkKey(p.m.UniqueChunks()[0].CID.Bytes())
	// Names such that owner ranks first for the chunk, then third, then
	// early.
	var owner, third, early string
	for k := 0; k < 1000 && early == ""; k++ {
		ids := []string{fmt.Sprintf("o%d", k), fmt.Sprintf("t%d", k), fmt.Sprintf("e%d", k)}
		var ms []policy.Member
		for _, id := range ids {
			ms = append(ms, policy.Member{ID: swarm.PeerID(id)})
		}
		b := policy.NewFetchers(ms[2], ms).Before(key, 0, nil)
		if len(b) == 2 && b[0] == ms[0].ID && b[1] == ms[1].ID {
			owner, third, early = ids[0], ids[1], ids[2]
		}
	}
	if early == "" {
		t.Fatal("no names rank owner, third, early")
	}
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	origin := newSwarmOrigin(p, 0, 20*time.Millisecond)
	// The owner and the third resolve no manifest a peer names (their
	// metadata does not publish the package yet): they refuse the early
	// host, which fetches the chunk from the origin itself.
	unknown := func(cfg *swarm.Config) { cfg.Manifests = transfertest.NewMemManifests() }
	o := c.add(owner, origin, unknown)
	c.add(third, origin, unknown)
	// The early host's provider record reaches nobody: the owner learns
	// of it as a holder only from its own memory of who asked.
	e := c.add(early, origin, func(cfg *swarm.Config) { cfg.Discovery = transfertest.NewMemDiscovery().For(swarm.PeerID(early)) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.download(ctx, p); err != nil {
		t.Fatalf("early host: Download: %v", err)
	}
	if _, err := o.download(ctx, p); err != nil {
		t.Fatalf("owner: Download: %v", err)
	}
	checkCopy(t, o, p)
	if copies := float64(origin.bytes.Load()) / float64(p.size); copies > 1 {
		t.Errorf("origin sent %.2f copies: the owner fetched the chunk the early host held", copies)
	}
}

// A fetcher that does not know a package yet, asked for a chunk an
// earlier host asked it for, names that host: a late host takes the
// chunk from it instead of the origin (arrivals a few seconds apart,
// the fetchers idle and their metadata not yet fresh).
func TestSwarmPullThroughRefusalNamesAsker(t *testing.T) {
	p := newTestPackage(t, 19, 1<<20, 1<<20)
	key := policy.ChunkKey(p.m.UniqueChunks()[0].CID.Bytes())
	// Names ranked owner, third, late, early for the chunk.
	var owner, third, late, early string
	for k := 0; k < 5000 && early == ""; k++ {
		ids := []string{fmt.Sprintf("o%d", k), fmt.Sprintf("t%d", k), fmt.Sprintf("l%d", k), fmt.Sprintf("e%d", k)}
		var ms []policy.Member
		for _, id := range ids {
			ms = append(ms, policy.Member{ID: swarm.PeerID(id)})
		}
		b := policy.NewFetchers(ms[3], ms).Before(key, 0, nil)
		if len(b) == 3 && b[0] == ms[0].ID && b[1] == ms[1].ID && b[2] == ms[2].ID {
			owner, third, late, early = ids[0], ids[1], ids[2], ids[3]
		}
	}
	if early == "" {
		t.Fatal("no names rank owner, third, late, early")
	}
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	origin := newSwarmOrigin(p, 0, 20*time.Millisecond)
	// Only the early host resolves the package for peers; nobody finds
	// its provider record.
	unknown := func(cfg *swarm.Config) { cfg.Manifests = transfertest.NewMemManifests() }
	c.add(owner, origin, unknown)
	c.add(third, origin, unknown)
	l := c.add(late, origin, func(cfg *swarm.Config) {
		unknown(cfg)
		cfg.Discovery = transfertest.NewMemDiscovery().For(swarm.PeerID(late))
	})
	e := c.add(early, origin, func(cfg *swarm.Config) { cfg.Discovery = transfertest.NewMemDiscovery().For(swarm.PeerID(early)) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.download(ctx, p); err != nil {
		t.Fatalf("early host: Download: %v", err)
	}
	if _, err := l.download(ctx, p); err != nil {
		t.Fatalf("late host: Download: %v", err)
	}
	checkCopy(t, l, p)
	if copies := float64(origin.bytes.Load()) / float64(p.size); copies > 1 {
		t.Errorf("origin sent %.2f copies: the late host fetched the chunk the early host held", copies)
	}
}

// countingResolver counts ResolveManifest calls; it resolves nothing.
type countingResolver struct{ calls atomic.Int64 }

func (r *countingResolver) ResolveManifest(ctx context.Context, c cid.Cid) (*metadata.Manifest, error) {
	r.calls.Add(1)
	return nil, fmt.Errorf("manifest %s: %w", c, metadata.ErrNotFound)
}

// A host asked whether it holds a chunk (the ask of a first-ranked host
// before the origin) answers from what it knows: it does not resolve a
// package it does not know (a metadata refresh the asker's origin
// request would wait for), since it cannot hold its chunks.
func TestSwarmPullThroughHeldOnlyResolvesNothing(t *testing.T) {
	p := newTestPackage(t, 20, 1<<20, 1<<20)
	key := policy.ChunkKey(p.m.UniqueChunks()[0].CID.Bytes())
	var first, next string
	for k := 0; k < 1000 && first == ""; k++ {
		a, b := fmt.Sprintf("f%d", k), fmt.Sprintf("n%d", k)
		ms := []policy.Member{{ID: swarm.PeerID(a)}, {ID: swarm.PeerID(b)}}
		if policy.NewFetchers(ms[0], ms).First(key) == ms[0].ID {
			first, next = a, b
		}
	}
	if first == "" {
		t.Fatal("no names rank first before next")
	}
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	origin := newSwarmOrigin(p, 0, 0)
	f := c.add(first, origin, nil)
	res := &countingResolver{}
	c.add(next, origin, func(cfg *swarm.Config) { cfg.Manifests = res })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.download(ctx, p); err != nil {
		t.Fatalf("Download: %v", err)
	}
	if n := res.calls.Load(); n != 0 {
		t.Errorf("the next in rank resolved the manifest %d times for held-only asks, want 0", n)
	}
}

// stallingMember adds to c a member that takes pull-through streams and
// keeps saying it is working, never sending the chunk (nor refusing a
// held-only ask), until the asker resets the stream.
func stallingMember(c *cluster, id string) {
	mn := c.net.Node(swarm.PeerID(id), nil)
	mn.SetPullHandler(func(from swarm.PeerID, st swarm.Stream) {
		defer st.Reset()
		for range 600 { // 2 minutes at most
			if _, err := st.Write([]byte{0}); err != nil { // pullWorking
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// A host whose pull-through request waits at a fetcher takes the chunk
// from a peer once the peer says it has it: the request is cancelled,
// not left to the fetcher until the asker's claim on it expires
// (2 x RequestTimeout, a minute here).
func TestSwarmPullThroughPeerOvertakes(t *testing.T) {
	p := newTestPackage(t, 22, 64<<10, 32*64<<10)
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	origin := newSwarmOrigin(p, 0, 0)
	stallingMember(c, "stall")
	mod := func(cfg *swarm.Config) { cfg.RequestTimeout = 30 * time.Second }
	h := c.add("holder", origin, mod)
	h.seed(p)
	l := c.add("late", origin, mod)
	ms := []policy.Member{{ID: "stall"}, {ID: "holder"}, {ID: "late"}}
	f := policy.NewFetchers(ms[2], ms)
	stalled, own := 0, 0
	for _, ref := range p.m.UniqueChunks() {
		switch f.First(policy.ChunkKey(ref.CID.Bytes())) {
		case "stall":
			stalled++
		case "late":
			own++
		}
	}
	if stalled == 0 {
		t.Fatal("the stalling member ranks first for no chunk")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := l.download(ctx, p); err != nil {
		t.Fatalf("late host: Download: %v (the stalling fetcher ranks first for %d chunks)", err, stalled)
	}
	checkCopy(t, l, p)
	t.Logf("stalling fetcher first for %d of %d chunks", stalled, len(p.chunks))
	// The stalled chunks come from the holder, never the origin. The
	// late host may ask the origin for a chunk it ranks first for before
	// the holder's Have reaches it (a race on a loaded machine), so the
	// bound is its own share.
	if copies, most := float64(origin.bytes.Load())/float64(p.size), float64(own)/float64(len(p.chunks)); copies > most {
		t.Errorf("origin sent %.2f copies, want at most the late host's own share %.2f (the holder has the package)", copies, most)
	}
}

// rankedFirst counts the chunks of p that member, beside the cluster's
// nodes, ranks first for.
func rankedFirst(c *cluster, p *testPackage, member swarm.PeerID) int {
	ms := []policy.Member{{ID: member}}
	for _, n := range c.nodes[1:] {
		ms = append(ms, policy.Member{ID: n.id})
	}
	f := policy.NewFetchers(policy.Member{ID: c.nodes[0].id}, ms)
	n := 0
	for _, ref := range p.m.UniqueChunks() {
		if f.First(policy.ChunkKey(ref.CID.Bytes())) == member {
			n++
		}
	}
	return n
}

// A package of one chunk comes through its fetcher: the hosts of a flash
// crowd open no session for it (each would cost a stream, a Hello and two
// have-maps on both sides for a chunk already on its way), and say so in
// SessionsDeferred. Without the deferral each host opens sessions to the
// holders it finds (two at least).
func TestSwarmPullThroughOneChunkDefersSessions(t *testing.T) {
	const hosts = 8
	p := newTestPackage(t, 16, 256<<10, 256<<10)
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	origin := newSwarmOrigin(p, 0, 20*time.Millisecond)
	for k := range hosts {
		c.add(fmt.Sprintf("node%02d", k), origin, nil)
	}
	if copies := flashCrowd(t, c, p, origin); copies > 1 {
		t.Errorf("origin sent %.2f copies, want 1", copies)
	}
	var ctr swarm.Counters
	for _, n := range c.nodes {
		ctr = ctr.Add(n.swarm.Counters())
	}
	t.Logf("%d hosts, one chunk: %d sessions opened, %d deferred and not opened, %d pull streams", hosts, ctr.SessionStreamsOpened, ctr.SessionsDeferred, ctr.PullStreams)
	// A host whose pull answer is slow past the deferral (a loaded
	// machine, the race detector) opens its sessions: a few may.
	if ctr.SessionStreamsOpened >= hosts || ctr.SessionsDeferred == 0 {
		t.Errorf("%d sessions opened and %d deferred by %d hosts of a one-chunk package, want fewer than one per host opened", ctr.SessionStreamsOpened, ctr.SessionsDeferred, hosts)
	}
}

// A package of one chunk whose fetcher says nothing still gets its
// sessions once the deferral is over: a host that joins when another
// holds the chunk, and whose pull-through request hangs on a dead member
// ranked first, opens a session to the holder after the deferral and
// takes the chunk from it, without waiting for the pull's idle timeout.
func TestSwarmPullThroughOneChunkSessionsAfterDeferral(t *testing.T) {
	var p *testPackage
	var c *cluster
	var origin *swarmOrigin
	for seed := uint64(17); ; seed++ {
		p = newTestPackage(t, seed, 64<<10, 64<<10)
		c = newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
		origin = newSwarmOrigin(p, 0, 5*time.Millisecond)
		c.add("holder", origin, nil)
		if rankedFirst(c, p, "dead") == 1 {
			break
		}
		if seed > 200 {
			t.Fatal("no package whose chunk the dead member ranks first for")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.nodes[0].download(ctx, p); err != nil {
		t.Fatalf("holder: Download: %v", err)
	}
	deadMember(c, "dead")
	// A long idle timeout: the chunk must come from the holder's session.
	late := c.add("late", origin, func(cfg *swarm.Config) { cfg.RequestTimeout = 20 * time.Second })
	st, err := late.download(ctx, p)
	if err != nil {
		t.Fatalf("late host: Download: %v", err)
	}
	checkCopy(t, late, p)
	ctr := late.swarm.Counters()
	t.Logf("late host: %v, %d from peers, %d from origin; %d sessions opened, %d pull streams", st.Elapsed, st.FromPeers, st.FromOrigin, ctr.SessionStreamsOpened, ctr.PullStreams)
	if ctr.SessionStreamsOpened == 0 {
		t.Errorf("the late host opened no session while its fetcher said nothing")
	}
	if origin.reqs.Load() != 1 {
		t.Errorf("origin asked %d times, want once (the holder's)", origin.reqs.Load())
	}
}
