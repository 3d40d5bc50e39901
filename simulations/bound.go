package simulations

import (
	"math"
	"slices"
)

// FluidBound is the fluid lower bound on the time for every host of a
// flash crowd to hold the package (seconds):
//
//	max(S/U_origin, S/D_min, N·S/(U_origin + N·mean(U_host)))
//
// where S is the bytes each host lacks (the package size, times 1-Reuse
// for a new version), N the hosts, D_min the slowest host download
// capacity: the origin must send every byte at least once, the slowest
// host must receive S, and the N·S bytes delivered cannot leave the
// origin and the hosts faster than their upload capacities allow. Site
// links, latency and chunking are ignored, so the bound may not be
// reachable when site links are the bottleneck.
func FluidBound(sc Scenario) float64 {
	sc = sc.withDefaults()
	s := float64(sc.PackageSize) * (1 - sc.NewVersion.Reuse)
	n := float64(sc.Hosts)
	uo := float64(sc.OriginUpload)
	dmin := math.Inf(1)
	for _, e := range sc.HostDownload {
		if e.Weight > 0 {
			dmin = min(dmin, float64(e.Rate))
		}
	}
	return max(s/uo, s/dmin, n*s/(uo+n*sc.HostUpload.Mean()))
}

// quantile returns the q-quantile (nearest rank) of xs, NaN if empty.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	ys := slices.Clone(xs)
	slices.Sort(ys)
	k := int(math.Ceil(q*float64(len(ys)))) - 1
	return ys[min(max(k, 0), len(ys)-1)]
}
