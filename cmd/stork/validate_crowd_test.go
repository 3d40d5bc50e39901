package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/node"
	"github.com/storkpm/stork/simulations"
	"github.com/storkpm/stork/transfer/policy"
)

// The issue 23 scenarios side by side (`make validate-crowd`,
// docs/validation.md): real daemon processes on loopback, rate-capped as
// in TestValidateSimulator, and the simulator on the same scenario, with
// and without cooperative origin fetching (daemons with and without
// --no-pull-through; swarm-coop and swarm):
//
//   - the flash crowd: every host fetches one package of random bytes at
//     once, for each size of STORK_SIMVAL_SIZES;
//   - the upgrade: every host fetches a meta package depending on
//     STORK_SIMVAL_PACKAGES packages whose sizes the simulator's workload
//     draws (simulations.WorkloadSizes: Debian 12 main's sizes, cut to
//     STORK_SIMVAL_MAX), so that both sides fetch the same sizes.
//
// Both take minutes and run only when STORK_SIMVAL is set (a comma list:
// crowd, upgrade). Settings, from the environment: STORK_SIMVAL_HOSTS
// (24), STORK_SIMVAL_SIZES (64K,1M,4M,64M), STORK_SIMVAL_PACKAGES (300),
// STORK_SIMVAL_MAX (1M), STORK_SIMVAL_ORIGIN_RATE (12M),
// STORK_SIMVAL_UPLOAD_RATE (4M), STORK_SIMVAL_MODES (coop,swarm),
// STORK_SIMVAL_CALIBRATE (32M; 0: no calibration, no cpu section),
// STORK_SIMVAL_DAEMON_LOGS (set, with STORK_SIMVAL_OUT: the daemons of
// each measured run log at debug level, kept in the output directory;
// one line per chunk kept and sent, by route),
// STORK_SIMVAL_SEEDS (3), STORK_SIMVAL_PROVIDER_DELAY and
// STORK_SIMVAL_OVERHEAD (the simulator's policy.provider_delay and
// packages.overhead, default 0), STORK_SIMVAL_DISCOVERY_DELAY (the
// simulator's policy.discovery_delay, default 0), STORK_SIMVAL_MEASURED
// (set: the simulator takes both from the same real run instead:
// discovery_delay the median time from the fetches' start to the end of
// the origin's manifest responses, read from its request log,
// readOriginLog; provider_delay just after it and find_interval one
// tick (a download's have-list push reaches its neighbours after their
// own first lookup, and they take it in on their next tick); the
// simulator's cpu section (the upgrade, and each flash crowd, whose
// per_package is a host's start-up and fixed costs for its one package):
// STORK_SIMVAL_CORES (default the
// machine's) shared by every daemon, the CPU per byte moved (sent to a
// peer, cancelled parts included, or taken from the origin: the daemons'
// counters, as the simulator charges every byte a flow moves) and per
// host and package solved from a calibration fetch of one package of
// STORK_SIMVAL_CALIBRATE bytes (32M) on fresh daemons just before and
// the run's own CPU, solveCPU; beside it, the same solved per byte the
// hosts needed, and the serial packages.overhead
// it replaces: the daemons' CPU seconds per host and package times the
// hosts over the cores). In a flash crowd the cooperative simulator
// takes the daemons' own fetchers, which daemon ranks first for which
// chunk (daemonFetchers: their peer IDs, the chunks' CIDs), not the
// ranking of its own host names, the same at every seed. The simulator's
// metadata section is measured on the repository's files on disk
// (repoMetadata): its row "origin copies (sent)" is its chunks and that
// section's bytes, beside all the origin process wrote (headers and its
// log lines too); "origin copies (bodies, its log)" beside the chunks'
// and files' bodies the origin's log lists; "origin chunk copies" its
// chunks alone. Beside each table: what the origin's log says
// and the daemons' CPU. Each table is logged, and written to
// STORK_SIMVAL_OUT (a directory) if set; a gap over validateMaxGap is
// reported, not failed: the daemons' batching and large-package paths
// are changing, and the figure is what this measures.

// simvalConfig is the harness's settings.
type simvalConfig struct {
	hosts, packages, seeds  int
	sizes                   []int64
	maxSize                 int64
	originRate, uploadRate  int64
	modes                   []string
	providerDelay, overhead time.Duration
	discoveryDelay          time.Duration
	measured                bool  // discovery_delay and overhead from the run
	cores                   int   // the machine's cores the daemons share
	calibrate               int64 // the calibration package's size (measured)
	out                     string
	daemonLogs              bool // the daemons' debug logs kept in out
	// commit: by mode, the per-host commit work (simulator per_commit)
	// of the smallest crowd, where the bytes cost least beside it
	// (workAfterStartUp), charged to the larger crowds after it; nil:
	// none (the upgrade).
	commit map[string]float64
}

// calibration is a package every host fetches before a workload, on the
// same daemons' settings, to measure their CPU per byte apart from the
// run it predicts.
type calibration struct {
	pkg   string
	bytes float64 // one host's
}

