package simulations

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// small is the scenario of the fast tests: 30 hosts over 3 sites, a
// 16 MiB package in 1 MiB chunks, mixed host uploads.
func small() Scenario {
	sc := DefaultScenario()
	sc.Name = "small"
	sc.Hosts = 30
	sc.Sites = 3
	sc.VMsPerHost = 2
	sc.PackageSize = 16 << 20
	sc.Seed = 7
	return sc
}

func run(t *testing.T, sc Scenario, st Strategy) *Result {
	t.Helper()
	r, err := Run(sc, st)
	if err != nil {
		t.Fatalf("Run(%s, %s): %v", sc.Name, st, err)
	}
	return r
}

func TestEveryStrategyCompletes(t *testing.T) {
	t.Parallel()
	sc := small()
	for _, st := range Strategies() {
		r := run(t, sc, st)
		if r.Finished != sc.Hosts || r.Departed != 0 {
			t.Errorf("%s: %d hosts finished, %d departed, want %d, 0", st, r.Finished, r.Departed, sc.Hosts)
		}
		if r.Makespan < r.Bound {
			t.Errorf("%s: makespan %v below the fluid bound %v", st, r.Makespan, r.Bound)
		}
		// Every host got every byte exactly once from somewhere.
		for _, h := range r.PerHost {
			got := h.FromOrigin + h.FromSite + h.FromWAN - h.Duplicate
			want := r.PackageBytes
			if st == OriginPerVM {
				want *= float64(h.VMs)
			}
			if math.Abs(got-want) > 1 && (st == Swarm || st == SwarmLocality || math.Abs(h.FromOrigin-want) > 1) {
				t.Errorf("%s: host %d received %v useful bytes, want %v", st, h.Host, got, want)
			}
		}
	}
	// The baselines are exact: no sharing, all from the origin.
	vm := run(t, sc, OriginPerVM)
	if want := float64(sc.Hosts*sc.VMsPerHost) * float64(sc.PackageSize); math.Abs(vm.OriginBytes-want) > 1 || vm.Offload > 1e-9 {
		t.Errorf("origin-per-vm: origin %v bytes, offload %v, want %v and 0", vm.OriginBytes, vm.Offload, want)
	}
	host := run(t, sc, OriginPerHost)
	if want := 1 - 1/float64(sc.VMsPerHost); math.Abs(host.Offload-want) > 1e-9 {
		t.Errorf("origin-per-host: offload %v, want %v", host.Offload, want)
	}
}

func TestBaselineTimes(t *testing.T) {
	t.Parallel()
	// 4 hosts × 2 VMs, 8 MiB, origin 8 MiB/s, fast hosts: the origin is
	// shared by 8 downloads of 8 MiB: 8 s, plus the request and the
	// last byte's latency (2 × 20 ms).
	sc := Scenario{Hosts: 4, VMsPerHost: 2, PackageSize: 8 << 20, ChunkSize: 1 << 20, OriginUpload: 8 << 20,
		HostUpload: Dist{{Rate: 1e9, Weight: 1}}, HostDownload: Dist{{Rate: 1e9, Weight: 1}}}
	r := run(t, sc, OriginPerVM)
	if want := 8 + 0.04; math.Abs(r.Makespan-want) > 1e-6 {
		t.Errorf("origin-per-vm makespan %v, want %v", r.Makespan, want)
	}
	// Per host: 4 downloads: 4 s + 40 ms.
	r = run(t, sc, OriginPerHost)
	if want := 4 + 0.04; math.Abs(r.Makespan-want) > 1e-6 {
		t.Errorf("origin-per-host makespan %v, want %v", r.Makespan, want)
	}
}

func csvBytes(t *testing.T, r *Result) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := WriteCSV(dir, []*Result{r}); err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, name := range []string{"summary.csv", "hosts-" + string(r.Strategy) + "-30.csv", "origin-" + string(r.Strategy) + "-30.csv"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	sc := small()
	sc.Churn = Churn{Fraction: 0.2, From: Duration(100 * time.Millisecond), To: Duration(time.Second), RejoinAfter: Duration(time.Second)}
	for _, st := range []Strategy{Swarm, SwarmLocality} {
		a, b := csvBytes(t, run(t, sc, st)), csvBytes(t, run(t, sc, st))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two runs with seed %d wrote different CSV", st, sc.Seed)
		}
		sc2 := sc
		sc2.Seed++
		if c := csvBytes(t, run(t, sc2, st)); bytes.Equal(a, c) {
			t.Errorf("%s: seeds %d and %d wrote the same CSV", st, sc.Seed, sc2.Seed)
		}
	}
}

