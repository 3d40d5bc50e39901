package simulations

import (
	"math"
	"strings"
	"testing"
	"time"
)

// fastHosts: n hosts in one site on links far faster than the CPU given
// below, so that the CPU alone sets the time.
func fastHosts(n int) Scenario {
	sc := DefaultScenario()
	sc.Name = "fast"
	sc.Hosts = n
	sc.Sites = 1
	sc.VMsPerHost = 1
	sc.PackageSize = 64 << 20
	sc.HostUpload = Dist{{Rate: 10e9, Weight: 1}}
	sc.HostDownload = Dist{{Rate: 10e9, Weight: 1}}
	sc.OriginUpload = 10e9
	sc.SiteUplink, sc.SiteDownlink = 0, 0
	sc.Latency = Latency{Site: Duration(time.Microsecond), WAN: Duration(time.Microsecond), Origin: Duration(time.Microsecond)}
	return sc
}

// TestCPUBinds: with links a hundred times faster than one core moves
// bytes, the makespan is the bytes' CPU over the cores, for the origin's
// flows and the swarm's alike, with one core and with two.
func TestCPUBinds(t *testing.T) {
	t.Parallel()
	const perByte = 1e-8 // 100 MB/s per core
	for _, tc := range []struct {
		name  string
		st    Strategy
		cores float64
	}{
		{"origin-per-host 1 core", OriginPerHost, 1},
		{"origin-per-host 2 cores", OriginPerHost, 2},
		{"swarm 1 core", Swarm, 1},
		{"swarm-coop 2 cores", SwarmCoop, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sc := fastHosts(2)
			sc.CPU = CPU{Cores: tc.cores, PerByte: perByte, PerOriginByte: perByte}
			r := run(t, sc, tc.st)
			// Every host receives the package once, from the origin or
			// from the other host: the same CPU per byte either way.
			want := sc.CPU.Work(2*float64(sc.PackageSize), 0, 0, 0) / tc.cores
			if math.Abs(r.Makespan-want) > 0.05*want {
				t.Errorf("makespan %.3fs, want the CPU's %.3fs (±5%%)", r.Makespan, want)
			}
			free := sc
			free.CPU = CPU{}
			if f := run(t, free, tc.st); f.Makespan > want/20 {
				t.Errorf("without the CPU: makespan %.3fs, want far below the CPU's %.3fs", f.Makespan, want)
			}
		})
	}
}

// TestCPUShared: the origin's bytes and the hosts' share the same cores:
// with the origin's costing three times a peer's, the makespan is their
// CPU together over the cores.
func TestCPUShared(t *testing.T) {
	t.Parallel()
	sc := fastHosts(4)
	sc.CPU = CPU{Cores: 1, PerByte: 1e-8, PerOriginByte: 3e-8}
	r := run(t, sc, SwarmCoop)
	want := sc.CPU.Work(r.SiteBytes+r.WANBytes, r.OriginBytes, 0, 0)
	if math.Abs(r.Makespan-want) > 0.05*want {
		t.Errorf("makespan %.3fs, want the CPU's %.3fs for %.0f B from peers and %.0f B from the origin (±5%%)",
			r.Makespan, want, r.SiteBytes+r.WANBytes, r.OriginBytes)
	}
}

// TestCPUWANBytes: bytes crossing sites cost PerWANByte more: with it
// alone, the time is the crossing bytes' CPU over the cores.
func TestCPUWANBytes(t *testing.T) {
	t.Parallel()
	sc := fastHosts(2)
	sc.Sites = 2
	sc.CPU = CPU{Cores: 1, PerWANByte: 1e-8}
	r := run(t, sc, OriginPerHost)
	want := sc.CPU.Work(0, 0, r.OriginBytes, 0)
	if math.Abs(r.Makespan-want) > 0.05*want {
		t.Errorf("makespan %.3fs, want the CPU's %.3fs (±5%%)", r.Makespan, want)
	}
}

