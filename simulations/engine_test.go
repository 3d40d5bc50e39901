package simulations

import (
	"math"
	"testing"
)

// runFlows starts flows (size, receiver cap) on one server of capacity c
// at time 0 and returns when each ends.
func runFlows(c float64, sizes, caps []float64) []float64 {
	e := &engine{}
	e.recvShare = func(dst int32) float64 { return caps[dst] }
	sid := e.addServer(c)
	ids := map[int32]int{}
	for k, sz := range sizes {
		ids[e.startFlow(sid, int32(k), int32(k), 0, sz, -1, -1)] = k
	}
	done := make([]float64, len(sizes))
	for range sizes {
		s, t := e.nextServer()
		e.now = t
		id := e.finishing(s)
		done[ids[id]] = t
		e.endFlow(id)
	}
	return done
}

func TestEngineMaxMin(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	for _, tc := range []struct {
		name        string
		c           float64
		sizes, caps []float64
		want        []float64
	}{
		// Two equal shares of 10 B/s: 5 each; the 10-byte flow ends at 2s,
		// the other then gets 10 B/s for its last 10 bytes: 3s.
		{"equal", 10, []float64{10, 20}, []float64{inf, inf}, []float64{2, 3}},
		// The first flow is capped at 2 B/s (its receiver), so the second
		// gets the other 8: 20/8 = 2.5s; the first keeps 2 B/s: 10/2 = 5s.
		{"capped", 10, []float64{10, 20}, []float64{2, inf}, []float64{5, 2.5}},
		// Three flows, caps 1, 3, inf on 10 B/s: 1, 3, 6. Sizes 6, 6, 6:
		// the third ends at 1s (6 bytes at 6); then 1 and 3 (the cap
		// binds): the second ends at 2s, the first at 6s.
		{"three", 10, []float64{6, 6, 6}, []float64{1, 3, inf}, []float64{6, 2, 1}},
		// Caps above the fair share do not bind: 4 flows on 8 B/s, caps 5.
		{"loose caps", 8, []float64{4, 4, 4, 4}, []float64{5, 5, 5, 5}, []float64{2, 2, 2, 2}},
	} {
		got := runFlows(tc.c, tc.sizes, tc.caps)
		for k := range got {
			if math.Abs(got[k]-tc.want[k]) > 1e-9 {
				t.Errorf("%s: flow %d ends at %v, want %v (all %v)", tc.name, k, got[k], tc.want[k], got)
			}
		}
	}
}
