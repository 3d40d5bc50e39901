package swarm

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics registers the swarm's counters on reg (the registry is
// made by cmd; a nil reg registers nothing). The metrics read the swarm's
// own counters when scraped, so they cost nothing on the data path:
//
//	stork_swarm_received_bytes_total{source="peers"|"origin"}
//	stork_swarm_uploaded_bytes_total
//	stork_swarm_sessions
//	stork_swarm_chunks_total{source="peers"|"origin", result="verified"|"failed"}
//
// It returns the function that unregisters them.
func (s *Swarm) RegisterMetrics(reg prometheus.Registerer) (func(), error) {
	if reg == nil {
		return func() {}, nil
	}
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "stork_swarm_received_bytes_total",
			Help:        "Verified chunk bytes received by swarm downloads, by source.",
			ConstLabels: prometheus.Labels{"source": "peers"},
		}, func() float64 { return float64(s.bytesFromPeers.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "stork_swarm_received_bytes_total",
			Help:        "Verified chunk bytes received by swarm downloads, by source.",
			ConstLabels: prometheus.Labels{"source": "origin"},
		}, func() float64 { return float64(s.bytesFromOrigin.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stork_swarm_uploaded_bytes_total",
			Help: "Chunk bytes sent to peers.",
		}, func() float64 { return float64(s.bytesUploaded.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stork_swarm_sessions",
			Help: "Open swarm streams.",
		}, func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			n := 0
			for _, m := range s.sessions {
				n += len(m)
			}
			return float64(n)
		}),
	}
	for _, src := range []struct {
		label string
		i     int
	}{{"peers", fromPeers}, {"origin", fromOrigin}} {
		for _, res := range []struct {
			label string
			i     int
		}{{"verified", verified}, {"failed", failed}} {
			n := &s.chunks[src.i][res.i]
			cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "stork_swarm_chunks_total",
				Help:        "Chunks received by swarm downloads, by source and by whether they passed verification.",
				ConstLabels: prometheus.Labels{"source": src.label, "result": res.label},
			}, func() float64 { return float64(n.Load()) }))
		}
	}
	return registerAll(reg, "swarm", cs)
}

// registerAll registers cs on reg, or none of them.
func registerAll(reg prometheus.Registerer, what string, cs []prometheus.Collector) (func(), error) {
	unregister := func(cs []prometheus.Collector) {
		for _, c := range cs {
			reg.Unregister(c)
		}
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			unregister(cs[:i])
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("%s metrics: already registered (one daemon per registry): %w", what, err)
			}
			return nil, fmt.Errorf("%s metrics: %w", what, err)
		}
	}
	return func() { unregister(cs) }, nil
}
