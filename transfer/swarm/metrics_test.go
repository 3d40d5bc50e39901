package swarm_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/storkpm/stork/transfer/transfertest"
)

// A download from one peer shows in both swarms' metrics, which agree with
// Stats; registering twice on one registry is refused.
func TestSwarmMetrics(t *testing.T) {
	p := newTestPackage(t, 7, 256<<10, 2<<20, 1000)
	c := newCluster(t, transfertest.LinkShape{})
	seeder := c.add("seeder", nil, nil)
	seeder.seed(p)
	leecher := c.add("leecher", newSwarmOrigin(p, 1<<20, 20*time.Millisecond), nil)

	regS, regL := prometheus.NewRegistry(), prometheus.NewRegistry()
	undoS, err := seeder.swarm.RegisterMetrics(regS)
	if err != nil {
		t.Fatal(err)
	}
	defer undoS()
	undoL, err := leecher.swarm.RegisterMetrics(regL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leecher.swarm.RegisterMetrics(regL); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("second RegisterMetrics on one registry = %v, want already registered", err)
	}

	if _, err := leecher.download(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	ls, ss := leecher.swarm.Stats(), seeder.swarm.Stats()
	if ls.BytesFromPeers+ls.BytesFromOrigin != p.size || ls.BytesFromPeers == 0 {
		t.Fatalf("leecher stats %+v: want %d bytes in all, some from the seeder", ls, p.size)
	}
	for _, c := range []struct {
		reg          *prometheus.Registry
		name, source string
		want         int64
	}{
		{regL, "stork_swarm_received_bytes_total", "peers", ls.BytesFromPeers},
		{regL, "stork_swarm_received_bytes_total", "origin", ls.BytesFromOrigin},
		{regL, "stork_swarm_uploaded_bytes_total", "", ls.BytesUploaded},
		{regS, "stork_swarm_received_bytes_total", "peers", 0},
	} {
		if got := metricValue(t, c.reg, c.name, "source", c.source); got != float64(c.want) {
			t.Errorf("%s{source=%q} = %v, want %d", c.name, c.source, got, c.want)
		}
	}
	// The seeder's uploads may still be leaving as the leecher's download
	// returns (a chunk it got first from the origin): its metric lies
	// between its Stats before and after.
	if got, after := metricValue(t, regS, "stork_swarm_uploaded_bytes_total", "source", ""), seeder.swarm.Stats().BytesUploaded; got < float64(ss.BytesUploaded) || got > float64(after) {
		t.Errorf("seeder's stork_swarm_uploaded_bytes_total = %v, want between its Stats before (%d) and after (%d)", got, ss.BytesUploaded, after)
	}
	// The seeder may send a chunk that the leecher got first from the origin
	// (an end-game duplicate, cancelled too late): the leecher counts what it
	// kept, the seeder what it sent.
	if ss.BytesUploaded < ls.BytesFromPeers || ss.BytesUploaded > ls.BytesFromPeers+p.size/2 {
		t.Errorf("seeder uploaded %d, leecher received %d from peers: want at least that, and not half the package more", ss.BytesUploaded, ls.BytesFromPeers)
	}

	undoL()
	if n, err := testutil.GatherAndCount(regL); err != nil || n != 0 {
		t.Fatalf("after unregister: %d metrics, err %v; want none", n, err)
	}
}

// metricValue gathers reg and returns the value of the counter or gauge
// name whose label (if any) has value; it fails the test if there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if value != "" {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == label && lp.GetValue() != value {
						continue metrics
					}
				}
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s{%s=%q} not gathered", name, label, value)
	return 0
}