func simvalSettings(t *testing.T, what string) simvalConfig {
	t.Helper()
	if !slices.Contains(strings.Split(os.Getenv("STORK_SIMVAL"), ","), what) {
		t.Skipf("set STORK_SIMVAL=%s (make validate-crowd) to run", what)
	}
	c := simvalConfig{hosts: 24, packages: 300, seeds: 3, maxSize: 1 << 20, originRate: 12 << 20, uploadRate: 4 << 20, calibrate: 32 << 20,
		modes: []string{"coop", "swarm"}, out: os.Getenv("STORK_SIMVAL_OUT")}
	num := func(name string, dst *int) {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				t.Fatalf("%s=%q: want a positive integer", name, v)
			}
			*dst = n
		}
	}
	size := func(name, v string) int64 {
		n, err := parseSize(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s: %q: want a size such as 4M", name, v)
		}
		return n
	}
	dur := func(name string, dst *time.Duration) {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				t.Fatalf("%s=%q: want a duration", name, v)
			}
			*dst = d
		}
	}
	num("STORK_SIMVAL_HOSTS", &c.hosts)
	num("STORK_SIMVAL_PACKAGES", &c.packages)
	num("STORK_SIMVAL_SEEDS", &c.seeds)
	sizes := "64K,1M,4M,64M"
	if v := os.Getenv("STORK_SIMVAL_SIZES"); v != "" {
		sizes = v
	}
	for _, s := range strings.Split(sizes, ",") {
		c.sizes = append(c.sizes, size("STORK_SIMVAL_SIZES", s))
	}
	for name, dst := range map[string]*int64{"STORK_SIMVAL_MAX": &c.maxSize, "STORK_SIMVAL_ORIGIN_RATE": &c.originRate, "STORK_SIMVAL_UPLOAD_RATE": &c.uploadRate, "STORK_SIMVAL_CALIBRATE": &c.calibrate} {
		if v := os.Getenv(name); v != "" {
			*dst = size(name, v)
		}
	}
	if v := os.Getenv("STORK_SIMVAL_MODES"); v != "" {
		c.modes = strings.Split(v, ",")
	}
	for _, m := range c.modes {
		if m != "coop" && m != "swarm" {
			t.Fatalf("STORK_SIMVAL_MODES: %q: want coop or swarm", m)
		}
	}
	dur("STORK_SIMVAL_PROVIDER_DELAY", &c.providerDelay)
	dur("STORK_SIMVAL_OVERHEAD", &c.overhead)
	dur("STORK_SIMVAL_DISCOVERY_DELAY", &c.discoveryDelay)
	c.measured = os.Getenv("STORK_SIMVAL_MEASURED") != ""
	c.cores = runtime.NumCPU()
	num("STORK_SIMVAL_CORES", &c.cores)
	c.daemonLogs = os.Getenv("STORK_SIMVAL_DAEMON_LOGS") != "" && c.out != ""
	return c
}

// scenario is validate.json with c's hosts, rates and discovery.
func (c simvalConfig) scenario(t *testing.T) simulations.Scenario {
	t.Helper()
	sc, err := simulations.LoadScenario(filepath.Join("..", "..", "testdata", "validate", "validate.json"))
	if err != nil {
		t.Fatal(err)
	}
	sc.Hosts = c.hosts
	sc.OriginUpload = simulations.Rate(c.originRate)
	sc.HostUpload = simulations.Dist{{Rate: simulations.Rate(c.uploadRate), Weight: 1}}
	sc.Policy.ProviderDelay = simulations.Duration(c.providerDelay)
	sc.Policy.DiscoveryDelay = simulations.Duration(c.discoveryDelay)
	// The daemons' upload limiter hands out turns of one piece
	// (transfer/swarm ratePiece, waitUpload) to the peers in fair order.
	sc.UploadPiece = daemonUploadPiece
	return sc
}

// daemonUploadPiece: transfer/swarm's ratePiece, the bytes of one turn
// at a daemon's upload limiter.
const daemonUploadPiece = 64 << 10

// mode returns the daemons' extra flags and the simulator's strategy.
func (c simvalConfig) mode(m string) ([]string, simulations.Strategy) {
	rate := []string{"--upload-rate", strconv.FormatInt(c.uploadRate, 10)}
	if m == "coop" {
		return rate, simulations.SwarmCoop
	}
	return append(rate, "--no-pull-through"), simulations.Swarm
}

