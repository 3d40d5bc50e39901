package node

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The daemon's and its store's metrics follow a fetch and an install, and
// agree with `stork status`; they are unregistered when the daemon stops.
func TestDaemonMetrics(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "tool", "1.0.0", map[string]int{"bin/tool": 1<<20 + 3, "README": 100})
	const size = 1<<20 + 3 + 100
	reg := prometheus.NewRegistry()
	c := startDaemonWith(t, o, "", func(cfg *Config) { cfg.Metrics = reg })

	if v := gauge(t, reg, "stork_store_packages", "complete"); v != 0 {
		t.Fatalf("stork_store_packages{complete} = %v before any fetch", v)
	}
	if _, err := c.Fetch(context.Background(), "tool", nil); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		name, label string
		want        float64
	}{
		{"stork_node_received_bytes_total", "origin", size},
		{"stork_node_received_bytes_total", "peers", 0},
		{"stork_node_uploaded_bytes_total", "", 0},
		{"stork_store_packages", "complete", 1},
		{"stork_store_packages", "partial", 0},
		{"stork_store_package_bytes", "complete", size},
		{"stork_store_held_bytes", "", size},
		{"stork_node_vms", "", 0},
	} {
		if got := gauge(t, reg, m.name, m.label); got != m.want {
			t.Errorf("%s{%s} = %v, want %v", m.name, m.label, got, m.want)
		}
	}
	if float64(st.BytesFromOrigin) != gauge(t, reg, "stork_node_received_bytes_total", "origin") {
		t.Errorf("status bytes_from_origin %d disagrees with the metric", st.BytesFromOrigin)
	}
	// A second daemon cannot share the registry.
	data2 := t.TempDir()
	if d2, err := NewDaemon(context.Background(), Config{DataDir: data2, RepoURL: o.url, Root: o.root, Metrics: reg}); err == nil {
		d2.Close()
		t.Fatal("second daemon on one registry: NewDaemon = nil error, want an error")
	}
	// The refused daemon released its data directory.
	if d3, err := NewDaemon(context.Background(), Config{DataDir: data2, RepoURL: o.url, Root: o.root}); err != nil {
		t.Errorf("NewDaemon after a refused one on the same directory = %v", err)
	} else if err := d3.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if gauge(t, reg, "stork_store_packages", "complete") != 1 {
		t.Fatal("the refused second daemon changed the first one's metrics")
	}
}

// gauge returns the value of metric name (counter or gauge) whose only
// label, if any, has value label.
func gauge(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if ls := m.GetLabel(); label == "" || (len(ls) == 1 && ls[0].GetValue() == label) {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{%s} not gathered", name, label)
	return 0
}