func TestChurnCompletes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		rejoin time.Duration
	}{{"rejoin", 2 * time.Second}, {"leave for good", 0}} {
		sc := small()
		sc.Churn = Churn{Fraction: 0.3, From: Duration(50 * time.Millisecond), To: Duration(500 * time.Millisecond), RejoinAfter: Duration(tc.rejoin)}
		for _, st := range Strategies() {
			r := run(t, sc, st)
			if r.Finished+r.Departed != sc.Hosts || r.Finished == 0 {
				t.Errorf("%s %s: %d finished + %d departed, want %d in all", tc.name, st, r.Finished, r.Departed, sc.Hosts)
			}
			if tc.rejoin > 0 && r.Departed != 0 {
				t.Errorf("%s %s: %d hosts departed, want every one back and finished", tc.name, st, r.Departed)
			}
			if tc.rejoin == 0 && r.Departed == 0 {
				t.Errorf("%s %s: no host departed with churn 0.3", tc.name, st)
			}
		}
	}
}

func TestNewVersionMovesFewerBytes(t *testing.T) {
	t.Parallel()
	fresh := small()
	upgrade := small()
	upgrade.NewVersion.Reuse = 0.75
	moved := func(r *Result) float64 { return r.OriginBytes + r.SiteBytes + r.WANBytes }
	for _, st := range []Strategy{OriginPerHost, Swarm, SwarmLocality} {
		a, b := run(t, fresh, st), run(t, upgrade, st)
		if moved(b) >= 0.5*moved(a) {
			t.Errorf("%s: upgrade sharing 75%% of chunks moved %.0f bytes, fresh install %.0f: want less than half", st, moved(b), moved(a))
		}
		if b.Finished != upgrade.Hosts {
			t.Errorf("%s: upgrade: %d hosts finished", st, b.Finished)
		}
	}
}

func TestStaggeredArrivals(t *testing.T) {
	t.Parallel()
	sc := small()
	sc.Arrival = Arrival{Pattern: ArrivalStaggered, Over: Duration(5 * time.Second)}
	r := run(t, sc, Swarm)
	if r.Finished != sc.Hosts {
		t.Fatalf("staggered: %d finished", r.Finished)
	}
	first := math.Inf(1)
	for _, h := range r.PerHost {
		first = min(first, h.Arrival)
	}
	if r.Makespan < 2.5 || first > 1 {
		t.Errorf("staggered over 5s: first arrival %v, makespan %v", first, r.Makespan)
	}
}

// golden figures of the small scenario: a change to the policy (or the
// simulator) that moves them beyond the tolerance fails here. Rewrite
// testdata/golden.json with STORK_SIM_UPDATE_GOLDEN=1 once the change is
// understood.
type golden struct {
	Strategy    Strategy
	OriginBytes float64
	HostOffload float64
	P50         float64
	Makespan    float64
}

