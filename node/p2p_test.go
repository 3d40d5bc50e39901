package node

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"

	"github.com/storkpm/stork/transfer/swarm"
)

var loopbackListen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}

// testP2P starts a host on loopback in its own data directory (or dir),
// bootstrapping to the given hosts; it is closed when the test ends.
func testP2P(t *testing.T, mod func(*P2PConfig), bootstrap ...*P2P) *P2P {
	t.Helper()
	cfg := P2PConfig{DataDir: t.TempDir(), Listen: loopbackListen}
	for _, b := range bootstrap {
		cfg.Bootstrap = append(cfg.Bootstrap, b.Addrs()...)
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := NewP2P(ctx, cfg)
	if err != nil {
		t.Fatalf("NewP2P: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close(%s): %v", p.ID(), err)
		}
	})
	return p
}

func testCID(t *testing.T, s string) cid.Cid {
	t.Helper()
	mh, err := multihash.Sum([]byte(s), multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, mh)
}

// waitProvider asks p for c's providers, again and again, until want is
// among them or the deadline passes.
func waitProvider(t *testing.T, p *P2P, c cid.Cid, want swarm.PeerID) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var got []swarm.PeerID
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		got = got[:0]
		found := false
		// Stop reading once want arrives: the search may go on (a
		// lookup dialling a departed host) but the channel must close
		// soon after ctx ends.
		for id := range p.FindProviders(ctx, c) {
			if id == p.ID() {
				t.Errorf("FindProviders on %s returned the host itself", p.ID())
			}
			got = append(got, id)
			if id == want && !found {
				found = true
				cancel()
			}
		}
		cancel()
		if found {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("FindProviders(%s) on %s = %v, want %s among them", c, p.ID(), got, want)
}

func TestP2PIdentityPersisted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func(dir string) swarm.PeerID {
		p, err := NewP2P(context.Background(), P2PConfig{DataDir: dir, Listen: loopbackListen})
		if err != nil {
			t.Fatalf("NewP2P(%s): %v", dir, err)
		}
		defer p.Close()
		return p.ID()
	}
	first := start(dir)
	fi, err := os.Stat(filepath.Join(dir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("identity key mode = %o, want 600", mode)
	}
	if again := start(dir); again != first {
		t.Errorf("peer ID after restart = %s, want %s", again, first)
	}
	if other := start(t.TempDir()); other == first {
		t.Errorf("peer ID of another data directory = %s, the same as the first", other)
	}
}

func TestP2PConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  P2PConfig
		want string
	}{
		{"no data dir", P2PConfig{}, "data directory"},
		{"bad dht mode", P2PConfig{DHTMode: "peer"}, "DHT mode"},
		{"bootstrap without peer id", P2PConfig{Bootstrap: []string{"/ip4/127.0.0.1/tcp/4001"}}, "bootstrap"},
		{"bad announce", P2PConfig{Announce: []string{"not-an-addr"}}, "announce"},
		{"watermarks", P2PConfig{ConnLow: 10, ConnHigh: 5}, "watermark"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "no data dir" {
				tc.cfg.DataDir = t.TempDir()
			}
			tc.cfg.Listen = loopbackListen
			p, err := NewP2P(context.Background(), tc.cfg)
			if err == nil {
				p.Close()
				t.Fatalf("NewP2P(%+v) = nil error, want one mentioning %q", tc.cfg, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewP2P(%+v) = %v, want one mentioning %q", tc.cfg, err, tc.want)
			}
		})
	}
}