// TestCPUUnlimited: without cores (the section absent, or cores 0) a run
// is the same as before the CPU model, to the byte; with cores but no
// cost, or with more CPU than the links can use, the same times.
func TestCPUUnlimited(t *testing.T) {
	t.Parallel()
	for _, st := range []Strategy{OriginPerHost, Swarm, SwarmLocality, SwarmCoop} {
		base := run(t, small(), st)
		for _, c := range []CPU{{}, {Cores: 0, PerByte: 1}, {Cores: 2}, {Cores: 1e6, PerByte: 1e-9, PerOriginByte: 1e-9}} {
			sc := small()
			sc.CPU = c
			r := run(t, sc, st)
			exact := c.Cores == 0
			tol := 1e-9
			if !exact {
				tol = 0.02
			}
			if math.Abs(r.Makespan-base.Makespan) > tol*base.Makespan || math.Abs(r.OriginBytes-base.OriginBytes) > tol*base.OriginBytes {
				t.Errorf("%s, cpu %+v: makespan %.6fs, origin %.0f B; without: %.6fs, %.0f B", st, c, r.Makespan, r.OriginBytes, base.Makespan, base.OriginBytes)
			}
			if exact && r.Events != base.Events {
				t.Errorf("%s, cpu %+v: %d events, without: %d", st, c, r.Events, base.Events)
			}
		}
	}
}

// TestCPUPerPackage: each package starts after its start-up work on the
// host's share of the cores, one at a time per host: tiny packages on a
// scarce core take the hosts × packages × PerPackage ÷ cores.
func TestCPUPerPackage(t *testing.T) {
	t.Parallel()
	sc := fastHosts(3)
	sc.Packages = Packages{Count: 20, Sizes: "testdata/debian12-main-sizes.tsv", MaxSize: 4 << 10}
	sc.CPU = CPU{Cores: 1, PerPackage: 0.05}
	for _, st := range []Strategy{Swarm, SwarmCoop} {
		r := run(t, sc, st)
		checkComplete(t, r)
		want := sc.CPU.Work(0, 0, 0, sc.Hosts*sc.Packages.Count) / sc.CPU.Cores
		if math.Abs(r.Makespan-want) > 0.05*want {
			t.Errorf("%s: makespan %.3fs, want the start-up work's %.3fs (±5%%)", st, r.Makespan, want)
		}
	}
	// Two cores: each host's start-up is one core at most, so three hosts
	// share two: the same work in half the time; two downloads at a time
	// (Parallel) change nothing when the packages take no time.
	sc.CPU.Cores = 2
	for _, par := range []int{0, 2} {
		sc.Packages.Parallel = par
		r := run(t, sc, SwarmCoop)
		if want := sc.CPU.Work(0, 0, 0, sc.Hosts*sc.Packages.Count) / 2; math.Abs(r.Makespan-want) > 0.05*want {
			t.Errorf("2 cores, parallel %d: makespan %.3fs, want %.3fs (±5%%)", par, r.Makespan, want)
		}
	}
	// One core and Overhead between a host's start-ups beginning, as
	// between its packages' starts without a CPU: the work keeps up, so
	// the time is the last start-up's beginning, then the three hosts'
	// last start-ups together on the core.
	sc.CPU.Cores = 1
	sc.Packages.Parallel = 0
	sc.Packages.Overhead = Duration(200 * time.Millisecond)
	r := run(t, sc, SwarmCoop)
	if want := float64(sc.Packages.Count-1)*0.2 + float64(sc.Hosts)*0.05; math.Abs(r.Makespan-want) > 0.05*want {
		t.Errorf("overhead 200ms: makespan %.3fs, want the last start-up's beginning and the hosts' last work, %.3fs (±5%%)", r.Makespan, want)
	}
	// One package, one host: its start-up takes PerPackage on a core of
	// its own, then the bytes.
	one := fastHosts(1)
	one.CPU = CPU{Cores: 4, PerPackage: 0.5}
	r = run(t, one, OriginPerHost)
	if want := 0.5 + float64(one.PackageSize)/float64(one.OriginUpload); math.Abs(r.Makespan-want) > 0.01*want {
		t.Errorf("one host: makespan %.3fs, want %.3fs", r.Makespan, want)
	}
}

