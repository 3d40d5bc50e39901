package node

// The upgrade figures (issue 23), run by `make bench-crowd`: hosts
// (STORK_UPGRADE_HOSTS, default 24) fetch an upgrade of packages
// (STORK_UPGRADE_PACKAGES, default 300) whose sizes are drawn from Debian
// 12 main (simulations/testdata/debian12-main-sizes.tsv, at most
// STORK_UPGRADE_MAX bytes each, default 64M) all at once: one meta
// package depending on all of them, fetched by every host (its closure:
// one metadata refresh, the packages' downloads at once). Modes, each on
// fresh daemons: coop (cooperative origin fetching), today
// (Config.NoPullThrough), and get: every host fetches every package over
// HTTP alone as `stork get --with-deps` does (the metadata refreshed and
// the closure resolved, then transfer/origin.Get, 8 packages at a time
// where stork get takes one, 8 chunk requests each). Then coop and get
// again with the origin's chunk bytes capped at STORK_UPGRADE_CAP bytes/s
// (default 200M) in all.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/simulations"
	httporigin "github.com/storkpm/stork/transfer/origin"
	"github.com/storkpm/stork/transfer/swarm"
)

// upgradeSet is the published upgrade: its packages' manifests.
type upgradeSet struct {
	manifests []*metadata.Manifest
	bytes     int64 // of chunks, each package's unique chunks once
}

// publishUpgrade publishes n packages with Debian's sizes (at most max
// bytes each) and the meta package "upgrade" depending on them.
func publishUpgrade(tb testing.TB, o *bswOrigin, n int, max int64) *upgradeSet {
	tb.Helper()
	dist, err := simulations.ReadSizeDist("../simulations/testdata/debian12-main-sizes.tsv")
	if err != nil {
		tb.Fatal(err)
	}
	pick := rand.New(rand.NewPCG(23, uint64(n)))
	data := rand.NewChaCha8([32]byte{23})
	set := &upgradeSet{}
	var deps []string
	for k := range n {
		size := min(dist.Sample(pick.Float64(), pick.Float64()), max)
		name := fmt.Sprintf("u%03d", k)
		o.publishTree(tb, name, "1.0.0", func(src string) error {
			return writeRandomFile(filepath.Join(src, "pkg.deb"), size, data)
		})
		deps = append(deps, name)
	}
	src := filepath.Join(tb.TempDir(), "upgrade")
	if err := os.MkdirAll(src, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "README"), []byte("the upgrade\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	if _, err := o.repo.Add(context.Background(), metadata.AddOptions{Name: "upgrade", Version: "1.0.0", Source: src, Depends: deps}); err != nil {
		tb.Fatal(err)
	}
	pkgs, err := o.repo.Packages()
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range pkgs {
		if !strings.HasPrefix(p.Name, "u") || p.Name == "upgrade" {
			continue
		}
		set.manifests = append(set.manifests, readManifest(tb, o, p.ManifestCID))
	}
	for _, m := range set.manifests {
		for _, r := range m.UniqueChunks() {
			set.bytes += r.Length
		}
	}
	return set
}

