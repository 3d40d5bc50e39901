package node

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// The daemon's metrics, registered on Config.Metrics (made by cmd; nil
// registers nothing). The store and the swarm register their own (see
// share.Store.RegisterMetrics and transfer.Swarm.RegisterMetrics); the
// daemon adds the totals that `stork status --json` prints, which also count
// downloads made without the swarm:
//
//	stork_node_received_bytes_total{source="peers"|"origin"}
//	stork_node_uploaded_bytes_total
//	stork_node_peers   connected libp2p peers
//	stork_node_vms     registered VMs
//
// Every metric is read when scraped: nothing is counted twice on the data
// path.
func (d *Daemon) registerMetrics(reg prometheus.Registerer) (func(), error) {
	if reg == nil {
		return func() {}, nil
	}
	var undo []func()
	unregister := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	add := func(f func(), err error) error {
		if err != nil {
			return err
		}
		undo = append(undo, f)
		return nil
	}
	if err := add(d.store.RegisterMetrics(reg)); err != nil {
		unregister()
		return nil, err
	}
	if d.swarm != nil {
		if err := add(d.swarm.RegisterMetrics(reg)); err != nil {
			unregister()
			return nil, err
		}
	}
	status := func(f func(*Status) float64) func() float64 {
		return func() float64 {
			st, err := d.counters()
			if err != nil {
				return 0
			}
			return f(st)
		}
	}
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stork_node_received_bytes_total", Help: "Verified chunk bytes received, by source (swarm and direct downloads).",
			ConstLabels: prometheus.Labels{"source": "peers"},
		}, status(func(s *Status) float64 { return float64(s.BytesFromPeers) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stork_node_received_bytes_total", Help: "Verified chunk bytes received, by source (swarm and direct downloads).",
			ConstLabels: prometheus.Labels{"source": "origin"},
		}, status(func(s *Status) float64 { return float64(s.BytesFromOrigin) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stork_node_uploaded_bytes_total", Help: "Chunk bytes sent to peers.",
		}, status(func(s *Status) float64 { return float64(s.BytesUploaded) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stork_node_peers", Help: "Connected libp2p peers.",
		}, status(func(s *Status) float64 { return float64(s.Peers) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stork_node_vms", Help: "Registered VMs.",
		}, func() float64 {
			if d.vms == nil {
				return 0
			}
			return float64(len(d.vms.list()))
		}),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			unregister()
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("daemon metrics: already registered (one daemon per registry): %w", err)
			}
			return nil, fmt.Errorf("daemon metrics: %w", err)
		}
		undo = append(undo, func() { reg.Unregister(c) })
	}
	return unregister, nil
}
