package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	dto "github.com/prometheus/client_model/go"

	"github.com/storkpm/stork/metadata"
)

// groupSwarm starts n daemons on loopback polling every poll, each with
// one VM in group web, and converges them once.
func groupSwarm(t testing.TB, o *origin, n int, poll time.Duration) []*swarmNode {
	t.Helper()
	mod := func(cfg *Config) { cfg.Poll = poll }
	nodes := []*swarmNode{startSwarmNodeWith(t, o, nil, mod)}
	boot := nodes[0].addrs(t)
	for i := 1; i < n; i++ {
		nodes = append(nodes, startSwarmNodeWith(t, o, boot, mod))
	}
	for _, nd := range nodes {
		addGroupVM(t, nd.c, "v1", "web")
		converge(t, nd.c)
	}
	return nodes
}

// waitAllHave waits (bounded) until vm v1 of every node has want.
func waitAllHave(t *testing.T, nodes []*swarmNode, want []string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for i := 0; i < len(nodes); {
		if slices.Equal(vmHas(t, nodes[i].c, "v1"), want) {
			i++
			continue
		}
		if time.Now().After(deadline) {
			st, _ := nodes[i].c.Status(context.Background())
			t.Fatalf("node %d: v1 has %v after %s, want %v; converge status %+v", i, vmHas(t, nodes[i].c, "v1"), limit, want, st.Converge)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A group change handed to one daemon reaches every daemon through
// gossipsub, long before their poll interval (an hour here), and the
// others take the changed metadata files from their peers: the origin
// serves the metadata of one refresh, not one per host.
func TestAnnouncementPropagates(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "a", "1.0.0", map[string]int{"a": 1000})
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a"}})
	nodes := groupSwarm(t, o, 4, time.Hour)
	waitAllHave(t, nodes, []string{"a@1.0.0"}, 10*time.Second)
	time.Sleep(1500 * time.Millisecond) // a gossipsub heartbeat: the mesh forms

	o.publish(t, "a", "2.0.0", map[string]int{"a": 1000})
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a@2.0.0"}})
	ts, err := os.ReadFile(filepath.Join(o.dir, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	before := o.metaReqs.Load()
	if err := nodes[0].c.Announce(context.Background(), ts); err != nil {
		t.Fatalf("Announce = %v", err)
	}
	waitAllHave(t, nodes, []string{"a@2.0.0"}, 30*time.Second)
	reqs := o.metaReqs.Load() - before
	t.Logf("4 daemons: origin metadata requests for the update: %d", reqs)
	if reqs > 3 {
		t.Errorf("origin served %d metadata requests for one update to 4 hosts, want at most 3 (the others take the files from peers)", reqs)
	}
}

// An announcement with forged, stale or malformed metadata changes
// nothing and fetches nothing; a peer over its rate is not even checked;
// a good announcement from the same peer is applied (so the channel
// works).
func TestAnnouncementRefused(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "a", "1.0.0", map[string]int{"a": 100})
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a"}})
	stale, err := os.ReadFile(filepath.Join(o.dir, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The forged one: a repository of another key, at a higher version.
	other := newOrigin(t)
	for i := range 5 {
		other.publish(t, "x", fmt.Sprintf("1.0.%d", i), map[string]int{"x": 10})
		other.setGroup(t, "web", metadata.GroupChange{Add: []string{"x"}})
	}
	forged, err := os.ReadFile(filepath.Join(other.dir, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	o.publish(t, "a", "2.0.0", map[string]int{"a": 100})
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a@2.0.0"}})
	nodes := groupSwarm(t, o, 1, time.Hour)
	n := nodes[0]
	_, applied := n.d.meta.state()
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a@1.0.0"}})
	good, err := os.ReadFile(filepath.Join(o.dir, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}

	topic := peerTopic(t, n, nil)
	before := o.metaReqs.Load()
	for _, m := range [][]byte{forged, stale, []byte("{not json"), nil} {
		if err := topic.Publish(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, n.d, "refused", 2) // forged and malformed
	waitCount(t, n.d, "stale", 1)
	if _, v := n.d.meta.state(); v != applied {
		t.Errorf("metadata version after bad announcements = %d, want %d", v, applied)
	}
	if got := o.metaReqs.Load() - before; got != 0 {
		t.Errorf("bad announcements made %d origin metadata requests, want 0", got)
	}
	if has := vmHas(t, n.c, "v1"); !slices.Equal(has, []string{"a@2.0.0"}) {
		t.Errorf("v1 has %v after bad announcements, want [a@2.0.0]", has)
	}
	time.Sleep(announceEvery) // one token back
	if err := topic.Publish(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	waitAllHave(t, nodes, []string{"a@1.0.0"}, 20*time.Second)
	for range 2 * announceBurst {
		_ = topic.Publish(context.Background(), []byte("spam"))
	}
	waitCount(t, n.d, "rate_limited", 1)
}

// peerTopic joins n's timestamp topic from a fresh libp2p host connected
// to it, which serves files with serve (nil: none), and waits until n is
// a peer on that topic.
func peerTopic(t *testing.T, n *swarmNode, serve FileLookup) *pubsub.Topic {
	t.Helper()
	p := testP2P(t, nil)
	if serve != nil {
		p.SetFileServer(serve)
	}
	h := p.host
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	name, err := n.d.timestampTopic()
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(ctx, peer.AddrInfo{ID: n.d.p2p.host.ID(), Addrs: n.d.p2p.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(topic.ListPeers()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not join the topic within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return topic
}

// waitCount waits (bounded) until d counted at least want announcements
// with result.
func waitCount(t *testing.T, d *Daemon, result string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var m dto.Metric
		if err := d.metrics.announcements.WithLabelValues(result).Write(&m); err != nil {
			t.Fatal(err)
		}
		if m.GetCounter().GetValue() >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("announcements %s = %v after 10s, want %v", result, m.GetCounter().GetValue(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A peer that announces a good newer timestamp but serves forged
// metadata files: its files are refused; with the origin down nothing
// changes; with the origin up the files come from it and the change is
// applied as signed.
func TestAnnouncementForgedFilesRefused(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "a", "1.0.0", map[string]int{"a": 100})
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a@1.0.0"}})
	nodes := groupSwarm(t, o, 1, time.Hour)
	n := nodes[0]
	_, trusted := n.d.meta.state()
	o.publish(t, "a", "2.0.0", map[string]int{"a": 100})
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a@2.0.0"}})
	good, err := os.ReadFile(filepath.Join(o.dir, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	var served atomic.Int64
	forge := func(p string, maxLen int64) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(o.dir, filepath.FromSlash(p)))
		if err != nil {
			return nil, metadata.ErrNotFound
		}
		served.Add(1)
		return bytes.Replace(b, []byte(`"version"`), []byte(`"versi0n"`), 1), nil
	}
	topic := peerTopic(t, n, forge)
	o.down.Store(true)
	if err := topic.Publish(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	waitCount(t, n.d, "applied", 1)
	deadline := time.Now().Add(10 * time.Second)
	for served.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the refresh ends (it fails)
	if served.Load() == 0 {
		t.Fatal("the node never asked the announcing peer for a file")
	}
	if _, v := n.d.meta.state(); v != trusted {
		t.Errorf("metadata version after forged files with the origin down = %d, want %d", v, trusted)
	}
	if has := vmHas(t, n.c, "v1"); !slices.Equal(has, []string{"a@1.0.0"}) {
		t.Errorf("v1 has %v after forged files, want [a@1.0.0]", has)
	}
	o.down.Store(false)
	time.Sleep(announceEvery)
	if err := topic.Publish(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	waitAllHave(t, nodes, []string{"a@2.0.0"}, 20*time.Second)
}
