package swarm_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/storkpm/stork/transfer/policy"
	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// busyMember adds to c a fetcher that fetches every chunk it is asked
// for from origin at once, then answers like a loaded host: the
// requests for odd chunks hear nothing (not even pullWorking) for
// silence, those for even ones hear pullWorking every 100ms for hold;
// then each gets its chunk. Held-only asks are refused.
func busyMember(c *cluster, id string, p *testPackage, origin *swarmOrigin, silence, hold time.Duration) {
	refs := p.m.UniqueChunks()
	mn := c.net.Node(swarm.PeerID(id), nil)
	mn.SetPullHandler(func(from swarm.PeerID, st swarm.Stream) {
		defer st.Close()
		br := bufio.NewReader(st)
		n, err := binary.ReadUvarint(br)
		if err != nil || n > 128 {
			st.Reset()
			return
		}
		if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
			st.Reset()
			return
		}
		i, err := binary.ReadUvarint(br)
		flags, ferr := br.ReadByte()
		if err != nil || ferr != nil || i >= uint64(len(refs)) {
			st.Reset()
			return
		}
		if flags&1 != 0 { // pullHeldOnly: we hold nothing
			_, _ = st.Write([]byte{2}) // pullRefused
			return
		}
		data, err := origin.FetchChunk(context.Background(), refs[i].CID, refs[i].Length)
		if err != nil {
			st.Reset()
			return
		}
		if i%2 == 1 {
			time.Sleep(silence)
		} else {
			for end := time.Now().Add(hold); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
				if _, err := st.Write([]byte{0}); err != nil { // pullWorking
					return
				}
			}
		}
		msg := binary.AppendUvarint([]byte{1}, uint64(len(data))) // pullOK
		_, _ = st.Write(append(msg, data...))
	})
}

// A fetcher that is alive (answering some of a host's pull-through
// requests with keepalives) but slow to say anything about others keeps
// all of them: the host waits for the silent ones rather than asking the
// origin for their chunks again. Silence counts per fetcher, not per
// stream (pullalive.go).
func TestSwarmPullThroughBusyFetcherKeepsAskers(t *testing.T) {
	p := newTestPackage(t, 31, 16<<10, 32*16<<10)
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	origin := newSwarmOrigin(p, 0, 0)
	// RequestTimeout 2s: pullIdle 1s, pullClaim 4s. The odd chunks'
	// requests are silent for 1.6 idle periods, while the even ones hear
	// keepalives for 3 (so that an odd request sent a little after the
	// first ones still has live neighbours all along), and then all get
	// their chunks, within the claim.
	busyMember(c, "busy", p, origin, 1600*time.Millisecond, 3*time.Second)
	a := c.add("a", origin, nil)
	ms := []policy.Member{{ID: "busy"}, {ID: "a"}}
	f := policy.NewFetchers(ms[1], ms)
	odd := 0
	for k, ref := range p.m.UniqueChunks() {
		if k%2 == 1 && f.First(policy.ChunkKey(ref.CID.Bytes())) == "busy" {
			odd++
		}
	}
	if odd < 3 {
		t.Fatalf("the busy fetcher ranks first for %d odd chunks; the test needs a few", odd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.download(ctx, p); err != nil {
		t.Fatalf("Download: %v", err)
	}
	checkCopy(t, a, p)
	ctr := a.swarm.Counters()
	copies := float64(origin.bytes.Load()) / float64(p.size)
	t.Logf("busy fetcher first for %d odd chunks; origin sent %.2f copies; counters %+v", odd, copies, ctr)
	if ctr.PullsSilent != 0 || ctr.OriginFallbacks != 0 {
		t.Errorf("%d pull-through requests to a live fetcher given up as silent, %d chunks asked of the origin again; want none", ctr.PullsSilent, ctr.OriginFallbacks)
	}
	if copies > 1 {
		t.Errorf("origin sent %.2f copies, want one: every chunk is fetched once, by the busy fetcher or by a", copies)
	}
}