func TestGoldenFigures(t *testing.T) {
	t.Parallel()
	sc := small()
	var got []golden
	for _, st := range Strategies() {
		r := run(t, sc, st)
		got = append(got, golden{st, r.OriginBytes, r.HostOffload, r.P50, r.Makespan})
	}
	path := filepath.Join("testdata", "golden.json")
	if os.Getenv("STORK_SIM_UPDATE_GOLDEN") != "" {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []golden
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	near := func(a, b, rel float64) bool { return math.Abs(a-b) <= rel*math.Max(math.Abs(b), 1e-9) }
	for k, g := range got {
		w := want[k]
		// Baselines are exact; the swarm within 25% (origin bytes) and
		// 30% (times): a policy retune moves them, noise does not.
		ro, rt := 1e-9, 1e-9
		if g.Strategy == Swarm || g.Strategy == SwarmLocality {
			ro, rt = 0.25, 0.30
		}
		if g.Strategy != w.Strategy || !near(g.OriginBytes, w.OriginBytes, ro) || !near(g.P50, w.P50, rt) || !near(g.Makespan, w.Makespan, rt) {
			t.Errorf("%s: origin %.0f B, p50 %.3fs, makespan %.3fs; golden %.0f B, %.3fs, %.3fs (STORK_SIM_UPDATE_GOLDEN=1 rewrites)",
				g.Strategy, g.OriginBytes, g.P50, g.Makespan, w.OriginBytes, w.P50, w.Makespan)
		}
	}
}

func TestParseScenario(t *testing.T) {
	t.Parallel()
	sc, err := ParseScenario([]byte(`{
		"name": "x", "comment": ["where the figures come from"], "hosts": 12, "vms_per_host": 3, "sites": 2,
		"package_size": "64MiB", "chunk_size": "1M",
		"host_upload": [{"rate": "1Gbps", "weight": 3}, {"rate": "100Mbps", "weight": 1}],
		"host_download": "10Gbps", "origin_upload": "125MB/s", "site_uplink": 1e9,
		"latency": {"wan": "15ms"}, "arrival": {"pattern": "staggered", "over": "30s"},
		"new_version": {"reuse": 0.5}, "churn": {"fraction": 0.1, "from": 1, "to": "10s"},
		"policy": {"max_peers": 16}, "seed": 3}`))
	if err != nil {
		t.Fatal(err)
	}
	if sc.PackageSize != 64<<20 || sc.ChunkSize != 1<<20 || sc.HostUpload[0].Rate != 125e6 || sc.HostUpload[1].Rate != 12.5e6 ||
		sc.HostDownload[0].Rate != 1.25e9 || sc.OriginUpload != 125e6 || sc.SiteUplink != 1e9 ||
		time.Duration(sc.Latency.WAN) != 15*time.Millisecond || time.Duration(sc.Churn.From) != time.Second || sc.Policy.MaxPeers != 16 ||
		len(sc.Comment) != 1 {
		t.Errorf("ParseScenario = %+v", sc)
	}
	for _, bad := range []string{`{"hosts": 0, "bogus": 1}`, `{"arrival": {"pattern": "wave"}}`, `{"package_size": "lots"}`, `{"new_version": {"reuse": 2}}`} {
		if _, err := ParseScenario([]byte(bad)); err == nil {
			t.Errorf("ParseScenario(%s) = nil error", bad)
		}
	}
}

func TestPlotsAndReport(t *testing.T) {
	t.Parallel()
	sc := small()
	sc.PackageSize = 4 << 20
	res, err := Sweep(SweepConfig{Scenario: sc, Hosts: []int{5, 20}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rep := filepath.Join(dir, "REPORT.md")
	if err := WriteReport(rep, filepath.Join(dir, "report"), res, ReportInfo{Command: "test", Scenario: sc}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{PlotOriginVsHosts, PlotOffloadVsHosts, PlotCDF(5), PlotCDF(20), PlotOriginTime(20)} {
		if st, err := os.Stat(filepath.Join(dir, "report", f)); err != nil || st.Size() == 0 {
			t.Errorf("plot %s: %v", f, err)
		}
	}
	b, _ := os.ReadFile(rep)
	if !bytes.Contains(b, []byte("](report/"+PlotCDF(20)+")")) {
		t.Errorf("report does not link %s:\n%s", PlotCDF(20), b)
	}
}

// A plot on a log scale whose data collapse to one value (one chunk: the
// origin's bytes over time are one point) or to nothing drew an axis
// through zero and panicked; every valid scenario must plot.
func TestPlotsDegenerate(t *testing.T) {
	t.Parallel()
	one := small()
	one.Hosts = 24
	one.PackageSize = 1 << 20
	one.ChunkSize = 1 << 20
	res, err := Sweep(SweepConfig{Scenario: one, Hosts: []int{24}, Strategies: []Strategy{Swarm}})
	if err != nil {
		t.Fatal(err)
	}
	same := *res[0]
	same.Hosts = 48 // two host counts with the same figures: flat lines
	empty := same
	empty.Hosts = 96
	empty.Origin = []Sample{{}}
	empty.PerHost = nil
	empty.OriginBytes, empty.Ratio = 0, math.NaN()
	for _, rs := range [][]*Result{res, {res[0], &same}, {&empty}, {res[0], &same, &empty}} {
		if _, err := WritePlots(t.TempDir(), rs); err != nil {
			t.Errorf("WritePlots(%d results) = %v", len(rs), err)
		}
	}
}

// TestPeerLimitSmallPackage: a download opens sessions to no more peers
// than its package has chunks (at least 2), as the daemon's peerLimit:
// in a flash crowd of a one-chunk package the hosts open at most two
// sessions each, not one to every other host.
func TestPeerLimitSmallPackage(t *testing.T) {
	t.Parallel()
	sc := small()
	sc.Sites = 1
	sc.PackageSize = 1 << 20
	s := newSim(sc.withDefaults(), Swarm)
	if err := s.run(); err != nil {
		t.Fatal(err)
	}
	var sessions int
	for h := range s.hosts {
		sessions += len(s.hosts[h].sess)
	}
	sessions /= 2 // each is in both hosts' lists
	if sessions > minSessionPeers*sc.Hosts {
		t.Errorf("%d sessions among %d hosts, want at most %d", sessions, sc.Hosts, minSessionPeers*sc.Hosts)
	}
	if r := s.result(); r.Finished != sc.Hosts {
		t.Errorf("%d of %d hosts finished", r.Finished, sc.Hosts)
	}
}
