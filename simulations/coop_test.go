package simulations

import (
	"testing"
	"time"
)

// flashCrowd is the daemons' loopback measurement as a scenario: hosts
// all at once, one package of size in 256 KiB chunks, 1 Gbit/s hosts and
// origin in one site, with a provider delay of delay.
func flashCrowd(hosts int, size Size, delay time.Duration) Scenario {
	sc := DefaultScenario()
	sc.Name = "flash"
	sc.Hosts = hosts
	sc.Sites = 1
	sc.VMsPerHost = 1
	sc.PackageSize = size
	sc.ChunkSize = 256 << 10
	sc.HostUpload = Dist{{Rate: 125e6, Weight: 1}}
	sc.HostDownload = Dist{{Rate: 125e6, Weight: 1}}
	sc.OriginUpload = 125e6
	sc.Latency = Latency{Site: Duration(100 * time.Microsecond), Origin: Duration(time.Millisecond)}
	sc.Policy.ProviderDelay = Duration(delay)
	sc.Policy.FindInterval = Duration(time.Second)
	sc.Seed = 3
	return sc
}

func copies(r *Result) float64 { return r.OriginBytes / r.PackageBytes }

// checkComplete fails unless every host finished and received every
// byte (at least once: the part of a cancelled origin transfer that was
// sent counts as received, not as a duplicate).
func checkComplete(t *testing.T, r *Result) {
	t.Helper()
	if r.Finished != r.Hosts {
		t.Fatalf("%s: %d of %d hosts finished", r.Strategy, r.Finished, r.Hosts)
	}
	for _, h := range r.PerHost {
		if got := h.FromOrigin + h.FromSite + h.FromWAN - h.Duplicate; got < r.PackageBytes-1 {
			t.Errorf("%s: host %d received %v useful bytes, want %v", r.Strategy, h.Host, got, r.PackageBytes)
		}
	}
}

// TestDiscoveryDelayFlashCrowd: hosts that learn of each other's
// downloads only once provider records are out fetch a small package
// from the origin alone, as the daemons do; learning at once they split
// the origin's chunks exactly.
func TestDiscoveryDelayFlashCrowd(t *testing.T) {
	t.Parallel()
	r := run(t, flashCrowd(24, 1<<20, 0), Swarm)
	checkComplete(t, r)
	if c := copies(r); c > 1.1 {
		t.Errorf("no provider delay: %.2f origin copies, want about 1", c)
	}
	r = run(t, flashCrowd(24, 1<<20, time.Second), Swarm)
	checkComplete(t, r)
	if c := copies(r); c <= 10 {
		t.Errorf("provider delay 1s: %.2f origin copies, want more than 10", c)
	}
}

// TestCoopFlashCrowd: with the provider delay, cooperative fetching
// still fetches each chunk from the origin about once: the fetchers are
// ranked among the overlay's members, not the providers found.
func TestCoopFlashCrowd(t *testing.T) {
	t.Parallel()
	sc := flashCrowd(24, 1<<20, time.Second)
	r := run(t, sc, SwarmCoop)
	checkComplete(t, r)
	if c := copies(r); c > 1.1 {
		t.Errorf("swarm-coop: %.2f origin copies, want at most 1.1", c)
	}
	if r := run(t, sc, Swarm); copies(r) <= 10 {
		t.Errorf("swarm: %.2f origin copies, want more than 10", copies(r))
	}
	// A larger package in more chunks, and with several sites.
	sc = flashCrowd(24, 16<<20, time.Second)
	sc.Sites = 3
	r = run(t, sc, SwarmCoop)
	checkComplete(t, r)
	if c := copies(r); c > 1.1 {
		t.Errorf("swarm-coop, 16 MiB over 3 sites: %.2f origin copies, want at most 1.1", c)
	}
}

func TestCoopChurnRefused(t *testing.T) {
	sc := flashCrowd(4, 1<<20, 0)
	sc.Churn.Fraction = 0.5
	if _, err := Run(sc, SwarmCoop); err == nil {
		t.Fatal("swarm-coop with churn ran; want ErrCoopChurn")
	}
}

// TestCoopPlots: the plots and CSV of runs with swarm-coop, over two
// host counts, are written with a line for swarm-coop.
func TestCoopPlots(t *testing.T) {
	t.Parallel()
	var rs []*Result
	for _, n := range []int{4, 12} {
		for _, st := range []Strategy{Swarm, SwarmCoop} {
			rs = append(rs, run(t, flashCrowd(n, 1<<20, time.Second), st))
		}
	}
	dir := t.TempDir()
	if _, err := WritePlots(dir, rs); err != nil {
		t.Fatalf("WritePlots: %v", err)
	}
	if err := WriteCSV(dir, rs); err != nil {
		t.Fatalf("WriteCSV: %v", err)
	}
	_, order, _ := byStrategy(rs)
	if len(order) != 2 || order[1] != SwarmCoop {
		t.Errorf("plotted strategies %v, want [swarm swarm-coop]", order)
	}
}

// TestCoopLarge: swarm-coop at 1,000 hosts, where HaveUpdates fan out
// on a second goroutine (pipe.go), completes with one origin copy.
func TestCoopLarge(t *testing.T) {
	t.Parallel()
	sc := flashCrowd(fanParallelHosts, 2<<20, time.Second)
	r := run(t, sc, SwarmCoop)
	checkComplete(t, r)
	if c := copies(r); c > 1.1 {
		t.Errorf("swarm-coop, %d hosts: %.2f origin copies, want at most 1.1", sc.Hosts, c)
	}
}
