package swarm_test

import (
	"bufio"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/storkpm/stork/transfer/policy"
	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// greedyPeer speaks the wire protocol by hand: on one stream per package
// it asks for every chunk dup times in each Request, and asks again every
// 50 ms; it reads what comes and counts the chunks it receives whole.
type greedyPeer struct {
	mu    sync.Mutex
	whole map[[2]int]int // (package, chunk index) -> times received whole
	wg    sync.WaitGroup
}

func startGreedyPeer(ctx context.Context, t *testing.T, mn *transfertest.MemNode, server swarm.PeerID, pkgs []*testPackage, dup int) *greedyPeer {
	t.Helper()
	g := &greedyPeer{whole: make(map[[2]int]int)}
	for k, p := range pkgs {
		st, err := mn.OpenStream(ctx, server)
		if err != nil {
			t.Fatal(err)
		}
		n := len(p.m.UniqueChunks())
		var idx []uint32
		for i := range n {
			for range dup {
				idx = append(idx, uint32(i))
			}
		}
		hello, _ := swarm.AppendMessage(nil, &swarm.Message{Type: swarm.MsgHello, Manifest: p.c})
		hello, _ = swarm.AppendMessage(hello, &swarm.Message{Type: swarm.MsgHave, Manifest: p.c, Count: n, Have: policy.NewBitfield(n)})
		req, _ := swarm.AppendMessage(nil, &swarm.Message{Type: swarm.MsgRequest, Indices: idx})
		g.wg.Add(2)
		go func() {
			defer g.wg.Done()
			defer st.Reset()
			if _, err := st.Write(hello); err != nil {
				return
			}
			for {
				if _, err := st.Write(req); err != nil {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
		go func() {
			defer g.wg.Done()
			br := bufio.NewReader(st)
			for {
				m, err := swarm.ReadMessage(br, swarm.WireLimits{MaxChunk: 1 << 20})
				if err != nil {
					return
				}
				if m.Type == swarm.MsgChunk || (m.Type == swarm.MsgChunkPart && m.Offset+len(m.Data) == m.Total) {
					g.mu.Lock()
					g.whole[[2]int{k, int(m.Index)}]++
					g.mu.Unlock()
				}
			}
		}()
	}
	return g
}

// maxRepeat is the most times one chunk was received whole.
func (g *greedyPeer) maxRepeat() (int, [2]int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	most, which := 0, [2]int{}
	for k, n := range g.whole {
		if n > most {
			most, which = n, k
		}
	}
	return most, which
}

// TestSwarmGreedyPeerFairShare: a seeder with a capped upload serves a
// greedy peer, which asks for three packages at once with every chunk
// repeated 200 times in each Request (and again every 50 ms), and an
// honest peer downloading one of them. The seeder sends each chunk once
// (duplicates of what is queued or was just sent are dropped), and while
// both want chunks the greedy peer gets no more than its share of the
// upload however many streams it opens: the honest download takes about
// twice the package's time at the full rate, not four times.
func TestSwarmGreedyPeerFairShare(t *testing.T) {
	t.Parallel()
	const rate = 4 << 20
	var pkgs []*testPackage
	for k := range 3 {
		pkgs = append(pkgs, newTestPackage(t, uint64(40+k), 256<<10, 4<<20))
	}
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	seeder := c.add("seeder", nil, func(cfg *swarm.Config) {
		cfg.UploadRate = rate
		cfg.RequestTimeout = 30 * time.Second // the window in which a chunk sent is not sent again
	})
	for _, p := range pkgs {
		seeder.seed(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	greedyCtx, stopGreedy := context.WithCancel(ctx)
	g := startGreedyPeer(greedyCtx, t, c.net.Node("greedy", func(swarm.PeerID, swarm.Stream) {}), seeder.id, pkgs, 200)
	defer func() {
		stopGreedy()
		g.wg.Wait()
	}()
	time.Sleep(100 * time.Millisecond) // the greedy peer's queues fill first

	honest := c.add("honest", nil, nil)
	atStart := seeder.swarm.Stats().Peers["greedy"].Uploaded
	// The shares count from the honest peer's first byte on.
	base := make(chan int64, 1)
	go func() {
		for ctx.Err() == nil {
			if ps := seeder.swarm.Stats().Peers; ps["honest"].Uploaded > 0 {
				base <- ps["greedy"].Uploaded
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		base <- 0
	}()
	st, err := honest.download(ctx, pkgs[0])
	if err != nil {
		t.Fatalf("honest Download: %v", err)
	}
	peers := seeder.swarm.Stats().Peers
	checkCopy(t, honest, pkgs[0])
	atFirst := <-base
	greedyUp, honestUp := peers["greedy"].Uploaded-atFirst, peers["honest"].Uploaded
	share := float64(greedyUp) / float64(greedyUp+honestUp)
	t.Logf("honest download of %d bytes took %v; %d bytes to greedy before its first byte; from it on, the seeder uploaded %d to greedy, %d to honest: greedy share %.2f",
		pkgs[0].size, st.Elapsed, atFirst-atStart, greedyUp, honestUp, share)
	if share > 0.6 {
		t.Errorf("greedy peer got %.0f%% of the seeder's upload while the honest peer downloaded, want at most 60%%", 100*share)
	}
	// The greedy peer's queues (12 MiB asked for) must not be served
	// before the honest peer's first chunk: what goes to it meanwhile is
	// bounded by the honest peer's setup time at the seeder's rate (one
	// package's worth is a second of setup; serving the queues first
	// would be three).
	if ahead := atFirst - atStart; ahead > pkgs[0].size {
		t.Errorf("the seeder sent the greedy peer %d bytes before the honest peer's first, want at most %d (one package)", ahead, pkgs[0].size)
	}
	if most, which := g.maxRepeat(); most > 1 {
		t.Errorf("the seeder sent chunk %d of package %d whole %d times to the greedy peer, want once", which[1], which[0], most)
	}
}

// TestSwarmDuplicateRequests: a chunk asked for again while it is queued,
// or again after it was sent, is not sent twice; asked again after a
// Cancel of it, it is sent again (a peer whose request timed out cancels
// it first), and so is any other chunk.
func TestSwarmDuplicateRequests(t *testing.T) {
	t.Parallel()
	p := newTestPackage(t, 13, 64<<10, 4<<16)
	c := newCluster(t, transfertest.LinkShape{})
	server := c.add("server", nil, func(cfg *swarm.Config) { cfg.RequestTimeout = time.Minute })
	server.seed(p)
	client := c.net.Node("client", func(swarm.PeerID, swarm.Stream) {})
	st, err := client.OpenStream(context.Background(), server.id)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Reset()
	n := len(p.m.UniqueChunks())
	send := func(ms ...*swarm.Message) {
		t.Helper()
		var out []byte
		for _, m := range ms {
			out, _ = swarm.AppendMessage(out, m)
		}
		if _, err := st.Write(out); err != nil {
			t.Fatal(err)
		}
	}
	msgs := make(chan *swarm.Message, 64)
	go func() {
		defer close(msgs)
		br := bufio.NewReader(st)
		for {
			m, err := swarm.ReadMessage(br, swarm.WireLimits{MaxChunk: 64 << 10})
			if err != nil {
				return
			}
			if m.Type == swarm.MsgChunk {
				msgs <- m
			}
		}
	}()
	chunk := func() uint32 {
		t.Helper()
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("stream ended")
			}
			return m.Index
		case <-time.After(10 * time.Second):
			t.Fatal("no chunk within 10s")
			return 0
		}
	}
	req := func(idx ...uint32) *swarm.Message {
		return &swarm.Message{Type: swarm.MsgRequest, Indices: idx}
	}
	send(&swarm.Message{Type: swarm.MsgHello, Manifest: p.c},
		&swarm.Message{Type: swarm.MsgHave, Manifest: p.c, Count: n, Have: policy.NewBitfield(n)},
		req(0, 0, 0, 1, 0, 1))
	if got := []uint32{chunk(), chunk()}; min(got[0], got[1]) != 0 || max(got[0], got[1]) != 1 {
		t.Fatalf("first answers = chunks %v, want 0 and 1 once each", got)
	}
	// Sent already: asked again, only the new chunk comes.
	send(req(0, 1, 2))
	if got := chunk(); got != 2 {
		t.Fatalf("after asking 0, 1 again and 2: chunk %d, want 2 only", got)
	}
	// After a Cancel, chunk 0 is sent again.
	send(&swarm.Message{Type: swarm.MsgCancel, Indices: []uint32{0}}, req(0))
	if got := chunk(); got != 0 {
		t.Fatalf("after a Cancel of 0 and a new Request: chunk %d, want 0", got)
	}
	send(req(3))
	if got := chunk(); got != 3 {
		t.Fatalf("chunk %d, want 3", got)
	}
	if up := server.swarm.Stats().BytesUploaded; up != 5*(64<<10) {
		t.Errorf("server uploaded %d bytes, want 5 chunks of 64 KiB", up)
	}
}
