package node

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storkpm/stork/transfer/swarm"
)

// The daemon's metrics, registered on Config.Metrics (made by cmd; nil
// registers nothing). The store and the swarm register their own (see
// share.Store.RegisterMetrics and swarm.Swarm.RegisterMetrics); the
// daemon adds the totals that `stork status --json` prints:
//
//	stork_node_received_bytes_total{source="peers"|"origin"}
//	stork_node_uploaded_bytes_total
//	stork_node_chunks_total{source="peers"|"origin", result="verified"|"failed"}
//	stork_node_peers                 connected libp2p peers
//	stork_node_vms                   registered VMs
//	stork_node_downloads_active      package downloads running
//	stork_node_downloads_waiting_origin
//	                                 of those, the ones waiting for an unreachable origin
//	stork_node_downloads_total{result="complete"|"failed"}
//	stork_node_install_seconds       histogram: an install request, fetch included
//	stork_node_dht_lookup_seconds{result="found"|"none"}
//	                                 histogram: DHT provider lookups, to their first provider or their end
//	stork_node_metadata_version      version of the trusted timestamp applied
//	stork_node_metadata_refresh_timestamp_seconds
//	                                 when repository metadata was last refreshed (Unix time)
//	stork_node_announcements_total{result="applied"|"stale"|"refused"|"rate_limited"}
//	                                 peers' timestamp announcements (pubsub.go)
//
// Totals are read when scraped, so nothing is counted twice on the data
// path; the histograms and the metadata gauges are set as events happen.
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
	if err := add(d.swarm.RegisterMetrics(reg)); err != nil {
		unregister()
		return nil, err
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
			Name: "stork_node_received_bytes_total", Help: "Verified chunk bytes received, by source.",
			ConstLabels: prometheus.Labels{"source": "peers"},
		}, status(func(s *Status) float64 { return float64(s.BytesFromPeers) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stork_node_received_bytes_total", Help: "Verified chunk bytes received, by source.",
			ConstLabels: prometheus.Labels{"source": "origin"},
		}, status(func(s *Status) float64 { return float64(s.BytesFromOrigin) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stork_node_uploaded_bytes_total", Help: "Chunk bytes sent to peers.",
		}, status(func(s *Status) float64 { return float64(s.BytesUploaded) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stork_node_peers", Help: "Connected libp2p peers.",
		}, status(func(s *Status) float64 { return float64(s.Peers) })),
		d.metrics.downloads, d.metrics.installSeconds, d.metrics.dhtLookup,
		d.metrics.metadataVersion, d.metrics.metadataRefreshed, d.metrics.announcements,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stork_node_vms", Help: "Registered VMs.",
		}, func() float64 {
			if d.vms == nil {
				return 0
			}
			return float64(len(d.vms.list()))
		}),
	}
	cs = append(cs, d.downloadGauges()...)
	cs = append(cs, d.chunkCounters()...)
	cs = append(cs, d.pullCounters()...)
	for _, c := range []struct {
		result string
		n      *atomic.Int64
	}{{"taken", &d.metaFetcher.pullsTaken}, {"failed", &d.metaFetcher.pullsFailed}} {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "stork_node_file_pulls_total",
			Help:        "Repository files (manifests, metadata of a fixed version, timestamp.json) this host asked of a member ranked before it, by result: taken (a copy that verified) or failed (refused, silent, or a copy that did not verify; the next member is asked, then the origin).",
			ConstLabels: prometheus.Labels{"result": c.result},
		}, func() float64 { return float64(c.n.Load()) }))
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

// downloadGauges are stork_node_downloads_active and, of those,
// stork_node_downloads_waiting_origin.
func (d *Daemon) downloadGauges() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stork_node_downloads_active", Help: "Package downloads running.",
		}, func() float64 {
			d.fl.mu.Lock()
			defer d.fl.mu.Unlock()
			return float64(len(d.fl.m))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stork_node_downloads_waiting_origin", Help: "Package downloads that took what peers hold and wait for an unreachable origin.",
		}, func() float64 {
			n := 0
			for _, a := range d.activeDownloads(d.swarmActive()) {
				if a.WaitingOriginSince != nil {
					n++
				}
			}
			return float64(n)
		}),
	}
}

// chunkCounters are stork_node_chunks_total: the swarm's counts.
func (d *Daemon) chunkCounters() []prometheus.Collector {
	var cs []prometheus.Collector
	for _, c := range []struct {
		source, result string
		get            func(st swarm.Stats) int64
	}{
		{"peers", "verified", func(st swarm.Stats) int64 { return st.ChunksVerifiedPeers }},
		{"peers", "failed", func(st swarm.Stats) int64 { return st.ChunksFailedPeers }},
		{"origin", "verified", func(st swarm.Stats) int64 { return st.ChunksVerifiedOrigin }},
		{"origin", "failed", func(st swarm.Stats) int64 { return st.ChunksFailedOrigin }},
	} {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "stork_node_chunks_total",
			Help:        "Chunks received for downloads, by source and by whether they passed verification (a failed chunk is never stored).",
			ConstLabels: prometheus.Labels{"source": c.source, "result": c.result},
		}, func() float64 { return float64(c.get(d.swarm.Stats())) }))
	}
	return cs
}

