package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/swarm"
)

// badStore claims to hold every chunk of one package. A corrupter answers
// with wrong bytes of the right length; a liar never answers at all.
type badStore struct {
	manifest cid.Cid
	m        *metadata.Manifest
	corrupt  bool
	silence  chan struct{} // closed at cleanup to release the liar
	mu       sync.Mutex
	served   int
}

func (b *badStore) Manifest(c cid.Cid) (*metadata.Manifest, error) {
	if c.Equals(b.manifest) {
		return b.m, nil
	}
	return nil, metadata.ErrNotFound
}

func (b *badStore) HasChunk(cid.Cid) bool { return true }

func (b *badStore) ReadChunk(c cid.Cid) ([]byte, error) {
	for _, r := range b.m.UniqueChunks() {
		if !r.CID.Equals(c) {
			continue
		}
		if !b.corrupt {
			<-b.silence
			return nil, metadata.ErrNotFound
		}
		b.mu.Lock()
		b.served++
		b.mu.Unlock()
		return bytes.Repeat([]byte{0xee}, int(r.Length)), nil
	}
	return nil, metadata.ErrNotFound
}

// startBadPeer runs a libp2p host on loopback whose swarm serves badStore
// and announces the package.
func startBadPeer(t *testing.T, o *origin, bootstrap []string, corrupt bool) (*P2P, *badStore) {
	t.Helper()
	pkgs, err := o.repo.Packages()
	if err != nil || len(pkgs) == 0 {
		t.Fatalf("repo packages: %v", err)
	}
	mc := pkgs[0].ManifestCID
	raw, err := os.ReadFile(filepath.Join(o.dir, "manifests", mc.String()))
	if err != nil {
		t.Fatal(err)
	}
	m, err := metadata.DecodeManifest(raw, metadata.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	store := &badStore{manifest: mc, m: m, corrupt: corrupt, silence: make(chan struct{})}
	dir := t.TempDir()
	pc := DefaultP2PConfig(dir)
	pc.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	pc.Bootstrap = bootstrap
	pc.EnableAutoNAT, pc.EnableHolePunching, pc.EnableRelay = false, false, false
	p, err := NewP2P(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := swarm.New(swarm.Config{Self: p.ID(), Network: p, Discovery: p, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	p.SetStreamHandler(sw.HandleStream)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sw.Run(ctx) }()
	sw.Announce(mc)
	t.Cleanup(func() {
		close(store.silence)
		p.SetStreamHandler(nil)
		cancel()
		<-done
		p.Close()
	})
	return p, store
}

// TestSwarmMaliciousPeers: a peer serving corrupted chunks and one that
// advertises chunks it never sends are in the overlay from the start;
// every honest daemon completes with exact bytes, drops the corrupter, and
// no corrupted byte enters any store.
func TestSwarmMaliciousPeers(t *testing.T) {
	o := newOrigin(t)
	src := o.publishChunked(t, "p", "1.0.0", 256<<10, map[string]int{"blob": 6 << 20})
	first := startSwarmNode(t, o, nil)
	boot := first.addrs(t)
	corrupter, cs := startBadPeer(t, o, boot, true)
	liar, _ := startBadPeer(t, o, boot, false)
	nodes := []*swarmNode{first, startSwarmNode(t, o, boot), startSwarmNode(t, o, boot)}
	time.Sleep(500 * time.Millisecond)

	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, errs[i] = n.c.Fetch(ctx, "p", nil)
		}()
	}
	wg.Wait()
	want, _ := os.ReadFile(filepath.Join(src, "blob"))
	for i, n := range nodes {
		if errs[i] != nil {
			t.Fatalf("honest node %d: Fetch = %v", i, errs[i])
		}
		view := filepath.Join(t.TempDir(), "v")
		addVM(t, n.c, "check", view)
		if _, err := n.c.Install(context.Background(), InstallRequest{VM: "check", Ref: "p", Into: view, Mode: "link"}, nil); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(view, "p", "blob"))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("node %d: copy differs (%v)", i, err)
		}
		for _, p := range n.d.p2p.Peers() {
			if p.ID == string(corrupter.ID()) {
				t.Errorf("node %d is still connected to the corrupting peer", i)
			}
		}
	}
	cs.mu.Lock()
	served := cs.served
	cs.mu.Unlock()
	if served == 0 {
		t.Error("the corrupting peer was never asked for a chunk: the test did not exercise it")
	}
	t.Logf("corrupter served %d bad chunks; liar %s", served, liar.ID())
	for i, n := range nodes {
		n.stop(t)
		problems, err := VerifyStore(context.Background(), n.data)
		if err != nil || len(problems) > 0 {
			t.Errorf("node %d store after the attack: %v %v", i, err, problems)
		}
	}
}
