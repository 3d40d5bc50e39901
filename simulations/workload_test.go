package simulations

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// workload: 24 hosts fetching 40 packages of Debian 12 main's sizes, with
// the provider delay.
func workload(st Strategy) Scenario {
	sc := flashCrowd(24, 0, time.Second)
	sc.Name = "debian"
	sc.Packages = Packages{Count: 40, Sizes: "testdata/debian12-main-sizes.tsv", Overhead: Duration(50 * time.Millisecond)}
	return sc
}

// TestWorkloadPackages: every host gets every byte of every package once;
// the origin sends each package about once with swarm-coop and several
// times with swarm (most Debian packages are small: fetched before any
// provider record is out).
func TestWorkloadPackages(t *testing.T) {
	t.Parallel()
	sc := workload(Swarm)
	sizes, err := WorkloadSizes(sc.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, n := range sizes {
		total += float64(n)
	}
	var last float64
	for _, st := range []Strategy{Swarm, SwarmCoop} {
		r := run(t, sc, st)
		if r.PackageBytes != total {
			t.Fatalf("%s: %v package bytes, want the %d sizes' %v", st, r.PackageBytes, len(sizes), total)
		}
		checkComplete(t, r)
		// A host starts each package after the one before: its time is
		// at least the sum of the overheads.
		if min := float64(len(sizes)-1) * 0.05; r.Max < min {
			t.Errorf("%s: slowest host took %.3fs, less than the overheads' %.3fs", st, r.Max, min)
		}
		if n := len(r.Origin); n == 0 || math.Abs(r.Origin[n-1].Bytes-r.OriginBytes) > 1 {
			t.Errorf("%s: origin series ends at %v, origin bytes %v", st, r.Origin[n-1].Bytes, r.OriginBytes)
		}
		c := copies(r)
		t.Logf("%s: %d packages, %.1f MiB: %.2f origin copies, makespan %.2fs", st, len(sizes), total/(1<<20), c, r.Makespan)
		switch st {
		case Swarm:
			if c < 5 {
				t.Errorf("swarm: %.2f origin copies, want more than 5", c)
			}
		case SwarmCoop:
			if c > 1.1 {
				t.Errorf("swarm-coop: %.2f origin copies, want at most 1.1", c)
			}
		}
		last = c
	}
	if again := copies(run(t, sc, SwarmCoop)); again != last {
		t.Errorf("swarm-coop again: %v origin copies, first %v: not deterministic", again, last)
	}
}

func TestWorkloadValidate(t *testing.T) {
	sc := workload(Swarm)
	sc.Packages.Sizes = ""
	if err := sc.Validate(); err == nil {
		t.Error("packages without sizes: valid")
	}
	sc = workload(Swarm)
	sc.Packages.Sizes = "testdata/none.tsv"
	if _, err := Run(sc, Swarm); err == nil {
		t.Error("packages with a missing size table: ran")
	}
}

// oneSize writes a size table whose every package is size bytes.
func oneSize(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sizes.tsv")
	if err := os.WriteFile(p, fmt.Appendf(nil, "%d\t%d\t1\n", size, size+1), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWorkloadSharesOrigin: hosts arriving over a window drift apart by
// whole packages; the packages a host and a later host fetch at the same
// time share the origin's link, so the origin never sends faster than its
// capacity: origin bytes <= capacity x makespan. Packages run apart (each
// its own run with the origin to itself) broke it: origin-per-host sent
// 96 MB by 11.6 s from a 4 MB/s origin.
func TestWorkloadSharesOrigin(t *testing.T) {
	t.Parallel()
	for _, st := range []Strategy{OriginPerHost, Swarm} {
		sc := flashCrowd(12, 0, 0)
		sc.OriginUpload = 4e6
		sc.Arrival = Arrival{Pattern: ArrivalStaggered, Over: Duration(6 * time.Second)}
		sc.Packages = Packages{Count: 4, Sizes: oneSize(t, 2e6), Overhead: Duration(10 * time.Millisecond), Parallel: 1}
		r := run(t, sc, st)
		checkComplete(t, r)
		if max := float64(sc.OriginUpload) * r.Makespan; r.OriginBytes > max*(1+1e-9) {
			t.Errorf("%s: origin sent %.0f bytes by %.2fs: more than its %.0f B/s allow (%.0f)", st, r.OriginBytes, r.Makespan, float64(sc.OriginUpload), max)
		}
	}
}

// TestWorkloadTogetherSlower: two packages fetched at once by hosts whose
// downloads bind take longer together than either alone, and about as
// long as the two after each other: the host's download link is shared.
func TestWorkloadTogetherSlower(t *testing.T) {
	t.Parallel()
	sc := flashCrowd(4, 0, 0)
	sc.HostDownload = Dist{{Rate: 1e6, Weight: 1}}
	sc.Packages = Packages{Count: 2, Sizes: oneSize(t, 1e6)}
	together := run(t, sc, OriginPerHost)
	checkComplete(t, together)
	alone := sc
	alone.Packages = Packages{}
	alone.PackageSize = 1e6
	one := run(t, alone, OriginPerHost)
	if together.Makespan < 1.9*one.Makespan {
		t.Errorf("two packages at once: %.2fs, one alone %.2fs: want about twice as long", together.Makespan, one.Makespan)
	}
}

// TestWorkloadOriginPerHostFinishes: a workload's time limit allows every
// VM's copy from the origin (origin-per-host at 300 hosts from a slow
// origin takes 6,000 s, sixty times the fluid bound of the swarm).
func TestWorkloadOriginPerHostFinishes(t *testing.T) {
	t.Parallel()
	sc := flashCrowd(300, 0, 0)
	sc.OriginUpload = 1e5
	sc.Packages = Packages{Count: 2, Sizes: oneSize(t, 1e6)}
	r := run(t, sc, OriginPerHost)
	checkComplete(t, r)
	if want := 300 * 2e6 / 1e5; r.Makespan < want*0.99 {
		t.Errorf("makespan %.0fs, want about %.0fs", r.Makespan, want)
	}
}
