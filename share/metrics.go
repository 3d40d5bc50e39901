package share

import (
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics registers the store's gauges on reg (the registry is made
// by cmd; a nil reg registers nothing). They are read from the index when
// scraped:
//
//	stork_store_packages{state}        packages by state
//	stork_store_package_bytes{state}   their total size
//	stork_store_held_bytes             bytes of them the store holds
//	stork_store_installs               VM installs
//	stork_store_damaged_objects_total  objects found changed on disk and quarantined
//	stork_store_repaired_objects_total damaged objects fetched again
//	stork_store_scrubbed_bytes_total   bytes the scrub re-hashed
//	stork_store_repairing_packages     packages waiting to be fetched again
//	stork_store_objects                distinct files (objects) in the store
//	stork_store_object_bytes           their bytes, each counted once
//
// Counting the objects reads their index records: a count is reused for a
// hundred times as long as it took (at most objectStatsMaxAge), so that
// scrapes spend at most about 1% of the time counting, and a small store
// is counted afresh at every scrape.
//
// It returns the function that unregisters them.
func (s *Store) RegisterMetrics(reg prometheus.Registerer) (func(), error) {
	if reg == nil {
		return func() {}, nil
	}
	c := &storeCollector{s: s, now: time.Now}
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("store metrics: %w", err)
	}
	return func() { reg.Unregister(c) }, nil
}

var (
	descPackages = prometheus.NewDesc("stork_store_packages",
		"Packages in the store, by state.", []string{"state"}, nil)
	descPackageBytes = prometheus.NewDesc("stork_store_package_bytes",
		"Total file bytes of the packages in the store, by state.", []string{"state"}, nil)
	descHeldBytes = prometheus.NewDesc("stork_store_held_bytes",
		"File bytes of the stored packages that the store holds.", nil, nil)
	descInstalls = prometheus.NewDesc("stork_store_installs",
		"VM installs of stored packages.", nil, nil)
	descDamaged = prometheus.NewDesc("stork_store_damaged_objects_total",
		"Objects found changed on disk and quarantined since the store was opened.", nil, nil)
	descRepaired = prometheus.NewDesc("stork_store_repaired_objects_total",
		"Damaged objects fetched again since the store was opened.", nil, nil)
	descScrubbed = prometheus.NewDesc("stork_store_scrubbed_bytes_total",
		"Bytes of objects the scrub re-hashed since the store was opened.", nil, nil)
	descRepairing = prometheus.NewDesc("stork_store_repairing_packages",
		"Packages waiting to be fetched again because objects they use were damaged.", nil, nil)
	descObjects = prometheus.NewDesc("stork_store_objects",
		"Distinct files (objects) in the store.", nil, nil)
	descObjectBytes = prometheus.NewDesc("stork_store_object_bytes",
		"Bytes of the objects in the store, each object counted once however many packages share it.", nil, nil)
)

// objectStatsMaxAge bounds how long an object count is reused.
const objectStatsMaxAge = 10 * time.Second

type storeCollector struct {
	s   *Store
	now func() time.Time

	mu       sync.Mutex // guards the cached object counts
	counted  time.Time
	took     time.Duration
	objects  int64
	objBytes int64
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPackages
	ch <- descPackageBytes
	ch <- descHeldBytes
	ch <- descInstalls
	ch <- descDamaged
	ch <- descRepaired
	ch <- descScrubbed
	ch <- descRepairing
	ch <- descObjects
	ch <- descObjectBytes
}

// Collect reports nothing if the store is closed or its index unreadable
// (a scrape must not fail the daemon).
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	pkgs, err := c.s.Packages()
	if err != nil {
		return
	}
	count := map[PackageState]int{}
	size := map[PackageState]int64{}
	var held int64
	installs := 0
	for _, p := range pkgs {
		count[p.State]++
		size[p.State] += p.Size
		held += p.Have
		installs += len(p.Installs)
	}
	for _, st := range []PackageState{StatePartial, StateComplete} {
		ch <- prometheus.MustNewConstMetric(descPackages, prometheus.GaugeValue, float64(count[st]), string(st))
		ch <- prometheus.MustNewConstMetric(descPackageBytes, prometheus.GaugeValue, float64(size[st]), string(st))
	}
	ch <- prometheus.MustNewConstMetric(descHeldBytes, prometheus.GaugeValue, float64(held))
	ch <- prometheus.MustNewConstMetric(descInstalls, prometheus.GaugeValue, float64(installs))
	dc := c.s.DamageCounts()
	ch <- prometheus.MustNewConstMetric(descDamaged, prometheus.CounterValue, float64(dc.Damaged))
	ch <- prometheus.MustNewConstMetric(descRepaired, prometheus.CounterValue, float64(dc.Repaired))
	ch <- prometheus.MustNewConstMetric(descScrubbed, prometheus.CounterValue, float64(dc.Scrubbed))
	if reps, err := c.s.RepairsPending(); err == nil {
		ch <- prometheus.MustNewConstMetric(descRepairing, prometheus.GaugeValue, float64(len(reps)))
	}
	if n, b, ok := c.objectStats(); ok {
		ch <- prometheus.MustNewConstMetric(descObjects, prometheus.GaugeValue, float64(n))
		ch <- prometheus.MustNewConstMetric(descObjectBytes, prometheus.GaugeValue, float64(b))
	}
}

func (c *storeCollector) objectStats() (n, bytes int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := c.now()
	if !c.counted.IsZero() && start.Sub(c.counted) < min(100*c.took, objectStatsMaxAge) {
		return c.objects, c.objBytes, true
	}
	n, bytes, err := c.s.ObjectStats()
	if err != nil {
		return 0, 0, false
	}
	c.counted, c.took, c.objects, c.objBytes = start, c.now().Sub(start), n, bytes
	return n, bytes, true
}

// objSize is the part of an object record ObjectStats reads.
type objSize struct {
	Size int64 `json:"size"`
}

// ObjectStats counts the objects the index records and their bytes.
func (s *Store) ObjectStats() (n, bytes int64, err error) {
	if s.isClosed() {
		return 0, 0, ErrClosed
	}
	err = s.db.View(func(txn *badger.Txn) error {
		return scanJSON(txn, prefixObject, func(_ []byte, r *objSize) error {
			n++
			bytes += r.Size
			return nil
		})
	})
	return n, bytes, err
}
