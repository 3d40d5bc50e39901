package node

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
	"github.com/storkpm/stork/transfer/swarm"
)

// greedy is a peer on a real libp2p host that speaks the swarm protocol by
// hand: on one stream per package it asks for every chunk dup times in
// each Request, and again every 50 ms, and counts the chunks it receives
// whole.
type greedy struct {
	mu    sync.Mutex
	whole map[string]int // "package/index" -> times received whole
	wg    sync.WaitGroup
}

func startGreedy(ctx context.Context, t *testing.T, o *origin, bootstrap []string, to swarm.PeerID, names []string, dup int) *greedy {
	t.Helper()
	pc := DefaultP2PConfig(t.TempDir())
	pc.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	pc.Bootstrap = bootstrap
	pc.EnableAutoNAT, pc.EnableHolePunching, pc.EnableRelay = false, false, false
	p, err := NewP2P(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	g := &greedy{whole: make(map[string]int)}
	t.Cleanup(func() {
		g.wg.Wait()
		p.Close()
	})
	pkgs, err := o.repo.Packages()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		var mc cid.Cid
		for _, pk := range pkgs {
			if pk.Name == name {
				mc = pk.ManifestCID
			}
		}
		raw, err := os.ReadFile(filepath.Join(o.dir, "manifests", mc.String()))
		if err != nil {
			t.Fatal(err)
		}
		m, err := metadata.DecodeManifest(raw, metadata.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		n := len(m.UniqueChunks())
		var idx []uint32
		for i := range n {
			for range dup {
				idx = append(idx, uint32(i))
			}
		}
		hello, _ := swarm.AppendMessage(nil, &swarm.Message{Type: swarm.MsgHello, Manifest: mc})
		hello, _ = swarm.AppendMessage(hello, &swarm.Message{Type: swarm.MsgHave, Manifest: mc, Count: n, Have: policy.NewBitfield(n)})
		req, _ := swarm.AppendMessage(nil, &swarm.Message{Type: swarm.MsgRequest, Indices: idx})
		st, err := p.OpenStream(ctx, to)
		if err != nil {
			t.Fatal(err)
		}
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
				msg, err := swarm.ReadMessage(br, swarm.WireLimits{MaxChunk: 1 << 20})
				if err != nil {
					return
				}
				if msg.Type == swarm.MsgChunk || (msg.Type == swarm.MsgChunkPart && msg.Offset+len(msg.Data) == msg.Total) {
					g.mu.Lock()
					g.whole[fmt.Sprintf("%s/%d", name, msg.Index)]++
					g.mu.Unlock()
				}
			}
		}()
	}
	return g
}

// TestSwarmGreedyPeer, on real libp2p hosts: a seeder daemon with a capped
// upload holds three packages; a greedy peer opens a stream for each and
// asks for every chunk 100 times per Request, again and again, while an
// honest daemon fetches one of them from the seeder (the origin's chunks
// are gone). The honest fetch completes with the greedy peer taking no more
// than its share of the seeder's upload, and no chunk goes to the greedy
// peer twice.
func TestSwarmGreedyPeer(t *testing.T) {
	const rate = 4 << 20
	o := newOrigin(t)
	names := []string{"p0", "p1", "p2"}
	for _, name := range names {
		o.publishChunked(t, name, "1.0.0", 256<<10, map[string]int{"blob": 4 << 20})
	}
	seeder := startSwarmNodeWith(t, o, nil, func(cfg *Config) { cfg.UploadRate = rate })
	for _, name := range names {
		if _, err := seeder.c.Fetch(context.Background(), name, nil); err != nil {
			t.Fatal(err)
		}
	}
	o.failChunks.Store(true)
	boot := seeder.addrs(t)
	honest := startSwarmNode(t, o, boot)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	greedyCtx, stopGreedy := context.WithCancel(ctx)
	defer stopGreedy()
	g := startGreedy(greedyCtx, t, o, boot, seeder.d.p2p.ID(), names, 100)
	time.Sleep(200 * time.Millisecond) // the greedy peer's queues fill first

	// upload splits the seeder's upload so far between the honest peer and
	// the others (the greedy one).
	upload := func() (greedyUp, honestUp int64) {
		for id, ps := range seeder.d.swarm.Stats().Peers {
			if id == honest.d.p2p.ID() {
				honestUp = ps.Uploaded
			} else {
				greedyUp += ps.Uploaded
			}
		}
		return greedyUp, honestUp
	}
	// The shares count from the honest peer's first byte: before it, the
	// greedy peer has the upload to itself while the honest daemon
	// resolves the package and finds the seeder.
	base := make(chan int64, 1)
	go func() {
		for ctx.Err() == nil {
			if g, h := upload(); h > 0 {
				base <- g
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		base <- 0
	}()
	start := time.Now()
	if _, err := honest.c.Fetch(ctx, "p0", nil); err != nil {
		t.Fatalf("honest Fetch during the greedy peer's requests: %v", err)
	}
	took := time.Since(start)
	greedyUp, honestUp := upload()
	stopGreedy()
	greedyUp -= <-base
	share := float64(greedyUp) / float64(greedyUp+honestUp)
	t.Logf("honest fetch of 4 MiB took %v; from the honest peer's first byte on, the seeder uploaded %d to the greedy peer, %d to the honest one: greedy share %.2f", took, greedyUp, honestUp, share)
	if honestUp < 4<<20 {
		t.Errorf("seeder uploaded %d bytes to the honest peer, want the whole package (%d)", honestUp, 4<<20)
	}
	if share > 0.6 {
		t.Errorf("greedy peer got %.0f%% of the seeder's upload while the honest peer fetched, want at most 60%%", 100*share)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, n := range g.whole {
		if n > 1 {
			t.Errorf("chunk %s went to the greedy peer %d times, want once", k, n)
			break
		}
	}
}