// TestCPUCoopCrowdMembers: a flash crowd with cooperative fetching whose
// hosts start their one package after start-up work on shared cores (the
// validate-crowd harness's cpu section) takes each chunk from the origin
// once: every host is a member from the start, as the daemons are in the
// overlay before they fetch, not only those whose start-up ended first
// (they ended a rounding error apart, and the first ranked themselves
// fetchers among a few: 3 copies). The makespan is the start-ups over the
// cores, then the fetcher's answers.
func TestCPUCoopCrowdMembers(t *testing.T) {
	t.Parallel()
	for _, size := range []Size{64 << 10, 4 << 20} {
		sc := fastHosts(24)
		sc.PackageSize = size
		sc.ChunkSize = 1 << 20
		sc.CPU = CPU{Cores: 2, PerPackage: 0.1}
		r := run(t, sc, SwarmCoop)
		checkComplete(t, r)
		if copies := r.OriginBytes / float64(size); math.Abs(copies-1) > 1e-9 {
			t.Errorf("%v: %.3f origin copies, want 1", size, copies)
		}
		if want := sc.CPU.Work(0, 0, 0, sc.Hosts) / sc.CPU.Cores; r.Makespan < want || r.Makespan > 1.05*want {
			t.Errorf("%v: makespan %.3fs, want the start-ups' %.3fs (+5%%)", size, r.Makespan, want)
		}
	}
}

// TestCPUStartUpsInSlots: each of a host's Parallel download slots runs
// its package's start-up work, side by side, as the daemon's download
// goroutines do: one host with four cores and four slots does its
// start-ups in a quarter of the time one core would take, and with bytes
// moving as well the cores stay busy, the makespan the work over the
// cores.
func TestCPUStartUpsInSlots(t *testing.T) {
	t.Parallel()
	one := fastHosts(1)
	one.Packages = Packages{Count: 40, Sizes: "testdata/debian12-main-sizes.tsv", MaxSize: 4 << 10, Parallel: 4}
	one.CPU = CPU{Cores: 4, PerPackage: 0.05}
	r := run(t, one, OriginPerHost)
	checkComplete(t, r)
	if want := one.CPU.Work(0, 0, 0, one.Packages.Count) / one.CPU.Cores; math.Abs(r.Makespan-want) > 0.05*want {
		t.Errorf("one host, 4 cores, 4 slots: makespan %.3fs, want the start-ups over the cores, %.3fs (±5%%), not one at a time (%.3fs)",
			r.Makespan, want, one.CPU.Work(0, 0, 0, one.Packages.Count))
	}
	// Four hosts, two cores, eight slots each: the start-ups and the
	// bytes of the packages started share the cores, which stay busy.
	sc := fastHosts(4)
	sc.Packages = Packages{Count: 64, Sizes: "testdata/debian12-main-sizes.tsv", MaxSize: 1 << 20, Parallel: 8}
	sc.CPU = CPU{Cores: 2, PerByte: 1e-8, PerOriginByte: 1e-8, PerPackage: 0.02}
	for _, st := range []Strategy{Swarm, SwarmCoop} {
		r := run(t, sc, st)
		checkComplete(t, r)
		moved := 0.0
		for _, h := range r.PerHost {
			moved += h.Uploaded
		}
		want := sc.CPU.Work(moved, r.OriginBytes, 0, sc.Hosts*sc.Packages.Count) / sc.CPU.Cores
		if r.Makespan > 1.05*want || r.Makespan < 0.99*want {
			t.Errorf("%s, 4 hosts, 2 cores, 8 slots: makespan %.3fs, want the work over the cores, %.3fs (+5%%)", st, r.Makespan, want)
		}
	}
}

