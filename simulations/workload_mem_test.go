package simulations

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// runWorkloadKeep runs sc's workload (sc has its defaults) and returns
// the run, its result and the heap bytes the run still holds at its end;
// keep: no package is released and no session dropped (as before release
// and prune.go existed).
func runWorkloadKeep(t testing.TB, sc Scenario, st Strategy, keep bool) (*workloadRun, *Result, uint64) {
	t.Helper()
	sizes, err := WorkloadSizes(sc)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	w := newWorkload(sc, st, sizes)
	w.keep, w.noPrune = keep, keep
	if err := w.run(nil); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	held := uint64(0)
	if after.HeapAlloc > before.HeapAlloc {
		held = after.HeapAlloc - before.HeapAlloc
	}
	r := w.result(sizes)
	runtime.KeepAlive(w)
	return w, r, held
}

// TestWorkloadReleasesFinishedPackages: a package every host has, with no
// event or flow left, keeps only its result (sim.release), and the run's
// result is the same as when every package keeps its state to the end;
// what the run holds per host and package at its end is less than 0.55
// of what it held then (on main every package kept its hosts,
// sessions and have-maps to the end). The packages still live as the
// run ends keep theirs, about 290 kB each here: with swarm 0.49 of it
// when 5 of the 60 were live, 0.52 when 7 were (hosts' uploads shared
// per peer, engine.go).
func TestWorkloadReleasesFinishedPackages(t *testing.T) {
	sc := workload(SwarmCoop)
	sc.Hosts = 300
	sc.Packages.Count = 60
	sc = sc.withDefaults()
	for _, st := range []Strategy{SwarmCoop, Swarm, OriginPerHost} {
		t.Run(string(st), func(t *testing.T) {
			w, r, held := runWorkloadKeep(t, sc, st, false)
			_, rk, heldKeep := runWorkloadKeep(t, sc, st, true)
			released := 0
			for k, s := range w.sims {
				switch {
				case s.res != nil:
					released++
					if s.hosts != nil || s.sessionsHeld() != 0 {
						t.Fatalf("package %d released but holds its hosts", k)
					}
				case k > 0 && w.e.pend[k] == 0:
					t.Errorf("package %d: finished with nothing pending, not released", k)
				}
			}
			if w.sims[0].res != nil {
				t.Errorf("package 0 released: its origin samples run to the end")
			}
			if released < len(w.sims)/2 {
				t.Errorf("%d of %d packages released, want most", released, len(w.sims))
			}
			if d := resultDiff(r, rk); d != "" {
				t.Errorf("results differ with and without release: %s", d)
			}
			hp := float64(sc.Hosts * sc.Packages.Count)
			t.Logf("%s: held at the end %.0f B per host-package released, %.0f kept", st, float64(held)/hp, float64(heldKeep)/hp)
			if st != OriginPerHost && float64(held) > 0.55*float64(heldKeep) {
				t.Errorf("held %d B at the end, want under 0.55 of the %d B held without release", held, heldKeep)
			}
		})
	}
}

// resultDiff names the first figure in which a and b differ ("" none).
func resultDiff(a, b *Result) string {
	if sa, sb := fmt.Sprintf("%v", *a), fmt.Sprintf("%v", *b); sa == sb {
		return ""
	}
	va, vb := reflect.ValueOf(*a), reflect.ValueOf(*b)
	for i := range va.NumField() {
		fa, fb := fmt.Sprintf("%v", va.Field(i).Interface()), fmt.Sprintf("%v", vb.Field(i).Interface())
		if fa != fb {
			if len(fa) > 200 {
				for k := range min(len(fa), len(fb)) {
					if fa[k] != fb[k] {
						fa, fb = fa[max(0, k-80):min(len(fa), k+80)], fb[max(0, k-80):min(len(fb), k+80)]
						break
					}
				}
			}
			return fmt.Sprintf("%s: %s against %s", va.Type().Field(i).Name, fa, fb)
		}
	}
	return "?"
}

// sessionsHeld counts the sessions s's hosts hold.
func (s *sim) sessionsHeld() int {
	n := 0
	for h := range s.hosts {
		n += len(s.hosts[h].sess)
	}
	return n
}