func readManifest(tb testing.TB, o *bswOrigin, c cid.Cid) *metadata.Manifest {
	b, err := os.ReadFile(filepath.Join(o.dir, metadata.ManifestsDir, c.String()))
	if err != nil {
		tb.Fatal(err)
	}
	m, err := metadata.DecodeManifest(b, metadata.DefaultLimits())
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// upgradeDaemons has hosts fresh daemons fetch "upgrade" at once, the
// phase profiled as startPhaseTrace says (suffix names it). It returns
// the time taken, the CPU time used, and the swarms' counters summed.
func upgradeDaemons(tb testing.TB, o *bswOrigin, hosts, npkgs int, coop bool, suffix string) (time.Duration, time.Duration, swarm.Counters) {
	tb.Helper()
	// One site, as in BenchmarkFlashCrowd: every daemon is on one
	// loopback, and a loaded machine's round trips can make a host infer
	// a site from scheduling noise, which turns the site policy on and
	// cooperative fetching off for good (STORK_UPGRADE_INFER_SITES lets
	// them infer; the hosts that did are logged).
	infer := os.Getenv("STORK_UPGRADE_INFER_SITES") != ""
	nodes := startCrowd(tb, o, hosts, func(c *Config) {
		c.NoPullThrough = !coop
		c.NoSiteInference = !infer
	})
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	stop := startPhaseTrace(tb, suffix)
	cpu0, start := cpuTime(), time.Now()
	if err := bswFetchAll(ctx, nodes, "upgrade"); err != nil {
		tb.Fatal(err)
	}
	took, cpu := time.Since(start), cpuTime()-cpu0
	stop()
	var ctr swarm.Counters
	var up, fromPeers, fromOrigin int64
	sited := 0
	for _, n := range nodes {
		ctr = ctr.Add(n.d.swarm.Counters())
		st := n.d.swarm.Stats()
		up, fromPeers, fromOrigin = up+st.BytesUploaded, fromPeers+st.BytesFromPeers, fromOrigin+st.BytesFromOrigin
		if n.d.swarm.Site().Name != "" {
			sited++
		}
	}
	if sited > 0 {
		tb.Logf("%d of %d hosts inferred a site from round-trip times", sited, hosts)
	}
	// Bytes sent to peers against those kept from peers: what crossed
	// the swarm's streams for nothing (duplicates, cancelled pulls).
	fmt.Fprintf(os.Stderr, "upgrade %s: uploaded %.1f MB, kept from peers %.1f MB (%.3fx), from origin %.1f MB\n", suffix, float64(up)/1e6, float64(fromPeers)/1e6, float64(up)/float64(max(fromPeers, 1)), float64(fromOrigin)/1e6)
	// Discovery per package and host: DHT provider walks, /stork/have
	// questions, provider records PUT, and finds the have-lists answered.
	var walks, asks, puts, lists, skips int64
	for _, n := range nodes {
		c := &n.d.p2p.counts
		walks, asks, puts, lists = walks+c.dhtLookups.Load(), asks+c.haveQueries.Load(), puts+c.dhtProvides.Load(), lists+c.fromHaveLists.Load()
		skips += c.meshSkips.Load()
	}
	per := float64(hosts) * float64(npkgs)
	fmt.Fprintf(os.Stderr, "upgrade %s: per package and host: %.2f DHT walks, %.2f /stork/have questions, %.2f DHT provides, %.2f finds answered by have-lists alone, %.2f DHT provides and walks left out (one neighbourhood)\n", suffix, float64(walks)/per, float64(asks)/per, float64(puts)/per, float64(lists)/per, float64(skips)/per)
	return took, cpu, ctr
}

// bswFetchAll has every node fetch pkg at once; the first error ends it.
func bswFetchAll(ctx context.Context, nodes []*bswNode, pkg string) error {
	g, gctx := errgroup.WithContext(ctx)
	for k, n := range nodes {
		g.Go(func() error {
			if _, err := n.c.Fetch(gctx, pkg, nil); err != nil {
				return fmt.Errorf("host %d: fetch %s: %w", k, pkg, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// upgradeGet has hosts fetch every package of set over HTTP alone, as
// `stork get --with-deps upgrade` does (metadata refreshed, the closure
// resolved, each package by transfer/origin.Get), 8 packages at a time
// per host.
func upgradeGet(tb testing.TB, o *bswOrigin, hosts int, set *upgradeSet, suffix string) (time.Duration, time.Duration) {
	tb.Helper()
	src, err := httporigin.NewClient(httporigin.Config{URL: o.url})
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	stop := startPhaseTrace(tb, suffix)
	cpu0, start := cpuTime(), time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for h := range hosts {
		g.Go(func() error {
			// What `stork get --with-deps upgrade` does before its
			// downloads, as the daemons do: the repository's metadata
			// refreshed and the closure resolved (every manifest fetched
			// and checked). The downloads then run 8 at a time, where
			// stork get runs them one after another.
			mc, err := metadata.NewClient(metadata.ClientConfig{Dir: filepath.Join(dir, fmt.Sprintf("h%02d-meta", h)), Root: o.root, Fetcher: src})
			if err != nil {
				return err
			}
			if err := mc.Refresh(gctx); err != nil {
				return err
			}
			closure, err := mc.ResolveClosure(gctx, "upgrade")
			if err != nil {
				return err
			}
			if len(closure) != len(set.manifests)+1 {
				return fmt.Errorf("host %d: the closure of upgrade has %d packages, want %d and itself", h, len(closure), len(set.manifests))
			}
			hg, hctx := errgroup.WithContext(gctx)
			hg.SetLimit(8)
			for k, r := range closure {
				hg.Go(func() error {
					_, err := httporigin.Get(hctx, httporigin.GetOptions{Manifest: r.Manifest, Source: src, OutDir: filepath.Join(dir, fmt.Sprintf("h%02d-p%03d", h, k)), NoOwners: true})
					return err
				})
			}
			return hg.Wait()
		})
	}
	if err := g.Wait(); err != nil {
		tb.Fatal(err)
	}
	took, cpu := time.Since(start), cpuTime()-cpu0
	stop()
	_ = os.RemoveAll(dir)
	return took, cpu
}

// BenchmarkUpgrade: see the file's comment. Targets (issue 23): coop's
// origin bytes <= 1.1x the upgrade's, its time <= get's uncapped and far
// less than get's capped.
func BenchmarkUpgrade(b *testing.B) {
	hosts, npk := 24, 300
	if s := os.Getenv("STORK_UPGRADE_HOSTS"); s != "" {
		fmt.Sscan(s, &hosts)
	}
	if s := os.Getenv("STORK_UPGRADE_PACKAGES"); s != "" {
		fmt.Sscan(s, &npk)
	}
	b.Setenv("STORK_BENCH_SIZE", os.Getenv("STORK_UPGRADE_MAX"))
	maxSize := benchSize(b, 64<<20)
	b.Setenv("STORK_BENCH_SIZE", os.Getenv("STORK_UPGRADE_CAP"))
	capRate := benchSize(b, 200<<20)
	o := newBswOrigin(b)
	set := publishUpgrade(b, o, npk, maxSize)
	b.Logf("upgrade: %d packages, %.1f MB of chunks, %d hosts", len(set.manifests), float64(set.bytes)/1e6, hosts)
	type row struct {
		mode   string
		capped bool
	}
	var mu sync.Mutex
	took := map[row]time.Duration{}
	copies := map[row]float64{}
	// allCopies: every origin byte (metadata and manifests too) over the
	// upgrade's bytes.
	allCopies := map[row]float64{}
	cpus := map[row]time.Duration{}
	rows := []row{{"coop", false}, {"today", false}, {"get", false}, {"coop", true}, {"get", true}}
	if m := os.Getenv("STORK_UPGRADE_MODES"); m != "" {
		// A subset, e.g. "coop,get-capped".
		rows = slices.DeleteFunc(rows, func(r row) bool {
			name := r.mode
			if r.capped {
				name += "-capped"
			}
			return !slices.Contains(strings.Split(m, ","), name)
		})
	}
	for _, r := range rows {
		o.setCap(0)
		if r.capped {
			o.setCap(capRate)
		}
		before, beforeAll, beforeMeta := o.chunkBytes.Load(), o.allBytes(), o.metaBytes.Load()
		var d, cpu time.Duration
		var ctr swarm.Counters
		suffix := "." + r.mode
		if r.capped {
			suffix += "-capped"
		}
		if r.mode == "get" {
			d, cpu = upgradeGet(b, o, hosts, set, suffix)
		} else {
			d, cpu, ctr = upgradeDaemons(b, o, hosts, len(set.manifests), r.mode == "coop", suffix)
		}
		mu.Lock()
		took[r], copies[r], cpus[r] = d, float64(o.chunkBytes.Load()-before)/float64(set.bytes), cpu
		allCopies[r] = float64(o.allBytes()-beforeAll) / float64(set.bytes)
		meta := float64(o.metaBytes.Load()-beforeMeta) / float64(set.bytes)
		mu.Unlock()
		// CPU-seconds per GiB delivered (hosts copies of the upgrade).
		perGiB := cpu.Seconds() / (float64(hosts) * float64(set.bytes) / (1 << 30))
		line := fmt.Sprintf("%s capped=%v: %.2fs, origin chunk bytes %.2fx the upgrade, all origin bytes %.2fx (metadata %.2fx, manifests %.2fx), %.1f CPU-s (%.2f per GiB delivered)",
			r.mode, r.capped, d.Seconds(), copies[r], allCopies[r], meta, allCopies[r]-copies[r]-meta, cpu.Seconds(), perGiB)
		if r.mode != "get" {
			line += fmt.Sprintf("; %+v", ctr)
		}
		// Also at once on stderr: b.Logf shows only when the benchmark
		// ends, and a run of many minutes may not.
		fmt.Fprintln(os.Stderr, "upgrade "+line)
		b.Log(line)
	}
	o.setCap(0)
	stream := upgradeStreamCPU(b, o, 256<<20)
	perGiB := func(r row) float64 {
		return cpus[r].Seconds() / (float64(hosts) * float64(set.bytes) / (1 << 30))
	}
	// The floor of a swarm mode's CPU: what get does with each byte
	// (fetch, hash, write) and one encrypted stream more.
	floor := perGiB(row{"get", false}) + stream
	line := fmt.Sprintf("CPU-s per GiB delivered: a libp2p stream %.2f; floor (get + stream) %.2f", stream, floor)
	for _, r := range rows {
		line += fmt.Sprintf("; %s capped=%v %.2f", r.mode, r.capped, perGiB(r))
	}
	fmt.Fprintln(os.Stderr, "upgrade "+line)
	b.Log(line)
	_, haveGet := cpus[row{"get", false}]
	if _, ok := cpus[row{"coop", false}]; ok && haveGet {
		b.ReportMetric(perGiB(row{"coop", false})/floor, "coop_cpu_vs_floor")
	}
	if len(rows) < 5 {
		return
	}
	c, g := took[row{"coop", false}], took[row{"get", false}]
	cc, gc := took[row{"coop", true}], took[row{"get", true}]
	b.Logf("| %d hosts, %d packages | coop | today | get |", hosts, npk)
	b.Logf("| origin chunk bytes / upgrade | %.2f | %.2f | %.2f |", copies[row{"coop", false}], copies[row{"today", false}], copies[row{"get", false}])
	b.Logf("| all origin bytes (metadata, manifests) / upgrade | %.2f | %.2f | %.2f |", allCopies[row{"coop", false}], allCopies[row{"today", false}], allCopies[row{"get", false}])
	b.Logf("| time, uncapped origin | %.1fs | %.1fs | %.1fs |", c.Seconds(), took[row{"today", false}].Seconds(), g.Seconds())
	b.Logf("| time, origin capped at %d MB/s | %.1fs | | %.1fs |", capRate/1e6, cc.Seconds(), gc.Seconds())
	b.Logf("| CPU-seconds, uncapped | %.1f | %.1f | %.1f |", cpus[row{"coop", false}].Seconds(), cpus[row{"today", false}].Seconds(), cpus[row{"get", false}].Seconds())
	b.Logf("| CPU-seconds per GiB delivered, uncapped (floor: get + one stream, %.2f) | %.2f | %.2f | %.2f |", floor, perGiB(row{"coop", false}), perGiB(row{"today", false}), perGiB(row{"get", false}))
	b.ReportMetric(copies[row{"coop", false}], "origin_ratio")
	b.ReportMetric(allCopies[row{"coop", false}], "origin_all_ratio")
	b.ReportMetric(c.Seconds()/g.Seconds(), "time_vs_get")
	b.ReportMetric(cc.Seconds()/gc.Seconds(), "time_vs_get_capped")
}

// setCap caps the origin's chunk bytes at bytesPerSec in all (0: none).
func (o *bswOrigin) setCap(bytesPerSec int64) {
	if bytesPerSec <= 0 {
		o.limit.Store(nil)
		return
	}
	o.limit.Store(rate.NewLimiter(rate.Limit(bytesPerSec), 1<<20))
}

// upgradeStreamCPU is the CPU-seconds per GiB that moving bytes over
// one libp2p stream between two daemons costs (TLS or Noise and yamux,
// both ends in this process): what the swarm does with every byte that
// `stork get` does not. Where the CPU is the limit, a swarm mode's time
// is measured against get's CPU plus this.
func upgradeStreamCPU(tb testing.TB, o *bswOrigin, size int64) float64 {
	tb.Helper()
	nodes := startCrowd(tb, o, 2, func(c *Config) { c.NoSiteInference = true })
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	cpu0 := cpuTime()
	rawCopy(tb, nodes[0].d.p2p, nodes[1].d.p2p, size)
	return (cpuTime() - cpu0).Seconds() / (float64(size) / (1 << 30))
}
