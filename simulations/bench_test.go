package simulations

import (
	"fmt"
	"testing"
)

// BenchmarkSwarm simulates a flash crowd of the default scenario (1 GiB in
// 1 MiB chunks) and reports the simulator's speed (events/s) and its peak
// heap. 10,000 hosts take over ten minutes: go test -timeout 60m -run '^$' -bench
// 'Swarm/hosts=10000' -benchtime 1x ./simulations/.
func BenchmarkSwarm(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			if n > 1000 && testing.Short() {
				b.Skip("10,000 hosts: minutes")
			}
			sc := DefaultScenario()
			sc.Hosts = n
			var events int64
			var secs float64
			var peak uint64
			for b.Loop() {
				r, err := RunMeasured(sc, Swarm)
				if err != nil {
					b.Fatal(err)
				}
				events += r.Events
				secs += r.Wall.Seconds()
				peak = max(peak, r.PeakHeap)
				b.ReportMetric(100*r.HostOffload, "host-offload-%")
				b.ReportMetric(r.Ratio, "x-bound")
			}
			b.ReportMetric(float64(events)/secs, "events/s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}