// BenchmarkWorkloadMemory: the upgrade (300 packages of Debian's sizes,
// simulations/testdata/upgrade.json) at 100 and 1,000 hosts with
// swarm-coop; reports the peak heap (runtime HeapInuse, sampled every
// 2^20 events and at the end) per host and package, the figure that
// decides whether 10,000 hosts × 300 packages fit, and the simulator's
// speed (events per second and wall time per host and package, which
// decide whether they finish in time):
//
//	go test -run '^$' -bench WorkloadMemory -benchtime 1x ./simulations/
func BenchmarkWorkloadMemory(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			if n > 100 && testing.Short() {
				b.Skip("1,000 hosts: a minute")
			}
			sc, err := LoadScenario("testdata/upgrade.json")
			if err != nil {
				b.Fatal(err)
			}
			sc.Packages.Sizes = "testdata/debian12-main-sizes.tsv"
			sc.Hosts = n
			var peak uint64
			var events int64
			var secs float64
			runs := 0
			for b.Loop() {
				r, err := RunMeasured(sc, SwarmCoop)
				if err != nil {
					b.Fatal(err)
				}
				peak = max(peak, r.PeakHeap)
				events += r.Events
				secs += r.Wall.Seconds()
				runs++
			}
			b.ReportMetric(float64(peak)/float64(n*sc.Packages.Count), "peak-B/host-package")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(events)/secs, "events/s")
			b.ReportMetric(secs*1e6/float64(runs*n*sc.Packages.Count), "µs/host-package")
		})
	}
}

