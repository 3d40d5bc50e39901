package simulations

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// A workload of many packages (Scenario.Packages): every host fetches
// the packages one after the other, in one order. Each package is its
// own run of the event loop, the hosts arriving in it when they finished
// the package before plus Packages.Overhead (the first package: as
// Scenario.Arrival says); the host links are the same in every run (the
// same seed draws them). Policy.ProviderDelay applies to each package: a
// host's record for a package is out that long after it starts it.
//
// Left out: the packages' runs do not share links, so a host serving
// package k to slower hosts while it fetches package k+1, and the origin
// serving several packages at once, are not slowed by each other; the
// origin bytes are exact for the model, the makespan is optimistic when
// hosts drift apart by more than one package.

// WorkloadSizes draws the sizes of sc.Packages (seeded by sc.Seed).
func WorkloadSizes(sc Scenario) ([]int64, error) {
	d, err := ReadSizeDist(sc.Packages.Sizes)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: packages: %w", sc.Name, err)
	}
	r := rand.New(rand.NewPCG(sc.Seed, 0x9ac4))
	sizes := make([]int64, sc.Packages.Count)
	for k := range sizes {
		sizes[k] = d.Sample(r.Float64(), r.Float64())
	}
	return sizes, nil
}

// runWorkload runs sc.Packages with strategy st (sc has its defaults),
// each package's run calling onMany as runSampled says.
// The Result adds up the packages' runs: PackageBytes is the workload's
// bytes, a host's Arrival its first package's start and Done its last
// package's end.
func runWorkload(sc Scenario, st Strategy, onMany func()) (*Result, error) {
	sizes, err := WorkloadSizes(sc)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, n := range sizes {
		total += n
	}
	var sum *Result
	var starts []float64
	for k, size := range sizes {
		pk := sc
		pk.Packages = Packages{}
		pk.PackageSize = Size(size)
		s := newSimAt(pk, st, starts)
		s.coop.pkg = k
		s.onMany = onMany
		if err := s.run(); err != nil {
			return nil, fmt.Errorf("package %d of %d (%d bytes): %w", k+1, len(sizes), size, err)
		}
		r := s.result()
		sum = addResult(sum, r)
		starts = make([]float64, len(r.PerHost))
		for h, hr := range r.PerHost {
			starts[h] = hr.Done + sc.Packages.Overhead.Seconds()
		}
	}
	all := sc
	all.Packages = Packages{}
	all.PackageSize = Size(total)
	return finishWorkload(sum, all), nil
}

// addResult adds package run r to the workload's sum so far (nil: none).
func addResult(sum, r *Result) *Result {
	if sum == nil {
		c := *r
		c.PerHost = slices.Clone(r.PerHost)
		c.Origin = slices.Clone(r.Origin)
		return &c
	}
	sum.PackageBytes += r.PackageBytes
	sum.OriginBytes += r.OriginBytes
	sum.SiteBytes += r.SiteBytes
	sum.WANBytes += r.WANBytes
	sum.DuplicateBytes += r.DuplicateBytes
	sum.Events += r.Events
	for h, hr := range r.PerHost {
		p := &sum.PerHost[h]
		p.Done = hr.Done
		p.FromOrigin += hr.FromOrigin
		p.FromSite += hr.FromSite
		p.FromWAN += hr.FromWAN
		p.Duplicate += hr.Duplicate
		p.Uploaded += hr.Uploaded
	}
	sum.Origin = mergeSamples(sum.Origin, r.Origin)
	return sum
}

// mergeSamples adds two cumulative series sampled at different times:
// at each sample time, the sum of each series' last value by then.
func mergeSamples(a, b []Sample) []Sample {
	out := make([]Sample, 0, len(a)+len(b))
	var i, j int
	var va, vb float64
	for i < len(a) || j < len(b) {
		if j == len(b) || (i < len(a) && a[i].T <= b[j].T) {
			va = a[i].Bytes
			out = append(out, Sample{T: a[i].T, Bytes: va + vb})
			i++
		} else {
			vb = b[j].Bytes
			out = append(out, Sample{T: b[j].T, Bytes: va + vb})
			j++
		}
	}
	return out
}

// finishWorkload computes sum's derived figures for the whole workload
// (all: the scenario with the workload's bytes as its package).
func finishWorkload(sum *Result, all Scenario) *Result {
	sum.Bound = FluidBound(all)
	sum.summarise()
	return sum
}
