package simulations

import (
	"math"
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
