package swarm_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storkpm/stork/transfer/policy"
	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// rankedIDs returns peer IDs, one per prefix (with a common number), that
// every one of them ranks in the prefixes' order for p's first chunk.
func rankedIDs(t *testing.T, p *testPackage, prefixes ...string) []swarm.PeerID {
	t.Helper()
	key := policy.ChunkKey(p.m.UniqueChunks()[0].CID.Bytes())
	for k := range 10000 {
		ids := make([]swarm.PeerID, len(prefixes))
		for j, pre := range prefixes {
			ids[j] = swarm.PeerID(fmt.Sprintf("%s%d", pre, k))
		}
		ordered := true
		for j, id := range ids {
			var others []policy.Member
			for _, o := range ids {
				if o != id {
					others = append(others, policy.Member{ID: o})
				}
			}
			before := policy.NewFetchers(policy.Member{ID: id}, others).Before(key, len(ids), nil)
			ordered = ordered && slices.Equal(before, ids[:j])
		}
		if ordered {
			return ids
		}
	}
	t.Fatalf("no IDs ranked in the order %v", prefixes)
	return nil
}

// fakeFetcher adds to c a member that serves pull-through streams with
// serve (the stream is reset when serve returns); it returns the count
// of streams opened to it.
func fakeFetcher(c *cluster, id swarm.PeerID, serve func(from swarm.PeerID, st swarm.Stream)) *atomic.Int64 {
	var n atomic.Int64
	mn := c.net.Node(id, nil)
	mn.SetPullHandler(func(from swarm.PeerID, st swarm.Stream) {
		n.Add(1)
		serve(from, st)
		st.Reset()
	})
	return &n
}

// pullHead is a fetcher's answer up to a chunk's bytes: pullOK and the
// chunk's length (after a pullWorking, as HandlePull sends it first).
func pullHead(n int) []byte {
	return binary.AppendUvarint([]byte{0, 1}, uint64(n))
}

