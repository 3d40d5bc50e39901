package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// swarmNode is one in-process daemon with a libp2p host on loopback.
type swarmNode struct {
	d      *Daemon
	c      *Client
	data   string
	cancel context.CancelFunc
	done   chan error
}

func startSwarmNode(t testing.TB, o *origin, bootstrap []string) *swarmNode {
	t.Helper()
	return startSwarmNodeWith(t, o, bootstrap, nil)
}

// startSwarmNodeWith is startSwarmNode with mod applied to the Config.
func startSwarmNodeWith(t testing.TB, o *origin, bootstrap []string, mod func(*Config)) *swarmNode {
	t.Helper()
	data, err := os.MkdirTemp("", "stork-swarm-")
	if err != nil {
		t.Fatal(err)
	}
	pc := DefaultP2PConfig(data)
	pc.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	pc.Bootstrap = bootstrap
	pc.EnableAutoNAT, pc.EnableHolePunching, pc.EnableRelay = false, false, false
	cfg := Config{DataDir: data, RepoURL: o.url, Root: o.root, P2P: &pc, RefreshInterval: time.Hour}
	if mod != nil {
		mod(&cfg)
	}
	d, err := NewDaemon(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &swarmNode{d: d, c: NewClient(data), data: data, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- runAndClose(ctx, d) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, err := n.c.Status(context.Background()); err == nil && st.PeerID != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon did not start within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		n.stop(t)
		os.RemoveAll(data)
	})
	return n
}

func (n *swarmNode) stop(t testing.TB) {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	select {
	case err := <-n.done:
		if err != nil {
			t.Errorf("daemon Run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("daemon did not stop within 30s")
	}
}

func (n *swarmNode) addrs(t testing.TB) []string {
	st, err := n.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Addrs
}

// TestSwarmTenNodes: ten daemons on loopback, one origin, one package, all
// fetching at once: each gets a bit-exact copy, and the origin sends little
// more than one copy because the swarm spreads it.
func TestSwarmTenNodes(t *testing.T) {
	size, chunk := 64<<20, int64(1<<20)
	if testing.Short() {
		size, chunk = 16<<20, 256<<10 // as many chunks per host, less data
	}
	o := newOrigin(t)
	src := o.publishChunked(t, "big", "1.0.0", chunk, map[string]int{"blob": size})
	first := startSwarmNode(t, o, nil)
	boot := first.addrs(t)
	nodes := []*swarmNode{first}
	for i := 1; i < 10; i++ {
		nodes = append(nodes, startSwarmNode(t, o, boot))
	}
	time.Sleep(500 * time.Millisecond) // let the overlay form
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	start := time.Now()
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = n.c.Fetch(context.Background(), "big", nil)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	want, err := os.ReadFile(filepath.Join(src, "blob"))
	if err != nil {
		t.Fatal(err)
	}
	var fromPeers, fromOrigin int64
	for i, n := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: Fetch = %v", i, errs[i])
		}
		view := filepath.Join(t.TempDir(), "v")
		addVM(t, n.c, "check", view)
		if _, err := n.c.Install(context.Background(), InstallRequest{VM: "check", Ref: "big", Into: view, Mode: "link"}, nil); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(view, "big", "blob"))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("node %d: copy differs (%v)", i, err)
		}
		st, _ := n.c.Status(context.Background())
		fromPeers += st.BytesFromPeers
		fromOrigin += st.BytesFromOrigin
	}
	ratio := float64(o.chunkBytes.Load()) / float64(size)
	t.Logf("10 nodes, %d MiB: %.1fs, origin sent %.2f copies, status: %d B from peers, %d B from origin",
		size>>20, elapsed.Seconds(), ratio, fromPeers, fromOrigin)
	if ratio > 1.5 {
		t.Errorf("origin sent %.2f copies of the package, want <= 1.5", ratio)
	}
	if fromPeers < int64(size)*5 {
		t.Errorf("nodes got %d bytes from peers, want most of %d", fromPeers, int64(size)*9)
	}
	// The origin counts what it wrote; status counts verified chunks. The
	// difference is origin responses cut off when a peer delivered the chunk
	// first or the download ended: at most a couple of chunks per node.
	if sent := o.chunkBytes.Load(); fromOrigin > sent || sent-fromOrigin > 2*chunk*int64(len(nodes)) {
		t.Errorf("status bytes_from_origin sum = %s, origin counted %d", fmt.Sprint(fromOrigin), sent)
	}
}

// TestSwarmOriginDownAfterFirstCopy: once one host holds the package, the
// others complete from it with the origin gone.
func TestSwarmOriginDownAfterFirstCopy(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "p", "1.0.0", map[string]int{"f": 8 << 20})
	seed := startSwarmNode(t, o, nil)
	if _, err := seed.c.Fetch(context.Background(), "p", nil); err != nil {
		t.Fatal(err)
	}
	boot := seed.addrs(t)
	a := startSwarmNode(t, o, boot)
	b := startSwarmNode(t, o, boot)
	// metadata still comes from the origin; chunks must not
	o.failChunks.Store(true)
	for _, n := range []*swarmNode{a, b} {
		if _, err := n.c.Fetch(context.Background(), "p", nil); err != nil {
			t.Fatalf("Fetch with the origin's chunks gone = %v", err)
		}
	}
	if got := o.chunkBytes.Load(); got != 8<<20 {
		t.Errorf("origin sent %d chunk bytes, want one copy (%d) for the seed only", got, 8<<20)
	}
	// A restarted host keeps its store and serves it again.
	seed.stop(t)
	late := startSwarmNode(t, o, a.addrs(t))
	if _, err := late.c.Fetch(context.Background(), "p", nil); err != nil {
		t.Fatalf("Fetch from the remaining peers = %v", err)
	}
}
