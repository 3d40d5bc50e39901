package simulations

import (
	"slices"
	"testing"
	"time"
)

// visibleScan is visible as a scan of every present host.
func visibleScan(s *sim) []int32 {
	var v []int32
	for _, q := range s.present {
		if s.hosts[q].pub <= s.now {
			v = append(v, q)
		}
	}
	return v
}

// TestVisiblePrefix: the hosts lookups find are those of a scan of the
// present hosts, in the same order, as hosts arrive and after one leaves
// from the middle of present (churn); while present is in the order of
// arrival they are found without a scan, and without allocating (a scan
// at each lookup cost hosts² per package at 10,000 hosts).
func TestVisiblePrefix(t *testing.T) {
	sc := flashCrowd(40, 1<<20, time.Second).withDefaults()
	s := newSim(sc, Swarm)
	check := func(when string) {
		t.Helper()
		if got, want := s.visible(), visibleScan(s); !slices.Equal(got, want) {
			t.Fatalf("%s, t=%.2f: visible %v, want %v", when, s.now, got, want)
		}
	}
	for h := range int32(40) {
		s.now = float64(h) * 0.1
		s.arrive(h, false)
		check("arrivals")
	}
	for _, now := range []float64{4, 4.5, 4.9, 5.0, 5.05, 10} {
		s.now = now
		check("later")
	}
	s.now = 4.5
	if len(s.visible()) == 0 || len(s.visible()) == len(s.present) {
		t.Fatalf("t=4.5: %d of %d visible, want some", len(s.visible()), len(s.present))
	}
	if a := testing.AllocsPerRun(10, func() { s.visible() }); a != 0 {
		t.Errorf("visible: %v allocations, want 0", a)
	}
	s.leave(5)
	if !s.presMoved {
		t.Fatalf("host 5 left from the middle of present: presMoved not set")
	}
	for _, now := range []float64{4.5, 10} {
		s.now = now
		check("after a leave")
	}
}