// waitFor polls cond every millisecond until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() bool) bool {
	for !cond() {
		if ctx.Err() != nil {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// A pull-through answer cut part way, once a session peer holding the
// chunk is sending it, is not a reason to ask the origin: the chunk comes
// from the session. The fetcher ranked first starts sending the chunk
// and is cut off once the session's copy is on its way (as when a host
// too loaded to feed its pull-through streams finds them reset); the
// host ranked next, the asker, used to fetch the chunk from the origin
// as the fetcher's fallback.
func TestSwarmPullCutSessionBrings(t *testing.T) {
	p := newTestPackage(t, 41, 256<<10, 256<<10)
	data := p.chunks[p.m.UniqueChunks()[0].CID]
	ids := rankedIDs(t, p, "fetcher", "asker", "seeder")
	f, a, s := ids[0], ids[1], ids[2]
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	// The seeder's session is slow: its chunk takes 2s to arrive.
	c.net.SetLink(s, a, transfertest.LinkShape{Latency: time.Millisecond, Rate: 128 << 10})
	origin := newSwarmOrigin(p, 0, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cut atomic.Bool
	asked := fakeFetcher(c, f, func(from swarm.PeerID, st swarm.Stream) {
		if cut.Load() {
			_, _ = io.Copy(io.Discard, st) // silent, until the asker gives up
			return
		}
		// Nothing until the asker has the seeder's have-map (a pull
		// answered by then would be cancelled, overtaken by the session).
		waitFor(ctx, func() bool { return c.net.Bytes(s, a) > 0 })
		time.Sleep(20 * time.Millisecond)
		if _, err := st.Write(append(pullHead(len(data)), data[:64<<10]...)); err != nil {
			return
		}
		// Cut once the seeder is sending the chunk.
		waitFor(ctx, func() bool { return c.net.Bytes(s, a) > 64<<10 })
		cut.Store(true)
	})
	cfg := func(cfg *swarm.Config) { cfg.RequestTimeout = 4 * time.Second }
	seeder := c.add(string(s), origin, cfg)
	seeder.seed(p)
	asker := c.add(string(a), origin, cfg)
	if _, err := asker.download(ctx, p); err != nil {
		t.Fatalf("Download: %v", err)
	}
	checkCopy(t, asker, p)
	ctr := asker.swarm.Counters()
	t.Logf("fetcher asked %d times, cut %v; origin requests %d; asker's counters %+v", asked.Load(), cut.Load(), origin.reqs.Load(), ctr)
	if !cut.Load() {
		t.Fatalf("the fetcher's answer was not cut (asked %d times): the test no longer shows the race", asked.Load())
	}
	if n := origin.reqs.Load(); n != 0 {
		t.Errorf("origin asked %d times for a chunk a session peer was sending; want 0", n)
	}
	if ctr.OriginFallbacks != 0 || ctr.PullsSilent != 0 {
		t.Errorf("OriginFallbacks %d, PullsSilent %d after a cut answer; want 0, 0", ctr.OriginFallbacks, ctr.PullsSilent)
	}
}

// The host ranked next for a chunk, asked for it by a host that gave up
// on the first-ranked fetcher, waits for the copy that fetcher is sending
// to its own download instead of fetching a second one from the origin,
// for as long as that copy keeps coming (past RequestTimeout).
func TestSwarmPullNextRankAwaitsOwnPull(t *testing.T) {
	p := newTestPackage(t, 42, 256<<10, 256<<10)
	data := p.chunks[p.m.UniqueChunks()[0].CID]
	const timeout = 4 * time.Second // RequestTimeout
	ids := rankedIDs(t, p, "fetcher", "next", "asker")
	f, b, a := ids[0], ids[1], ids[2]
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	origin := newSwarmOrigin(p, 0, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var gaveUp atomic.Bool // the asker gave up on the fetcher
	asked := fakeFetcher(c, f, func(from swarm.PeerID, st swarm.Stream) {
		if from != b {
			// Silent to the asker (too loaded to answer it in time).
			_, _ = io.Copy(io.Discard, st)
			gaveUp.Store(true)
			return
		}
		// To the next in rank: the chunk, slowly, until the asker has
		// given up on us and a RequestTimeout after (or the origin was
		// asked).
		if _, err := st.Write(append(pullHead(len(data)), data[:1<<10]...)); err != nil {
			return
		}
		off := 1 << 10
		var since time.Time
		for ctx.Err() == nil && origin.reqs.Load() == 0 && (since.IsZero() || time.Since(since) < timeout+500*time.Millisecond) {
			time.Sleep(100 * time.Millisecond)
			if _, err := st.Write(data[off : off+1<<10]); err != nil {
				return
			}
			off += 1 << 10
			if since.IsZero() && gaveUp.Load() {
				since = time.Now()
			}
		}
		_, _ = st.Write(data[off:])
		_, _ = io.Copy(io.Discard, st) // until the asker closes
	})
	// pullIdle 2s: the asker gives up on the fetcher after it; pullClaim
	// 8s: it waits that long for the next in rank, which says it works.
	cfg := func(cfg *swarm.Config) { cfg.RequestTimeout = timeout }
	next := c.add(string(b), origin, cfg)
	asker := c.add(string(a), origin, cfg)
	errs := c.startDownloads(ctx, p)()
	for k, n := range []*node{next, asker} {
		if errs[k] != nil {
			t.Fatalf("node %s: Download: %v", n.id, errs[k])
		}
		checkCopy(t, n, p)
	}
	t.Logf("fetcher asked %d times; origin requests %d; next's counters %+v; asker's %+v", asked.Load(), origin.reqs.Load(), next.swarm.Counters(), asker.swarm.Counters())
	if !gaveUp.Load() {
		t.Fatalf("the asker did not give up on the fetcher: the test no longer shows the race")
	}
	if n := origin.reqs.Load(); n != 0 {
		t.Errorf("origin asked %d times for a chunk the next in rank was receiving; want 0", n)
	}
}
