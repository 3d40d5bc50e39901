package node

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestUpgradeSmallPackagesFewLookups: daemons that fetch an upgrade of
// many small packages at once find each other through have-lists, not a
// DHT walk per package, and the origin sends about one copy.
func TestUpgradeSmallPackagesFewLookups(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 daemons")
	}
	t.Parallel()
	const hosts, npkg = 6, 40
	o := newBswOrigin(t)
	set := publishUpgrade(t, o, npkg, 256<<10)
	regs := make([]*prometheus.Registry, 0, hosts)
	var nodes []*bswNode
	var boot []string
	for range hosts {
		reg := prometheus.NewRegistry()
		regs = append(regs, reg)
		n := startBswNodeWith(t, o, boot, func(c *Config) { c.Metrics = reg })
		boot = append(boot, n.status(t).Addrs...)
		nodes = append(nodes, n)
	}
	waitPeers(t, nodes, hosts-1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	before := o.chunkBytes.Load()
	if err := bswFetchAll(ctx, nodes, "upgrade"); err != nil {
		t.Fatal(err)
	}
	// About one copy: the 1.1 target is BenchmarkUpgrade's; here, on two
	// shared cores, a pull-through request that times out sends its
	// asker to the origin, so the bound only catches hosts fetching
	// alone (6 copies).
	if copies := float64(o.chunkBytes.Load()-before) / float64(set.bytes); copies > 1.5 {
		t.Errorf("origin sent %.2f copies of the upgrade, want at most 1.5", copies)
	}
	var lookups uint64
	for _, reg := range regs {
		lookups += dhtLookups(t, reg)
	}
	// A DHT walk is for what no neighbour lists (a manifest fetched
	// before anyone downloads its package, a package a host begins before
	// its neighbours): at most one per host for every two packages, where
	// every download walked at least once.
	if per := float64(lookups) / (hosts * npkg); per > 0.5 {
		t.Errorf("%d hosts fetching %d packages made %d DHT lookups (%.2f per package and host), want at most 0.5", hosts, npkg, lookups, per)
	}
	t.Logf("%d DHT lookups for %d packages at %d hosts", lookups, npkg, hosts)
	// A package of one chunk (all of them here, at most 256 KiB) is
	// worth a session with at most 2 peers (swarm's peerLimit): every
	// host opening one to every other for every package would be
	// (hosts-1)/2 = 2.5 per package and host.
	var opened int64
	for _, n := range nodes {
		opened += n.d.swarm.Counters().SessionStreamsOpened
	}
	if per := float64(opened) / (hosts * npkg); per > 2 {
		t.Errorf("%d hosts fetching %d one-chunk packages opened %d swarm streams (%.2f per package and host), want at most 2", hosts, npkg, opened, per)
	}
	t.Logf("%d swarm streams opened for %d packages at %d hosts", opened, npkg, hosts)
}

// dhtLookups is the count of DHT provider lookups reg's daemon observed.
func dhtLookups(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != "stork_node_dht_lookup_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}

// TestFetchManyPackagesFewDownloadsAtOnce: a closure of more packages than
// MaxDownloads runs at most MaxDownloads downloads at once, the rest
// waiting their turn, and completes.
func TestFetchManyPackagesFewDownloadsAtOnce(t *testing.T) {
	t.Parallel()
	const npkg = MaxDownloads + 8
	o := newBswOrigin(t)
	set := publishUpgrade(t, o, npkg, 64<<10)
	n := startBswNode(t, o, nil)
	// Chunks fail until released: the downloads that start stay running.
	o.failChunks.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := n.c.Fetch(ctx, "upgrade", nil)
		done <- err
	}()
	running := func() int {
		k := 0
		for _, m := range set.manifests {
			c, _ := m.CID()
			if _, ok := n.d.swarm.DownloadState(c); ok {
				k++
			}
		}
		return k
	}
	most := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		most = max(most, running())
	}
	o.failChunks.Store(false)
	if err := <-done; err != nil {
		t.Fatalf("Fetch(upgrade) = %v", err)
	}
	if most == 0 || most > MaxDownloads {
		t.Fatalf("%d downloads ran at once for a closure of %d packages, want 1 to %d", most, npkg+1, MaxDownloads)
	}
}
