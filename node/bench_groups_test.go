package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/storkpm/stork/metadata"
)

// BenchmarkGroupPropagation: 20 in-process daemons on loopback (one
// process: 20 processes of libp2p hosts are too heavy for a small
// machine), each with one VM in group web, a 60 s poll interval. Each
// iteration publishes a new version, then times from the group change
// (SetGroup, handed to one daemon as `stork group set --notify` does)
// until every host's VM has the new version in its view. It reports the
// p50 and max over every host and update of that time (p50-s, max-s), of
// the time until each host trusted the new metadata (meta-p50-s,
// meta-max-s), and the origin's metadata requests per update.
//
//	go test ./node -run '^$' -bench GroupPropagation -benchtime 10x
func BenchmarkGroupPropagation(b *testing.B) {
	hosts := 20
	if testing.Short() {
		hosts = 4
	}
	o := newOrigin(b)
	o.publish(b, "app", "1.0.0", map[string]int{"app": 1000})
	if _, err := o.repo.SetGroup(context.Background(), "web", metadata.GroupChange{Add: []string{"app@1.0.0"}}); err != nil {
		b.Fatal(err)
	}
	nodes := groupSwarm(b, o, hosts, 60*time.Second)
	time.Sleep(2 * time.Second) // gossipsub heartbeats: the mesh forms
	var all, allMeta []time.Duration
	var metaReqs int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		v := fmt.Sprintf("1.0.%d", i+1)
		o.publish(b, "app", v, map[string]int{"app": 1000})
		before := o.metaReqs.Load()
		_, target := nodes[0].d.meta.state()
		target++ // SetGroup signs the next timestamp
		b.StartTimer()
		start := time.Now()
		if _, err := o.repo.SetGroup(context.Background(), "web", metadata.GroupChange{Add: []string{"app@" + v}}); err != nil {
			b.Fatal(err)
		}
		ts, err := os.ReadFile(filepath.Join(o.dir, "metadata", "timestamp.json"))
		if err != nil {
			b.Fatal(err)
		}
		if err := nodes[0].c.Announce(context.Background(), ts); err != nil {
			b.Fatal(err)
		}
		view, meta := waitApplied(b, nodes, "app@"+v, target, start, 60*time.Second)
		all, allMeta = append(all, view...), append(allMeta, meta...)
		b.StopTimer()
		time.Sleep(200 * time.Millisecond) // late requests of this update are counted with it
		metaReqs += o.metaReqs.Load() - before
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(all)
	slices.Sort(allMeta)
	b.ReportMetric(all[len(all)/2].Seconds(), "p50-s")
	b.ReportMetric(all[len(all)-1].Seconds(), "max-s")
	b.ReportMetric(allMeta[len(allMeta)/2].Seconds(), "meta-p50-s")
	b.ReportMetric(allMeta[len(allMeta)-1].Seconds(), "meta-max-s")
	b.ReportMetric(float64(metaReqs)/float64(b.N), "origin-meta-reqs/update")
	b.ReportMetric(float64(hosts), "hosts")
}

// waitApplied returns, per node, the time from start until its VM v1 had
// want, and until it trusted metadata of version target.
func waitApplied(b *testing.B, nodes []*swarmNode, want string, target int64, start time.Time, limit time.Duration) (view, meta []time.Duration) {
	out := make([]time.Duration, len(nodes))
	meta = make([]time.Duration, len(nodes))
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() {
			for {
				if _, v := n.d.meta.state(); meta[i] == 0 && v >= target {
					meta[i] = time.Since(start)
				}
				insts, err := n.c.Installs(context.Background(), "v1")
				if err == nil && len(insts) == 1 && insts[0].Name+"@"+insts[0].Version == want {
					out[i] = time.Since(start)
					return
				}
				if time.Since(start) > limit {
					errs[i] = fmt.Errorf("node %d: %s not applied within %s (installs %+v, %v)", i, want, limit, insts, err)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return out, meta
}