// TestAppendReportSection: a workload's section goes after the report
// WriteReport wrote, with the command that appends it and one row per
// run; the report before it is unchanged.
func TestAppendReportSection(t *testing.T) {
	t.Parallel()
	sc := small()
	sc.PackageSize = 4 << 20
	res, err := Sweep(SweepConfig{Scenario: sc, Hosts: []int{5}, Strategies: []Strategy{Swarm}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rep := filepath.Join(dir, "REPORT.md")
	if err := WriteReport(rep, filepath.Join(dir, "report"), res, ReportInfo{Command: "sweep one", Scenario: sc}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(rep)
	wl := workload(SwarmCoop)
	wl.Name = "upgrade"
	wl.Packages.Count = 8
	up, err := Sweep(SweepConfig{Scenario: wl, Hosts: []int{6, 12}, Strategies: []Strategy{OriginPerHost, SwarmCoop}})
	if err != nil {
		t.Fatal(err)
	}
	if err := AppendReportSection(rep, up, ReportInfo{Command: "sweep upgrade", Scenario: wl}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(rep)
	if !bytes.HasPrefix(after, before) {
		t.Fatalf("the report before the section changed")
	}
	sec := string(after[len(before):])
	for _, want := range []string{"\n## The upgrade workload\n", "Appended by `sweep upgrade`", "Every host fetches 8 packages", "| 6 | 8 | origin-per-host |", "| 12 | 8 | swarm-coop |", "\"count\": 8"} {
		if !strings.Contains(sec, want) {
			t.Errorf("section lacks %q:\n%s", want, sec)
		}
	}
	if err := AppendReportSection(filepath.Join(dir, "none.md"), up, ReportInfo{Scenario: wl}); err == nil {
		t.Errorf("appending to a missing report: nil error")
	}
}

// TestWorkloadMakesPackagesWhenStarted: with Parallel downloads per host,
// a package's sim is made when its first host starts it, not at the
// start of the run: the run's result is the same as when every package
// is made at the start, and far fewer packages are held at once than the
// workload has: the memory of a run of many hosts follows the packages
// held at once.
func TestWorkloadMakesPackagesWhenStarted(t *testing.T) {
	t.Parallel()
	base := workload(SwarmCoop)
	base.Hosts = 60
	base.Packages.Count = 40
	base.Packages.Parallel = 2
	base = base.withDefaults()
	// With a shared CPU, each package starts after its start-up work
	// (CPU.PerPackage), an event of the package's own sim.
	withCPU := base
	withCPU.CPU = CPU{Cores: 2, PerByte: 2e-9, PerOriginByte: 2e-9, PerPackage: 0.02}
	for _, c := range []struct {
		name string
		sc   Scenario
		st   Strategy
	}{{"swarm-coop", base, SwarmCoop}, {"origin-per-host", base, OriginPerHost}, {"swarm-coop-cpu", withCPU, SwarmCoop}} {
		sc, st := c.sc, c.st
		t.Run(c.name, func(t *testing.T) {
			sizes, err := WorkloadSizes(sc)
			if err != nil {
				t.Fatal(err)
			}
			lazy := newWorkload(sc, st, sizes)
			if made := lazy.live; made > sc.Packages.Parallel {
				t.Errorf("%d packages made at the start, want Parallel (%d)", made, sc.Packages.Parallel)
			}
			if err := lazy.run(nil); err != nil {
				t.Fatal(err)
			}
			all := newWorkloadMade(sc, st, sizes, true)
			if err := all.run(nil); err != nil {
				t.Fatal(err)
			}
			if d := resultDiff(lazy.result(sizes), all.result(sizes)); d != "" {
				t.Errorf("results differ with packages made when started and all at the start: %s", d)
			}
			t.Logf("%s: at most %d of %d packages held at once (%d when all are made at the start)", st, lazy.peakLive, len(sizes), all.peakLive)
			if lazy.peakLive > len(sizes)/2 {
				t.Errorf("%d of %d packages held at once, want far fewer", lazy.peakLive, len(sizes))
			}
			if st == SwarmCoop {
				// The overlay's members are every host of the run: one
				// ring per package, however its hosts start it.
				w := newWorkload(sc, st, sizes)
				w.keep = true
				if err := w.run(nil); err != nil {
					t.Fatal(err)
				}
				for k, s := range w.sims {
					if s.ringsMade != 1 {
						t.Errorf("package %d: %d member rings made, want 1", k, s.ringsMade)
						break
					}
				}
			}
		})
	}
}

// tradedWorkload is a swarm-coop workload of 60 hosts and 8 packages, 4
// at a time, whose packages have many chunks traded between peers, and
// its sizes.
func tradedWorkload(t *testing.T) (Scenario, []int64) {
	t.Helper()
	sc := workload(SwarmCoop)
	sc.Hosts = 60
	sc.Packages.Count = 8
	sc.Packages.Parallel = 4
	sc.ChunkSize = 16 << 10
	sc.Policy.ProviderDelay = 0
	sc = sc.withDefaults()
	sizes, err := WorkloadSizes(sc)
	if err != nil {
		t.Fatal(err)
	}
	return sc, sizes
}

// TestWorkloadDonePickersUnreachable: once every host has a package, no
// Picker of it is reachable from the run's state, not even from the
// unused capacity of a watcher list (a watcher dropped by moving the
// last one into its place but left in the array past the end kept its
// Picker, every done host's, until the package was released).
func TestWorkloadDonePickersUnreachable(t *testing.T) {
	t.Parallel()
	sc, sizes := tradedWorkload(t)
	w := newWorkload(sc, SwarmCoop, sizes)
	w.keep = true
	if err := w.run(nil); err != nil {
		t.Fatal(err)
	}
	for k, s := range w.sims {
		held := 0
		for h := range s.hosts {
			if s.hosts[h].picker != nil {
				t.Fatalf("package %d: host %d done but holds its Picker", k, h)
			}
			ws := s.hosts[h].watch
			for _, x := range ws[:cap(ws)] {
				if x.p != nil {
					held++
				}
			}
		}
		if held > 0 {
			t.Errorf("package %d: %d Pickers reachable from watcher lists, want 0", k, held)
		}
	}
}

// TestWorkloadDropsDoneSessions: the sessions between hosts done with a
// package are dropped (prune.go) and the run's result is the same as
// when they are kept; once the last hosts have been done for a latency,
// what is left of them is a small part of what was kept.
func TestWorkloadDropsDoneSessions(t *testing.T) {
	t.Parallel()
	sc, sizes := tradedWorkload(t)
	for _, st := range []Strategy{SwarmCoop, Swarm, SwarmSites} {
		t.Run(string(st), func(t *testing.T) {
			held := func(noPrune bool) (*Result, int) {
				w := newWorkload(sc, st, sizes)
				w.keep, w.noPrune = true, noPrune
				if err := w.run(nil); err != nil {
					t.Fatal(err)
				}
				w.e.now += 1 // the last hosts' messages have arrived
				n := 0
				for _, s := range w.sims {
					if s.pruneDue() {
						s.prune()
					}
					n += s.sessionsHeld()
				}
				return w.result(sizes), n
			}
			r, n := held(false)
			rk, nk := held(true)
			if d := resultDiff(r, rk); d != "" {
				t.Errorf("results differ with and without dropping done sessions: %s", d)
			}
			t.Logf("sessions held at the end: %d, %d kept", n, nk)
			if nk == 0 || n > nk/20 {
				t.Errorf("%d sessions held at the end, want under 5%% of the %d kept", n, nk)
			}
		})
	}
}

// TestSessionSize: a run holds a session per host and peer, per package
// in a workload (tens of millions at 10,000 hosts); HeadOfLine's held
// messages live in a side table (sim.heldQ), not in every session.
func TestSessionSize(t *testing.T) {
	t.Parallel()
	if n := unsafe.Sizeof(session{}); n > 56 {
		t.Errorf("a session takes %d bytes, want at most 56", n)
	}
}