// TestP2PSwarm is the three-host testbed: A first, B and C bootstrap to A.
func TestP2PSwarm(t *testing.T) {
	t.Parallel()
	a := testP2P(t, nil)
	b := testP2P(t, nil, a)
	c := testP2P(t, nil, a)

	pkg := testCID(t, "package three hosts")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Provide(ctx, pkg); err != nil {
		t.Fatalf("Provide: %v", err)
	}
	waitProvider(t, a, pkg, c.ID())
	waitProvider(t, b, pkg, c.ID())

	t.Run("stream both ways", func(t *testing.T) {
		got := make(chan string, 1)
		c.SetStreamHandler(func(from swarm.PeerID, s swarm.Stream) {
			defer s.Close()
			buf := make([]byte, 5)
			if _, err := io.ReadFull(s, buf); err != nil {
				s.Reset()
				got <- "read error: " + err.Error()
				return
			}
			got <- string(from) + " " + string(buf)
			_, _ = s.Write([]byte("world"))
		})
		s, err := b.OpenStream(ctx, c.ID())
		if err != nil {
			t.Fatalf("OpenStream: %v", err)
		}
		defer s.Close()
		if _, err := s.Write([]byte("hello")); err != nil {
			t.Fatalf("write: %v", err)
		}
		reply, err := io.ReadAll(s)
		if err != nil {
			t.Fatalf("read reply: %v", err)
		}
		if string(reply) != "world" {
			t.Errorf("reply = %q, want %q", reply, "world")
		}
		if g, want := <-got, string(b.ID())+" hello"; g != want {
			t.Errorf("handler saw %q, want %q", g, want)
		}
	})

	t.Run("peers with latency", func(t *testing.T) {
		if _, err := b.Ping(ctx, c.ID()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		peers := b.Peers()
		i := slices.IndexFunc(peers, func(pi PeerInfo) bool { return pi.ID == string(c.ID()) })
		if i < 0 {
			t.Fatalf("Peers() = %+v, want %s among them", peers, c.ID())
		}
		if peers[i].Latency <= 0 || len(peers[i].Addrs) == 0 {
			t.Errorf("Peers()[%s] = %+v, want a latency and addresses", c.ID(), peers[i])
		}
		for _, addr := range b.Addrs() {
			if !strings.HasSuffix(addr, "/p2p/"+string(b.ID())) {
				t.Errorf("Addrs() has %q, want it to end in /p2p/%s", addr, b.ID())
			}
		}
	})

	t.Run("close peer", func(t *testing.T) {
		if err := b.ClosePeer(c.ID()); err != nil {
			t.Fatalf("ClosePeer: %v", err)
		}
		cid, _ := peer.Decode(string(c.ID()))
		if cn := b.host.Network().Connectedness(cid); cn == network.Connected {
			t.Errorf("after ClosePeer, connectedness = %v, want not connected", cn)
		}
		if _, err := b.OpenStream(ctx, c.ID()); !errors.Is(err, ErrPeerBlocked) {
			t.Errorf("OpenStream to a closed peer = %v, want ErrPeerBlocked", err)
		}
		// The block holds both ways: b refuses c's dials too.
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		if s, err := c.OpenStream(sctx, b.ID()); err == nil {
			s.Close()
			t.Errorf("OpenStream from a blocked peer succeeded")
		}
		for id := range b.FindProviders(sctx, pkg) {
			if id == c.ID() {
				t.Errorf("FindProviders returned blocked peer %s", id)
			}
		}
	})
}

// TestP2PChurn: the bootstrap host leaves, a host joins later through
// another, and providers are still found.
func TestP2PChurn(t *testing.T) {
	t.Parallel()
	a := testP2P(t, nil)
	b := testP2P(t, nil, a)
	c := testP2P(t, nil, a)
	pkg := testCID(t, "package churn")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Provide(ctx, pkg); err != nil {
		t.Fatalf("Provide: %v", err)
	}
	waitProvider(t, b, pkg, c.ID())

	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	d := testP2P(t, nil, b)
	waitProvider(t, d, pkg, c.ID())
	waitProvider(t, b, pkg, c.ID())
}

// TestP2PDHTAlone is TestP2PChurn with discovery through the DHT only:
// the provide made before C's routing table fills must still reach A and
// B (re-provide on join), and D, joining after A left, must find C.
func TestP2PDHTAlone(t *testing.T) {
	t.Parallel()
	a := testP2P(t, nil)
	b := testP2P(t, nil, a)
	c := testP2P(t, nil, a)
	for _, p := range []*P2P{a, b, c} {
		p.dhtOnly = true
	}
	pkg := testCID(t, "package dht only")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Provide(ctx, pkg); err != nil {
		t.Fatalf("Provide: %v", err)
	}
	waitProvider(t, a, pkg, c.ID())
	waitProvider(t, b, pkg, c.ID())
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	d := testP2P(t, nil, b)
	d.dhtOnly = true
	waitProvider(t, d, pkg, c.ID())
}

// TestP2PProvideBeforePeers: the first host of a testbed announces before
// anyone else exists; the announcement reaches the hosts that join.
func TestP2PProvideBeforePeers(t *testing.T) {
	t.Parallel()
	a := testP2P(t, nil)
	pkg := testCID(t, "package alone")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Provide(ctx, pkg); err != nil {
		t.Fatalf("Provide with no peer = %v, want nil (held until peers join)", err)
	}
	b := testP2P(t, nil, a)
	// The join re-provide stores a's record on b.
	aid, _ := peer.Decode(string(a.ID()))
	deadline := time.Now().Add(20 * time.Second)
	for {
		recs, err := b.dht.ProviderStore().GetProviders(ctx, pkg.Hash())
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(recs, func(ai peer.AddrInfo) bool { return ai.ID == aid }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b's provider store = %v, want a's record pushed on join", recs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitProvider(t, b, pkg, a.ID())
	c := testP2P(t, nil, b)
	waitProvider(t, c, pkg, a.ID())
}

// TestP2PNeighbourFallback: with no DHT server at all (every host a
// client), /stork/have still finds a directly connected provider.
func TestP2PNeighbourFallback(t *testing.T) {
	t.Parallel()
	client := func(cfg *P2PConfig) { cfg.DHTMode = DHTModeClient }
	a := testP2P(t, client)
	b := testP2P(t, client, a)
	pkg := testCID(t, "package neighbours")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Provide(ctx, pkg); err != nil {
		t.Fatalf("Provide = %v, want nil", err)
	}
	waitProvider(t, a, pkg, b.ID())
}

func TestP2PQUICOnly(t *testing.T) {
	t.Parallel()
	quicOnly := func(cfg *P2PConfig) { cfg.Listen = []string{"/ip4/127.0.0.1/udp/0/quic-v1"} }
	a := testP2P(t, quicOnly)
	for _, addr := range a.Addrs() {
		if !strings.Contains(addr, "/quic-v1/") {
			t.Errorf("Addrs() has %q, want QUIC only", addr)
		}
	}
	b := testP2P(t, quicOnly, a)
	a.SetStreamHandler(func(_ swarm.PeerID, s swarm.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, io.LimitReader(s, 4))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := b.OpenStream(ctx, a.ID())
	if err != nil {
		t.Fatalf("OpenStream over QUIC: %v", err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo over QUIC = %q, %v; want %q", got, err, "ping")
	}
	if ma := s.(network.Stream).Conn().RemoteMultiaddr().String(); !strings.Contains(ma, "quic-v1") {
		t.Errorf("connection address %s, want QUIC", ma)
	}
}

// TestP2PNATTraversalOn: the production switches (relay client and
// service, hole punching, AutoNAT) start, work on loopback, and close.
func TestP2PNATTraversalOn(t *testing.T) {
	t.Parallel()
	on := func(cfg *P2PConfig) {
		cfg.EnableRelay, cfg.EnableHolePunching, cfg.EnableAutoNAT = true, true, true
	}
	a := testP2P(t, on)
	b := testP2P(t, on, a)
	pkg := testCID(t, "package nat traversal")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Provide(ctx, pkg); err != nil {
		t.Fatalf("Provide: %v", err)
	}
	waitProvider(t, b, pkg, a.ID())
	if d := DefaultP2PConfig("x"); !d.EnableRelay || !d.EnableHolePunching || !d.EnableAutoNAT {
		t.Errorf("DefaultP2PConfig = %+v, want relay, hole punching and AutoNAT on", d)
	}
}
