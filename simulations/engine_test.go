package simulations

import (
	"math"
	"slices"
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

// TestEngineSiteLinkMaxMin: a site's downlink (10 MB/s) carries ten
// flows from another site, held to 0.1 MB/s each by that site's uplink
// (1 MB/s), and ten flows from the origin: the origin's flows take what
// the others leave, 0.9 MB/s each, and their 9 MB end at 10 s, as TCP
// flows through one bottleneck queue share it. An equal split of the
// downlink (0.5 MB/s each) left 4 MB/s of it idle: 18 s.
func TestEngineSiteLinkMaxMin(t *testing.T) {
	t.Parallel()
	const mb = 1e6
	e := &engine{}
	e.recvShare = func(int32) float64 { return math.Inf(1) }
	e.links = []link{{capacity: 1 * mb}, {capacity: 10 * mb}}
	for k := range e.links {
		e.relevel(int32(k))
	}
	remote, origin := e.addServer(100*mb), e.addServer(100*mb)
	isOrigin := map[int32]bool{}
	for k := range 10 {
		e.startFlow(remote, int32(k), int32(k), 0, 100*mb, 0, 1)
		isOrigin[e.startFlow(origin, int32(10+k), int32(k), 0, 9*mb, -1, 1)] = true
	}
	// Every link levelled for the flows it has (flows that start one by
	// one in between keep the caps they started with).
	for k := range e.links {
		e.links[k].nRef = 0
		e.linkChanged(int32(k))
	}
	var last float64
	for len(isOrigin) > 0 {
		s, at := e.nextServer()
		if math.IsInf(at, 1) {
			t.Fatal("no flow ends")
		}
		e.now = at
		id := e.finishing(s)
		if isOrigin[id] {
			delete(isOrigin, id)
			last = at
		}
		e.endFlow(id)
	}
	if math.Abs(last-10) > 0.01 {
		t.Errorf("the origin's flows ended by %.3fs, want 10s", last)
	}
}

// TestEnginePerPeer: a host's upload is shared between its receivers, not
// its flows, as the daemon's fairShare hands out upload turns fairly
// between peers by bytes however many streams each has. On 12 B/s, a
// receiver with two flows (3 and 6 bytes) and one with one (9 bytes)
// take 6 B/s each: the 3-byte flow ends at 1s (3 B/s), then its
// receiver's other flow and the third share the 12 B/s, both ending at
// 1.5s. Shared per flow (4 B/s each) they ended at 0.75, 1.25 and 1.5s.
// The origin's server stays shared per flow.
func TestEnginePerPeer(t *testing.T) {
	t.Parallel()
	for _, perPeer := range []bool{true, false} {
		e := &engine{}
		e.recvShare = func(int32) float64 { return math.Inf(1) }
		e.rin = make([]recvList, 2)
		sid := e.addServer(12)
		e.srvs[sid].perPeer = perPeer
		ids := map[int32]int{}
		for k, f := range []struct {
			dst  int32
			size float64
		}{{0, 3}, {0, 6}, {1, 9}} {
			r := &e.rin[f.dst]
			r.in = append(r.in, -1) // as sim.open: counted before it starts
			id := e.startFlow(sid, f.dst, int32(k), 0, f.size, -1, -1)
			r.in[len(r.in)-1] = id
			ids[id] = k
		}
		done := make([]float64, 3)
		for range 3 {
			s, at := e.nextServer()
			e.now = at
			id := e.finishing(s)
			done[ids[id]] = at
			e.endFlow(id)
			r := &e.rin[e.flows[id].dst]
			r.in = slices.DeleteFunc(r.in, func(x int32) bool { return x == id })
		}
		want := []float64{1, 1.5, 1.5}
		if !perPeer {
			want = []float64{0.75, 1.25, 1.5}
		}
		for k := range want {
			if math.Abs(done[k]-want[k]) > 1e-9 {
				t.Errorf("per peer %v: flows end at %v, want %v", perPeer, done, want)
				break
			}
		}
	}
}
