package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/storkpm/stork/transfer/swarm"
)

// startMesh starts n daemons on loopback, each bootstrapped with every
// daemon started before it, so that every host is connected to every
// other (the members of cooperative fetching), and waits (at most 30s)
// until each sees the others serve pull-through requests.
func startMesh(t *testing.T, o *origin, n int, mod func(*Config)) []*swarmNode {
	t.Helper()
	var nodes []*swarmNode
	var boot []string
	for range n {
		nd := startSwarmNodeWith(t, o, boot, mod)
		boot = append(boot, nd.addrs(t)...)
		nodes = append(nodes, nd)
	}
	// Members, not only peers: a host ranks the fetchers among the peers
	// whose protocols identify has reported, and hosts that rank among
	// different sets pick different fetchers.
	deadline := time.Now().Add(30 * time.Second)
	for _, nd := range nodes {
		seen := func() int {
			if nd.d.cfg.NoPullThrough { // no member serves pull-through
				return len(nd.d.p2p.Peers())
			}
			return len(nd.d.p2p.Members())
		}
		for nd.d.p2p != nil && seen() < n-1 {
			if time.Now().After(deadline) {
				t.Fatalf("a host sees %d of %d peers after 30s (%d connected)", seen(), n-1, len(nd.d.p2p.Peers()))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}

// fetchAll has every node fetch ref at once and fails the test on any
// error.
func fetchAll(t *testing.T, nodes []*swarmNode, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = n.c.Fetch(ctx, ref, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: Fetch %s = %v", i, ref, err)
		}
	}
}

// TestPullThroughFlashCrowd: six connected daemons fetch a small package
// at once. With cooperative origin fetching the origin sends about one
// copy (each chunk's first-ranked host fetches it, the others ask that
// host); with it off (today's policy) every host asks the origin before
// it learns that the others fetch the same bytes. Each host's Status
// splits what it uploaded by route (sessions, pull-through answers).
func TestPullThroughFlashCrowd(t *testing.T) {
	const hosts = 6
	for _, size := range []int{64 << 10, 1 << 20} {
		for _, pull := range []bool{true, false} {
			t.Run(fmt.Sprintf("%dKiB/pull=%v", size>>10, pull), func(t *testing.T) {
				o := newOrigin(t)
				o.publish(t, "small", "1.0.0", map[string]int{"f": size})
				nodes := startMesh(t, o, hosts, func(c *Config) { c.NoPullThrough = !pull })
				fetchAll(t, nodes, "small")
				copies := float64(o.chunkBytes.Load()) / float64(size)
				t.Logf("%d hosts, %d KiB, pull-through %v: origin sent %.2f copies (%d chunk requests)", hosts, size>>10, pull, copies, o.chunkReqs.Load())
				if pull && copies > 1.5 {
					t.Errorf("origin sent %.2f copies with pull-through, want <= 1.5", copies)
				}
				if !pull && copies < 2 {
					t.Logf("without pull-through the origin sent only %.2f copies: the hosts learnt of each other in time", copies)
				}
				// Status splits each host's upload by route.
				var upPull int64
				for i, n := range nodes {
					st, err := n.c.Status(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					if got := st.Pulls.UpSession + st.Pulls.UpPull; got != st.BytesUploaded {
						t.Errorf("node %d: up_session %d + up_pull %d = %d, want bytes_uploaded %d", i, st.Pulls.UpSession, st.Pulls.UpPull, got, st.BytesUploaded)
					}
					upPull += st.Pulls.UpPull
				}
				if pull && upPull == 0 {
					t.Errorf("no pull-through answers counted in Status (up_pull 0 on every host)")
				}
			})
		}
	}
}

// TestPullMemberFromFirstIdentify: a host that joins the overlay is a
// pull-through member of the peers it connects to from their first
// identify of it: it serves its protocols before it connects, so no later
// identify push is needed (one that lost the race with the first answer
// left a peer out of a host's members for good, and hosts ranking among
// different members fetched the same chunk from the origin twice).
func TestPullMemberFromFirstIdentify(t *testing.T) {
	o := newOrigin(t)
	a := startSwarmNode(t, o, nil)
	data := t.TempDir()
	pc := DefaultP2PConfig(data)
	pc.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	pc.Bootstrap = a.addrs(t)
	pc.EnableAutoNAT, pc.EnableHolePunching, pc.EnableRelay = false, false, false
	// Not Run: what a joins with is what its peers see.
	b, err := NewDaemon(context.Background(), Config{DataDir: data, RepoURL: o.url, Root: o.root, P2P: &pc, RefreshInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	want := b.p2p.host.ID().String()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, m := range a.d.p2p.Members() {
			if string(m.ID) == want {
				return
			}
		}
		if time.Now().After(deadline) {
			protos, _ := a.d.p2p.host.Peerstore().GetProtocols(b.p2p.host.ID())
			t.Fatalf("the joining host is not a pull-through member of its bootstrap peer after 10s; it lists %v", protos)
		}
	}
}

// TestMembersCacheFollowsChanges: Members answers from a cache, and a
// connection that comes or goes, an identify, or a ban refreshes it at
// once: with the cache's time limit at an hour, only those can.
func TestMembersCacheFollowsChanges(t *testing.T) {
	o := newOrigin(t)
	a := startSwarmNode(t, o, nil)
	a.d.p2p.members.mu.Lock()
	a.d.p2p.members.ttl = time.Hour
	a.d.p2p.members.mu.Unlock()
	b := startSwarmNode(t, o, a.addrs(t))
	c := startSwarmNode(t, o, a.addrs(t))
	has := func(n *swarmNode) bool {
		for _, m := range a.d.p2p.Members() {
			if string(m.ID) == n.d.p2p.host.ID().String() {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(10 * time.Second); !has(b) || !has(c); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("members after 10s: b %v, c %v; want both", has(b), has(c))
		}
	}
	ms := a.d.p2p.Members()
	ms[0].ID = "changed by the caller"
	if got := a.d.p2p.Members(); got[0].ID == ms[0].ID {
		t.Error("a caller's change to Members' slice shows in the next answer")
	}
	if err := a.d.p2p.ClosePeer(swarm.PeerID(c.d.p2p.host.ID().String())); err != nil {
		t.Fatal(err)
	}
	if has(c) {
		t.Error("a banned peer is still a member right after the ban")
	}
	b.stop(t)
	for deadline := time.Now().Add(10 * time.Second); has(b); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a peer that left is still a member 10s later")
		}
	}
}