// pullCounters are the swarm's Counters of cooperative fetching: the
// pull-through requests given up (by why), the streams opened, the chunk
// requests sent to the origin and, of the chunks asked of it, those
// another member ranked first for (fallbacks).
func (d *Daemon) pullCounters() []prometheus.Collector {
	var cs []prometheus.Collector
	for _, c := range []struct {
		outcome string
		get     func(p PullStatus) int64
	}{
		{"silent", func(p PullStatus) int64 { return p.Silent }},
		{"claimed", func(p PullStatus) int64 { return p.Claimed }},
		{"refused", func(p PullStatus) int64 { return p.Refused }},
	} {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "stork_node_pulls_given_up_total",
			Help:        "Pull-through requests this host gave up on a fetcher, by why: it said nothing, kept working without sending the chunk, or refused.",
			ConstLabels: prometheus.Labels{"outcome": c.outcome},
		}, func() float64 { return float64(c.get(pullStatus(d.swarm.Counters()))) }))
	}
	cs = append(cs,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stork_node_pull_streams_total", Help: "Pull-through streams this host opened to fetchers.",
		}, func() float64 { return float64(d.swarm.Counters().PullStreams) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stork_node_origin_chunk_requests_total", Help: "Chunk requests this host sent to the origin (for its downloads and for peers' pull-through requests).",
		}, func() float64 { return float64(d.swarm.Counters().OriginFetches) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stork_node_origin_fallbacks_total", Help: "Chunks this host asked the origin for although another member ranked first for them (its fetchers refused, failed or stayed silent): the duplicates cooperative fetching exists to avoid.",
		}, func() float64 { return float64(d.swarm.Counters().OriginFallbacks) }),
	)
	for _, c := range []struct {
		when string
		get  func(swarm.Counters) int64
	}{
		{"waited", func(c swarm.Counters) int64 { return c.OriginDownWaited }},
		{"at_once", func(c swarm.Counters) int64 { return c.OriginDownAtOnce }},
	} {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "stork_node_pulls_origin_down_total",
			Help:        "Pull-through requests this host answered that it cannot reach the origin: after an origin request failed (waited), or at once, the origin known unreachable (at_once). Rising: this host is cut off from the repository.",
			ConstLabels: prometheus.Labels{"when": c.when},
		}, func() float64 { return float64(c.get(d.swarm.Counters())) }))
	}
	return cs
}

// daemonMetrics are the metrics set as events happen. They exist whether
// or not a registry is given, so the code that observes them needs no
// check.
type daemonMetrics struct {
	downloads         *prometheus.CounterVec
	installSeconds    prometheus.Histogram
	dhtLookup         *prometheus.HistogramVec
	metadataVersion   prometheus.Gauge
	metadataRefreshed prometheus.Gauge
	announcements     *prometheus.CounterVec
}

func newDaemonMetrics() *daemonMetrics {
	m := &daemonMetrics{
		downloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stork_node_downloads_total", Help: "Package downloads finished, by result.",
		}, []string{"result"}),
		installSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "stork_node_install_seconds", Help: "Time to answer an install request, the fetch of what is missing included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12), // 5ms to about 5 minutes
		}),
		dhtLookup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stork_node_dht_lookup_seconds", Help: "DHT provider lookups: the time to the first provider (found), or to the end of a lookup that found none.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12), // 1ms to about a minute
		}, []string{"result"}),
		metadataVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stork_node_metadata_version", Help: "Version of the repository's signed timestamp the daemon last applied.",
		}),
		metadataRefreshed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stork_node_metadata_refresh_timestamp_seconds", Help: "When the daemon last refreshed the repository metadata, as Unix time.",
		}),
	}
	m.announcements = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stork_node_announcements_total", Help: "Timestamp announcements received from peers, by what became of them.",
	}, []string{"result"})
	for _, r := range []string{"applied", "stale", "refused", "rate_limited"} {
		m.announcements.WithLabelValues(r)
	}
	// Every label value shows from the first scrape, at zero.
	m.downloads.WithLabelValues("complete")
	m.downloads.WithLabelValues("failed")
	m.dhtLookup.WithLabelValues("found")
	m.dhtLookup.WithLabelValues("none")
	return m
}

func (m *daemonMetrics) observeLookup(d time.Duration, found bool) {
	result := "none"
	if found {
		result = "found"
	}
	m.dhtLookup.WithLabelValues(result).Observe(d.Seconds())
}

func (m *daemonMetrics) observeRefresh(at time.Time, version int64) {
	m.metadataVersion.Set(float64(version))
	m.metadataRefreshed.Set(float64(at.UnixNano()) / 1e9)
}

func (m *daemonMetrics) observeDownload(err error) {
	result := "complete"
	if err != nil {
		result = "failed"
	}
	m.downloads.WithLabelValues(result).Inc()
}
