package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// startMesh starts n daemons on loopback, each bootstrapped with every
// daemon started before it, so that every host is connected to every
// other (the members of cooperative fetching), and waits (at most 10s)
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
	deadline := time.Now().Add(10 * time.Second)
	for _, nd := range nodes {
		for nd.d.p2p != nil && len(nd.d.p2p.Members()) < n-1 && len(nd.d.p2p.Peers()) < n-1 {
			if time.Now().After(deadline) {
				t.Logf("warning: a host sees %d of %d members after 10s", len(nd.d.p2p.Members()), n-1)
				break
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
// it learns that the others fetch the same bytes.
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
			})
		}
	}
}
