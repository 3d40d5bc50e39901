package node

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/prometheus/client_golang/prometheus"
)

// TestResourceManagerReportsNoMetrics: the resource manager feeds no
// Prometheus reporter. libp2p's collectors are package globals that no
// endpoint of the daemon serves (its /metrics is the daemon's own
// registry); reporting to them cost a formatted event per stream opened
// or closed. Registered here on a registry of the test's own, they stay
// at zero.
func TestResourceManagerReportsNoMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	rcmgr.MustRegisterWith(reg)
	rm, err := newResourceManager(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	s, err := rm.OpenStream(peer.ID("a-peer"), network.DirInbound)
	if err != nil {
		t.Fatal(err)
	}
	s.Done()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			g, c, h := m.GetGauge().GetValue(), m.GetCounter().GetValue(), m.GetHistogram().GetSampleCount()
			if g != 0 || c != 0 || h != 0 {
				t.Errorf("the resource manager reported %s: %v", f.GetName(), m)
			}
		}
	}
}