// compare runs pkg on fresh daemons and sc in the simulator for every
// mode, and logs (and writes) the table; bytes is what one host fetches.
// keys (a flash crowd: its package's chunk keys, chunkKeys) give the
// simulator of the cooperative mode the daemons' own fetchers
// (daemonFetchers, Scenario.Fetchers); nil: the simulator ranks.
func (c simvalConfig) compare(t *testing.T, title string, r repoFixture, sc simulations.Scenario, pkg string, closure []string, bytes float64, cal calibration, keys []uint64) {
	t.Helper()
	packages := max(sc.Packages.Count, 1)
	logDir := c.out
	if logDir == "" {
		logDir = t.TempDir()
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(logDir, strings.NewReplacer(" ", "-", ",", "").Replace(title)+"-origin.log")
	url, origin := serveProcLogged(t, r.dir, logPath, "--rate", strconv.FormatInt(c.originRate, 10))
	var all strings.Builder
	for _, m := range c.modes {
		flags, st := c.mode(m)
		// The repository's files the hosts fetch (closure: the packages'
		// names), measured on disk; with pull-through every bin.
		sc.Metadata = repoMetadata(t, r.dir, closure, m == "coop")
		daemonLogs := ""
		if c.daemonLogs {
			daemonLogs = filepath.Join(c.out, strings.NewReplacer(" ", "-", ",", "").Replace(title)+"-"+m+"-daemons")
		}
		var calRun realRun
		if cal.pkg != "" && c.measured {
			calRun = validateRealRunAt(t, c.hosts, url, r.root, cal.pkg, flags, "")
		}
		calCPU := calRun.cpu
		w0 := writtenBytes(t, origin.Pid)
		real := validateRealRunAt(t, c.hosts, url, r.root, pkg, flags, daemonLogs)
		done, kept := real.done, real.kept
		realOrigin := float64(writtenBytes(t, origin.Pid) - w0)
		ot := c.originTimes(t, logPath, real.t0, r.dir)
		perDownload := real.cpu / float64(c.hosts*packages)
		need := float64(c.hosts) * bytes // what the hosts must receive
		sc.Fetchers = nil
		if st == simulations.SwarmCoop && len(keys) > 0 {
			// The daemons' draw, one run against one run: which host
			// fetches which chunk sets a small crowd's time (two chunks
			// on one host take its upload twice as long).
			sc.Fetchers = daemonFetchers(real.hosts, keys)
		}
		var received simulations.CPU // the cpu section per byte received, beside
		if c.measured {
			// The run's own measures (docs/validation.md): a fetch's
			// start-up until its manifest, and with many packages each
			// download's CPU on the cores every host's daemon shares.
			sc.Policy.DiscoveryDelay = simulations.Duration(time.Duration(ot.medianManifest * 1e9))
			// A download announces its package (have-lists pushed to
			// the neighbours, node.P2P.Provide) once it has started,
			// after its own first lookup; the neighbours take the push
			// in on their next tick, not at a later lookup.
			sc.Policy.ProviderDelay = sc.Policy.DiscoveryDelay + simulations.Duration(time.Millisecond)
			sc.Policy.FindInterval = sc.Policy.Tick
			sc.CPU, received = c.measuredCPU(calRun, float64(c.hosts)*cal.bytes, real, need, packages)
		}
		withStart := sc
		crowd := packages == 1
		own := 0.0 // this crowd's CPU after its start-up less its bytes', per host
		var startWork simulations.Scenario
		switch {
		case sc.CPU.Cores > 0 && crowd:
			sc, startWork = crowdCPU(sc)
			// A host's work at the end of its download, on the shared
			// cores: measured on the smallest crowd, whose CPU after the
			// start-up is hardly its bytes' (as per_byte is measured on
			// the calibration, whose hosts' own work is small beside its
			// bytes'); in a larger crowd what the bytes at per_byte do
			// not account for is not all per host (docs/validation.md).
			own = workAfterStartUp(real, ot.medianManifest, sc.CPU.PerByte, c.hosts)
			if _, ok := c.commit[m]; !ok && c.commit != nil {
				c.commit[m] = own
			}
			sc.CPU.PerCommit = c.commit[m]
		case sc.CPU.Cores > 0:
			// The start-up the manifests' median measures is CPU on the
			// shared cores, which per_package carries: the simulator's
			// fixed start-up would count it twice. Kept beside it.
			sc.Policy.DiscoveryDelay = 0
			sc.Policy.ProviderDelay = simulations.Duration(time.Millisecond)
		}
		sim := validateSimRuns(t, sc, st, c.seeds)
		rows := []validateRow{
			{"origin chunk copies", ot.chunkBytes / bytes, sim.origin / bytes},
			{"origin copies (sent)", realOrigin / bytes, sim.total / bytes},
			// What the simulator counts, read from the origin's log: the
			// chunks' and files' bodies, without the responses' headers
			// and the log's own lines, which the row above has.
			{"origin copies (bodies, its log)", (ot.chunkBytes + ot.fileBytes) / bytes, sim.total / bytes},
			{"makespan s", slices.Max(done), sim.makespan},
			{"median completion s", median(done), sim.median},
		}
		if real.moved > 0 {
			rows = append(rows, validateRow{"bytes moved / needed", real.moved / need, sim.moved / need})
		}
		if startWork.CPU.Cores > 0 {
			sw := validateSimRuns(t, startWork, st, c.seeds)
			noCPU := sc
			noCPU.CPU = simulations.CPU{}
			nc := validateSimRuns(t, noCPU, st, c.seeds)
			rows = append(rows, validateRow{"makespan s, cpu with start-up work", slices.Max(done), sw.makespan},
				validateRow{"median completion s, cpu with start-up work", median(done), sw.median},
				validateRow{"makespan s, no cpu", slices.Max(done), nc.makespan},
				validateRow{"median completion s, no cpu", median(done), nc.median})
		}
		rows = append(rows, pieceRows(t, sc, st, c.seeds, done, own)...)
		if received.Cores > 0 && !crowd {
			rs := sc
			rs.CPU = received
			rr := validateSimRuns(t, rs, st, c.seeds)
			rows = append(rows, validateRow{"makespan s, cpu per byte needed", slices.Max(done), rr.makespan},
				validateRow{"median completion s, cpu per byte needed", median(done), rr.median})
		}
		serial := ""
		if sc.CPU.Cores > 0 && !crowd {
			ws := validateSimRuns(t, withStart, st, c.seeds)
			rows = append(rows, validateRow{"makespan s, cpu and start-up", slices.Max(done), ws.makespan},
				validateRow{"median completion s, cpu and start-up", median(done), ws.median})
		}
		if c.measured && packages > 1 {
			// Before the CPU model: each host's packages started one
			// after the other, the run's CPU per download times the
			// hosts over the cores apart (it counts the CPU the daemons
			// overlap with moving bytes twice), after the start-up.
			old := withStart
			old.CPU = simulations.CPU{}
			old.Packages.Overhead = simulations.Duration(time.Duration(perDownload * float64(c.hosts) / float64(c.cores) * 1e9))
			o := validateSimRuns(t, old, st, c.seeds)
			rows = append(rows, validateRow{"makespan s, serial overhead", slices.Max(done), o.makespan},
				validateRow{"median completion s, serial overhead", median(done), o.median})
			serial = fmt.Sprintf("; serial overhead %s", time.Duration(old.Packages.Overhead))
		}
		load, _ := os.ReadFile("/proc/loadavg")
		head := fmt.Sprintf("%s, %s (daemons %v, simulator %s, %d seeds): %d hosts, origin %d B/s, uploads %d B/s; the daemons kept %.3f copies; load %s; real run %.0fs",
			title, m, flags, st, c.seeds, c.hosts, c.originRate, c.uploadRate, kept/bytes, strings.Fields(string(load) + " ?")[0], time.Since(real.t0).Seconds())
		head += fmt.Sprintf("\n%s\ndaemons' CPU from the fetches' start to the last one's end: %.1fs, %.1f ms per host and package; simulator discovery_delay %s, provider_delay %s, find_interval %s, packages.overhead %s (%d cores)",
			ot, real.cpu, 1e3*perDownload, time.Duration(sc.Policy.DiscoveryDelay), time.Duration(sc.Policy.ProviderDelay), time.Duration(sc.Policy.FindInterval), time.Duration(sc.Packages.Overhead), c.cores)
		if crowd {
			head += fmt.Sprintf("\nsimulator uploads in pieces of %d B (upload_piece; \"fluid uploads\": 0); commit work per_commit %.1f ms per host, the smallest crowd's (\"no commit work\": 0); this crowd's CPU after the median manifest less per_byte times the bytes moved: %.1f ms per host (rows \"... as commit work\": per_commit, \"... beside the download\": per_download)",
				int64(sc.UploadPiece), 1e3*sc.CPU.PerCommit, 1e3*own)
		}
		if startWork.CPU.Cores > 0 {
			head += fmt.Sprintf("\ncalibration: %s (%.0f B per host) took %.1f CPU-s, the daemons moved %.3f times what the hosts needed; simulator cpu: %g cores, per_byte %.2f ns per byte moved (mostly the calibration's), the measured start-up (discovery_delay above); beside it \"cpu with start-up work\": per_package %.1f ms (this run's CPU less its bytes') as each host's start-up work, no discovery_delay; \"no cpu\": the measured start-up alone",
				cal.pkg, cal.bytes, calCPU, calRun.moved/(float64(c.hosts)*cal.bytes), sc.CPU.Cores, 1e9*sc.CPU.PerByte, 1e3*startWork.CPU.PerPackage)
		} else if sc.CPU.Cores > 0 {
			head += fmt.Sprintf("\ncalibration: %s (%.0f B per host) took %.1f CPU-s, the daemons moved %.3f times what the hosts needed; simulator cpu: %g cores, per_byte %.2f ns per byte moved (mostly the calibration's), per_package %.1f ms (this run's CPU less its bytes'), no start-up (\"cpu and start-up\": discovery_delay %s)%s; per byte needed instead: %.2f ns, %.1f ms",
				cal.pkg, cal.bytes, calCPU, calRun.moved/(float64(c.hosts)*cal.bytes), sc.CPU.Cores, 1e9*sc.CPU.PerByte, 1e3*sc.CPU.PerPackage, time.Duration(withStart.Policy.DiscoveryDelay), serial,
				1e9*received.PerByte, 1e3*received.PerPackage)
		}
		if end := real.profile[len(real.profile)-1].at; ot.medianManifest > 0 && end > ot.medianManifest {
			// Where the daemons' CPU goes in time: a crowd's small
			// packages are CPU-bound (docs/validation.md).
			before := real.cpuUntil(ot.medianManifest)
			w := max(0.25, math.Round(end/40*4)/4)
			head += fmt.Sprintf("\ndaemons' CPU until the median manifest (the start-up, %.3fs): %.2f CPU-s (%.1f ms per host, %.2f cores); after it: %.2f CPU-s (%.1f ms per host, %.2f cores); cores used per %gs from the start: %s",
				ot.medianManifest, before, 1e3*before/float64(c.hosts), before/ot.medianManifest,
				real.cpu-before, 1e3*(real.cpu-before)/float64(c.hosts), (real.cpu-before)/(end-ot.medianManifest), w, real.cpuProfile(w))
		}
		if len(sc.Fetchers) > 0 {
			var draw, asked []string
			for _, f := range sc.Fetchers {
				draw = append(draw, fmt.Sprintf("h%02d", f))
			}
			for i, h := range real.hosts {
				if h.originFetches > 0 {
					asked = append(asked, fmt.Sprintf("h%02d (%d)", i, h.originFetches))
				}
			}
			head += fmt.Sprintf("\nsimulator fetchers: the daemons' draw (policy.Fetchers over their peer IDs, the chunks' CIDs), chunk by chunk: %s; the daemons that asked the origin (chunk requests): %s",
				strings.Join(draw, " "), strings.Join(asked, " "))
		}
		sm := sc.Metadata
		head += fmt.Sprintf("\nsimulator metadata section (the repository's files on disk, repoMetadata): per_host %d B (root probe), files %d B (timestamp, fixed-version metadata and manifests), %.0f B from the origin in all, %.3f copies (counted, not simulated); the origin's log: %.0f B of these files' bodies in %d responses; the origin wrote %.0f B beyond its chunk and file bodies (headers, its log), %.0f B per response",
			sm.PerHost, sm.Files, sim.total-sim.origin, (sim.total-sim.origin)/bytes, ot.fileBytes, ot.responses, realOrigin-ot.chunkBytes-ot.fileBytes, (realOrigin-ot.chunkBytes-ot.fileBytes)/float64(max(ot.responses, 1)))
		pl := real.pulls
		head += fmt.Sprintf("\ndaemons' pull-through: %d streams; given up %d silent, %d claimed, %d refused; origin chunk requests %d, of them fallbacks %d; %d of %d daemons inferred a site",
			pl.Streams, pl.Silent, pl.Claimed, pl.Refused, pl.OriginFetches, pl.OriginFallbacks, real.inferred, c.hosts)
		head += fmt.Sprintf("\nbytes: the daemons sent %.0f B to peers and took %.0f B from the origin (%.3f times the %.0f B the hosts needed; %.0f B verified from peers); the simulator moved %.0f B (%.3f times)",
			real.moved-real.kept, real.kept, real.moved/need, need, real.fromPeers, sim.moved, sim.moved/need)
		if c.measured {
			free := c.scenario(t)
			free.PackageSize, free.Packages, free.Fetchers = sc.PackageSize, sc.Packages, sc.Fetchers
			free.Packages.Overhead = simulations.Duration(c.overhead)
			f := validateSimRuns(t, free, st, c.seeds)
			head += fmt.Sprintf("\nsimulator without the measured terms: origin copies %.3f, makespan %.3fs, median completion %.3fs", f.origin/bytes, f.makespan, f.median)
		}
		table, missed := validateTable(head, rows)
		table += "\nthe daemons host by host (hNN: start order; h00 the bootstrap):\n" + hostTable(real, bytes)
		if daemonLogs != "" {
			table += "their debug logs: " + daemonLogs + "\n"
		}
		t.Logf("\n%s", table)
		for _, s := range missed {
			t.Logf("over the limit: %s", s)
		}
		all.WriteString(table + "\n")
	}
	if c.out != "" {
		name := filepath.Join(c.out, strings.NewReplacer(" ", "-", ",", "").Replace(title)+".txt")
		if err := os.WriteFile(name, []byte(all.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// crowdCPU splits a flash crowd's scenario sc, with its measured
// start-up (policy.discovery_delay) and cpu section, in two: head, the
// table's figures, keeps the measured start-up and the CPU per byte,
// without per_package; startWork, beside it, is the upgrade's model,
// per_package as each host's start-up work on the shared cores and no
// fixed start-up. In a crowd the two disagree on what is measured: the
// origin's log has every manifest out within about half a second, while
// per_package (100-370 ms per host in the runs of 2026-12-05 23:05 UTC,
// 24 hosts on 2 cores) would keep the start-ups running 1.2-4.4 s; that
// CPU is the daemons' during and after their transfers (it grew with
// the run's length): what of it comes after the start-up, less the
// bytes', is in part each host's commit work (per_commit, set by the
// caller: workAfterStartUp).
func crowdCPU(sc simulations.Scenario) (head, startWork simulations.Scenario) {
	head, startWork = sc, sc
	head.CPU.PerPackage = 0
	startWork.Policy.DiscoveryDelay = 0
	startWork.Policy.ProviderDelay = simulations.Duration(time.Millisecond)
	return head, startWork
}

// workAfterStartUp is a flash crowd's CPU per host after its start-up
// (the median manifest, at seconds from the fetches' start) that its
// bytes do not account for at perByte: on the smallest crowd, the
// simulator's per_commit. 0 without a CPU profile or when the bytes
// account for it all.
func workAfterStartUp(real realRun, startUp, perByte float64, hosts int) float64 {
	after := real.cpu - real.cpuUntil(startUp)
	w := (after - perByte*real.moved) / float64(hosts)
	if !(w > 0) || !(startUp > 0) {
		return 0
	}
	return w
}

// pieceRows are the figures in the simulator with its uploads in pieces
// or its commit work (a crowd's), or both, taken out (sc has them), and
// with a crowd's own CPU after its start-up less its bytes' (own, per
// host) as its commit work or as work beside its download; the daemons'
// done times beside them.
func pieceRows(t *testing.T, sc simulations.Scenario, st simulations.Strategy, seeds int, done []float64, own float64) []validateRow {
	t.Helper()
	type variant struct {
		name         string
		pieces       bool
		commit, work float64
	}
	pc := sc.CPU.PerCommit
	vs := []variant{{"fluid uploads", false, pc, 0}}
	if own > 0 {
		vs = []variant{{"fluid uploads, no commit work", false, 0, 0}, {"fluid uploads", false, pc, 0}, {"no commit work", true, 0, 0},
			{"this crowd's own as commit work", true, own, 0}, {"this crowd's own beside the download", true, 0, own}}
	}
	var rows []validateRow
	for _, v := range vs {
		x := sc
		if !v.pieces {
			x.UploadPiece = 0
		}
		x.CPU.PerCommit, x.CPU.PerDownload = v.commit, v.work
		f := validateSimRuns(t, x, st, seeds)
		rows = append(rows, validateRow{"makespan s, " + v.name, slices.Max(done), f.makespan},
			validateRow{"median completion s, " + v.name, median(done), f.median})
	}
	return rows
}

// measuredCPU is the simulator's cpu section from a calibration run
// (calNeed: the bytes its hosts needed) and the run it predicts (need),
// both on the same daemons: the cores every daemon shares
// (simulations.CPU), CPU per byte moved (the simulator charges every byte
// a flow moves, kept or not) mostly from the calibration, per host and
// package from this run (solveCPU); and beside it, the same per byte the
// hosts needed. A flash crowd (packages 1) gets one too: its per_package
// is each host's start-up and fixed costs for its one package, which on
// a small package are most of its CPU. Without a calibration (calCPU 0),
// no cpu section (Cores 0).
func (c simvalConfig) measuredCPU(cal realRun, calNeed float64, real realRun, need float64, packages int) (moved, received simulations.CPU) {
	if !(cal.cpu > 0) || !(real.cpu > 0) {
		return simulations.CPU{}, simulations.CPU{}
	}
	moved = solveCPU(cal.cpu, movedOr(cal.moved, calNeed), real.cpu, movedOr(real.moved, need), c.hosts, packages)
	moved.Cores = float64(c.cores)
	received = solveCPU(cal.cpu, calNeed, real.cpu, need, c.hosts, packages)
	received.Cores = moved.Cores
	return moved, received
}

// solveCPU splits the daemons' CPU into a cost per byte and a cost per
// host and package from two runs on the same daemons: a calibration
// (calCPU seconds, every host fetching one package, calBytes bytes in
// all) and the workload (cpu seconds, every host fetching packages
// packages, bytes in all): cpu = perByte × bytes + perPackage × hosts ×
// packages for both. The bytes are those moved (realRun.moved, what the
// simulator charges), or those the hosts needed. The per-byte cost comes
// mostly from the calibration, the per-package cost from the workload's
// own CPU. A negative solution (the calibration's bytes cost more than
// the whole workload) leaves the per-package cost 0.
func solveCPU(calCPU, calBytes, cpu, bytes float64, hosts, packages int) simulations.CPU {
	h, p := float64(hosts), float64(packages)
	perByte := (calCPU - cpu/p) / (calBytes - bytes/p)
	perPackage := (cpu - perByte*bytes) / (h * p)
	if !(perByte > 0) || !(perPackage >= 0) || math.IsInf(perByte, 0) { // NaN, Inf: runs of one size
		perByte, perPackage = calCPU/calBytes, max(0, (cpu-calCPU/calBytes*bytes)/(h*p))
	}
	return simulations.CPU{PerByte: perByte, PerOriginByte: perByte, PerPackage: perPackage}
}

// movedOr is moved, or need if the daemons reported no bytes moved.
func movedOr(moved, need float64) float64 {
	if moved > 0 {
		return moved
	}
	return need
}

// originTimes reads the origin's log at logPath for the responses since
// t0 (the log's lines are written as responses end; a second lets the
// last ones reach the file).
func (c simvalConfig) originTimes(t *testing.T, logPath string, t0 time.Time, repoDir string) originTimes {
	t.Helper()
	t1 := time.Now()
	time.Sleep(time.Second)
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o, err := readOriginLog(f, t0, t1, func(p string) int64 {
		fi, err := os.Stat(filepath.Join(repoDir, filepath.FromSlash(p)))
		if err != nil {
			t.Fatalf("origin log: %s: %v", p, err)
		}
		return fi.Size()
	})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestValidateCrowd: the flash crowd of issue 23, daemons and simulator.
func TestValidateCrowd(t *testing.T) {
	c := simvalSettings(t, "crowd")
	// Smallest first: its commit work is every crowd's (simvalConfig.commit).
	slices.Sort(c.sizes)
	c.commit = map[string]float64{}
	for _, size := range c.sizes {
		r := newRepo(t)
		blob := filepath.Join(t.TempDir(), "blob.bin")
		data := randomBytes(t, int(size))
		writeFile(t, blob, data, 0o644)
		stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "blob", "--version", "1.0.0", "--chunk-size", "1M", blob)
		var cal calibration
		if c.measured && c.calibrate > 0 {
			// The daemons' CPU per byte, from a crowd of another size
			// on the same daemons' flags just before (measuredCPU).
			cb := filepath.Join(t.TempDir(), "calibrate.bin")
			writeFile(t, cb, randomBytes(t, int(c.calibrate)), 0o644)
			stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "calibrate", "--version", "1.0.0", "--chunk-size", "1M", cb)
			cal = calibration{pkg: "calibrate", bytes: float64(c.calibrate)}
		}
		sc := c.scenario(t)
		sc.PackageSize = simulations.Size(size)
		c.compare(t, fmt.Sprintf("flash crowd %d bytes", size), r, sc, "blob", []string{"blob"}, float64(size), cal, chunkKeys(data, 1<<20))
	}
}

// chunkKeys returns the ranking keys of data's chunks of size bytes, as
// `stork repo add --chunk-size` cuts it and the daemons rank them
// (policy.ChunkKey of each chunk's CID, transfer/swarm coop.go).
func chunkKeys(data []byte, size int) []uint64 {
	var keys []uint64
	for off := 0; off < len(data); off += size {
		keys = append(keys, policy.ChunkKey(metadata.SumCID(data[off:min(off+size, len(data))]).Bytes()))
	}
	return keys
}

// daemonFetchers returns, for each chunk key, the daemon (by start order
// in hosts) that ranks first for it among every daemon's peer ID: the
// chunk's origin fetcher in the daemons' cooperative fetching, whose
// members are the overlay (every daemon, once waitOverlay has seen them
// meet).
func daemonFetchers(hosts []hostFigures, keys []uint64) []int {
	ms := make([]policy.Member, len(hosts))
	idx := make(map[policy.PeerID]int, len(hosts))
	for i, h := range hosts {
		ms[i] = policy.Member{ID: policy.PeerID(h.peer)}
		idx[ms[i].ID] = i
	}
	f := policy.NewFetchers(ms[0], ms)
	out := make([]int, len(keys))
	for k, key := range keys {
		out[k] = idx[f.First(key)]
	}
	return out
}

// TestValidateUpgrade: the upgrade of issue 23, daemons and simulator.
func TestValidateUpgrade(t *testing.T) {
	c := simvalSettings(t, "upgrade")
	sc := c.scenario(t)
	sc.Packages = simulations.Packages{Count: c.packages, Sizes: filepath.Join("..", "..", "simulations", "testdata", "debian12-main-sizes.tsv"),
		MaxSize: simulations.Size(c.maxSize), Overhead: simulations.Duration(c.overhead), Seed: 23,
		// The daemons download MaxDownloads packages of the closure at once.
		Parallel: node.MaxDownloads}
	sizes, err := simulations.WorkloadSizes(sc)
	if err != nil {
		t.Fatal(err)
	}
	r := newRepo(t)
	src := t.TempDir()
	var list strings.Builder
	var total float64
	deps := []string{"repo", "add", "--dir", r.dir, "--key", r.key, "--name", "upgrade", "--version", "1.0.0"}
	for k, n := range sizes {
		p := filepath.Join(src, fmt.Sprintf("u%03d.bin", k))
		writeFile(t, p, randomBytes(t, int(n)), 0o644)
		fmt.Fprintf(&list, "u%03d 1.0.0 %s\n", k, p)
		deps = append(deps, "--depends", fmt.Sprintf("u%03d", k))
		total += float64(n)
	}
	listFile := filepath.Join(src, "list")
	writeFile(t, listFile, []byte(list.String()), 0o644)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--chunk-size", "1M", "--from", listFile)
	readme := filepath.Join(src, "README")
	writeFile(t, readme, []byte("the upgrade\n"), 0o644)
	stork(t, append(deps, readme)...)
	var cal calibration
	if c.measured && c.calibrate > 0 {
		blob := filepath.Join(src, "calibrate.bin")
		writeFile(t, blob, randomBytes(t, int(c.calibrate)), 0o644)
		stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "calibrate", "--version", "1.0.0", "--chunk-size", "1M", blob)
		cal = calibration{pkg: "calibrate", bytes: float64(c.calibrate)}
	}
	t.Logf("upgrade: %d packages, %.1f MB", len(sizes), total/1e6)
	closure := []string{"upgrade"}
	for k := range sizes {
		closure = append(closure, fmt.Sprintf("u%03d", k))
	}
	c.compare(t, fmt.Sprintf("upgrade %d packages %d bytes", len(sizes), int64(total)), r, sc, "upgrade", closure, total, cal, nil)
}

// TestMeasuredCPUFlashCrowd: a flash crowd (one package) with a
// calibration crowd of another size gets the cpu section too, its per
// host and package cost (start-up and fixed costs) and its per byte given
// back from the two runs; calibrating on the crowd's own size (no second
// point) gives per byte the calibration's and no per package cost, not
// NaN.
func TestMeasuredCPUFlashCrowd(t *testing.T) {
	t.Parallel()
	const perByte, perPackage, hosts = 3e-8, 0.12, 24
	c := simvalConfig{hosts: hosts, cores: 2}
	run := func(size float64) realRun {
		return realRun{cpu: hosts * (perByte*1.1*size + perPackage), moved: hosts * 1.1 * size}
	}
	calB, b := float64(32<<20), float64(64<<10)
	got, received := c.measuredCPU(run(calB), hosts*calB, run(b), hosts*b, 1)
	if got.Cores != 2 || math.Abs(got.PerByte-perByte) > 1e-6*perByte || math.Abs(got.PerPackage-perPackage) > 1e-6*perPackage {
		t.Errorf("measuredCPU = %+v, want 2 cores, per_byte %g, per_package %g", got, perByte, perPackage)
	}
	if received.Cores != 2 || math.Abs(received.PerByte-1.1*perByte) > 1e-6*perByte {
		t.Errorf("per byte needed: %+v, want per_byte %g", received, 1.1*perByte)
	}
	same, _ := c.measuredCPU(run(b), hosts*b, run(b), hosts*b, 1)
	if !(same.PerByte > 0) || math.IsInf(same.PerByte, 0) || same.PerPackage < 0 || math.IsNaN(same.PerPackage) {
		t.Errorf("one size twice: %+v, want a finite per_byte", same)
	}
	if none, _ := c.measuredCPU(realRun{}, hosts*calB, run(b), hosts*b, 1); none.Cores != 0 {
		t.Errorf("no calibration: %+v, want no cpu section", none)
	}
}

// TestCrowdCPU: a flash crowd's figures keep its measured start-up and
// the CPU per byte, and leave per_package to the model beside them,
// which has no fixed start-up.
func TestCrowdCPU(t *testing.T) {
	t.Parallel()
	var sc simulations.Scenario
	sc.Policy.DiscoveryDelay = simulations.Duration(450 * time.Millisecond)
	sc.Policy.ProviderDelay = sc.Policy.DiscoveryDelay + simulations.Duration(time.Millisecond)
	sc.CPU = simulations.CPU{Cores: 2, PerByte: 4e-8, PerOriginByte: 4e-8, PerPackage: 0.1}
	head, work := crowdCPU(sc)
	if head.Policy != sc.Policy || head.CPU.PerPackage != 0 || head.CPU.PerByte != sc.CPU.PerByte || head.CPU.Cores != 2 {
		t.Errorf("head: policy %+v, cpu %+v; want the measured start-up and per byte, no per_package", head.Policy, head.CPU)
	}
	if work.CPU != sc.CPU || work.Policy.DiscoveryDelay != 0 || work.Policy.ProviderDelay != simulations.Duration(time.Millisecond) {
		t.Errorf("start-up work: policy %+v, cpu %+v; want per_package and no fixed start-up", work.Policy, work.CPU)
	}
}

// TestSolveCPU: two runs whose CPU is a cost per byte plus a cost per
// package give both back.
func TestSolveCPU(t *testing.T) {
	t.Parallel()
	const perByte, perPackage, hosts, packages = 2e-8, 0.04, 24, 300
	calBytes, bytes := float64(32<<20), 69.4e6
	calCPU := hosts * (perByte*calBytes + perPackage)
	cpu := hosts * (perByte*bytes + perPackage*packages)
	c := solveCPU(calCPU, hosts*calBytes, cpu, hosts*bytes, hosts, packages)
	if math.Abs(c.PerByte-perByte) > 1e-6*perByte || math.Abs(c.PerPackage-perPackage) > 1e-6*perPackage || c.PerOriginByte != c.PerByte {
		t.Errorf("solveCPU = %+v, want per_byte %g, per_package %g", c, perByte, perPackage)
	}
}

// TestWorkAfterStartUp: a crowd's per-host work after its start-up is the
// daemons' CPU after the median manifest less its bytes' at per_byte,
// over the hosts; none when the bytes account for it all, or without a
// start-up.
func TestWorkAfterStartUp(t *testing.T) {
	t.Parallel()
	// 1 CPU-s by 0.5 s, 3 CPU-s in all; 1e7 bytes moved at 1e-8 s each:
	// (3 - 1 - 0.1) / 19 hosts = 0.1 s.
	r := realRun{cpu: 3, moved: 1e7, profile: []cpuSample{{0.25, 0.5}, {0.75, 1.5}, {2, 3}}}
	if got := workAfterStartUp(r, 0.5, 1e-8, 19); math.Abs(got-0.1) > 1e-9 {
		t.Errorf("workAfterStartUp = %v, want 0.1", got)
	}
	if got := workAfterStartUp(r, 0.5, 1e-6, 19); got != 0 {
		t.Errorf("bytes costing more than the CPU after the start-up: workAfterStartUp = %v, want 0", got)
	}
	if got := workAfterStartUp(r, 0, 1e-8, 19); got != 0 {
		t.Errorf("no start-up: workAfterStartUp = %v, want 0", got)
	}
}