// TestCPUValidate: a negative cost is refused in one line naming it.
func TestCPUValidate(t *testing.T) {
	t.Parallel()
	for _, field := range []string{"cores", "per_byte", "per_origin_byte", "per_wan_byte", "per_package"} {
		_, err := ParseScenario([]byte(`{"cpu": {"` + field + `": -1}}`))
		if err == nil || !strings.Contains(err.Error(), "cpu."+field) || strings.Contains(err.Error(), "\n") {
			t.Errorf("cpu.%s -1: error %v, want one line naming cpu.%s", field, err, field)
		}
	}
	sc, err := ParseScenario([]byte(`{"cpu": {"cores": 2, "per_byte": 2.5e-8, "per_origin_byte": 1e-8, "per_wan_byte": 8e-9, "per_package": 0.04}}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (CPU{Cores: 2, PerByte: 2.5e-8, PerOriginByte: 1e-8, PerWANByte: 8e-9, PerPackage: 0.04}); sc.CPU != want {
		t.Errorf("cpu %+v, want %+v", sc.CPU, want)
	}
}

// TestCPUPerCommit: a host has its package once its commit work after
// the last chunk is done, on the shared cores, one core at most each:
// with links far faster than the work, three hosts' commits of 0.1 s take
// 0.3 s on one core and 0.15 s on two; one host on four cores takes its
// own 0.1 s after its bytes; in a workload each package's commit counts.
func TestCPUPerCommit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		st    Strategy
		hosts int
		cores float64
		want  float64
	}{
		{"origin-per-host, 1 core", OriginPerHost, 3, 1, 0.3},
		{"swarm-coop, 1 core", SwarmCoop, 3, 1, 0.3},
		{"swarm, 2 cores", Swarm, 3, 2, 0.15},
		{"one host, 4 cores", OriginPerHost, 1, 4, 0.1},
	} {
		sc := fastHosts(tc.hosts)
		sc.PackageSize = 64 << 10
		sc.CPU = CPU{Cores: tc.cores, PerCommit: 0.1}
		r := run(t, sc, tc.st)
		checkComplete(t, r)
		free := sc
		free.CPU = CPU{}
		f := run(t, free, tc.st)
		if got := r.Makespan - f.Makespan; math.Abs(got-tc.want) > 0.05*tc.want {
			t.Errorf("%s: makespan %.4fs, %.4fs more than without the commit work, want %.3fs more", tc.name, r.Makespan, got, tc.want)
		}
	}
	sc := fastHosts(3)
	sc.Packages = Packages{Count: 20, Sizes: "testdata/debian12-main-sizes.tsv", MaxSize: 4 << 10}
	sc.CPU = CPU{Cores: 1, PerCommit: 0.05}
	r := run(t, sc, Swarm)
	checkComplete(t, r)
	if want := sc.CPU.Work(0, 0, 0, sc.Hosts*sc.Packages.Count) / sc.CPU.Cores; math.Abs(r.Makespan-want) > 0.05*want {
		t.Errorf("workload: makespan %.3fs, want the commit work's %.3fs (±5%%)", r.Makespan, want)
	}
}

// TestCPUPerDownload: a host's work beside its download runs from its
// start-up's end alongside its bytes, and the host has its package once
// both are done: on links far faster than the work, three hosts' 0.1 s
// take 0.3 s on one core (and a commit after it adds its own); behind a
// slow origin (a 1 MiB package at 1 MiB/s) the work is over long before
// the bytes and adds nothing.
func TestCPUPerDownload(t *testing.T) {
	t.Parallel()
	sc := fastHosts(3)
	sc.PackageSize = 64 << 10
	sc.Policy.DiscoveryDelay = Duration(50 * time.Millisecond)
	free := run(t, sc, SwarmCoop)
	for _, tc := range []struct {
		name string
		cpu  CPU
		want float64
	}{
		{"work", CPU{Cores: 1, PerDownload: 0.1}, 0.05 + 0.3},
		{"work and commit", CPU{Cores: 1, PerDownload: 0.1, PerCommit: 0.05}, 0.05 + 0.3 + 0.15},
	} {
		sc.CPU = tc.cpu
		r := run(t, sc, SwarmCoop)
		checkComplete(t, r)
		if math.Abs(r.Makespan-tc.want) > 0.05*tc.want {
			t.Errorf("%s: makespan %.4fs (%.4fs without), want %.3fs", tc.name, r.Makespan, free.Makespan, tc.want)
		}
	}
	slow := fastHosts(1)
	slow.PackageSize = 1 << 20
	slow.OriginUpload = 1 << 20
	base := run(t, slow, OriginPerHost)
	slow.CPU = CPU{Cores: 4, PerDownload: 0.1}
	if r := run(t, slow, OriginPerHost); math.Abs(r.Makespan-base.Makespan) > 1e-9 {
		t.Errorf("slow origin: makespan %.4fs with the work, %.4fs without: want the same", r.Makespan, base.Makespan)
	}
}
