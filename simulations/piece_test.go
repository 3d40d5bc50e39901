package simulations

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// runPieces starts flows (size, receiver) on one server of capacity c,
// sent in pieces of piece bytes (0: fluid, shared per flow), at time 0
// and returns when each ends and the bytes the server sent.
func runPieces(e *engine, sid int32, piece float64, sizes []float64, dsts []int32) ([]float64, float64) {
	if piece > 0 {
		e.setPiece(sid, piece)
	}
	ids := map[int32]int{}
	for k, sz := range sizes {
		ids[e.startFlow(sid, dsts[k], int32(k), 0, sz, -1, -1)] = k
	}
	done := make([]float64, len(sizes))
	for n := 0; n < len(sizes); {
		s, t := e.nextServer()
		e.now = t
		id := e.finishing(s)
		if e.pieceNext(id) {
			continue
		}
		done[ids[id]] = t
		e.endFlow(id)
		n++
	}
	return done, e.sentNow(sid)
}

// TestPieceTurns: a server sent in pieces serves one piece at a time at
// its whole capacity, the turns in start-time fair order by receiver, so
// one-piece flows end a turn apart where fluid sharing ends them together.
func TestPieceTurns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		piece float64
		sizes []float64
		dsts  []int32
		want  []float64
	}{
		// Four one-piece answers on 10 B/s: 1, 2, 3, 4 s; fluid: all 4 s.
		{"one piece each", 10, []float64{10, 10, 10, 10}, []int32{0, 1, 2, 3}, []float64{1, 2, 3, 4}},
		{"one piece each, fluid", 0, []float64{10, 10, 10, 10}, []int32{0, 1, 2, 3}, []float64{4, 4, 4, 4}},
		// Two answers of two pieces: A1 B1 A2 B2.
		{"two pieces each", 10, []float64{20, 20}, []int32{0, 1}, []float64{3, 4}},
		// A last piece shorter: 15 B is 10 + 5: A1 B1 A2(5 B) B2(5 B).
		{"short last piece", 10, []float64{15, 15}, []int32{0, 1}, []float64{2.5, 3}},
		// Two flows to receiver 0, one to receiver 1: the second flow
		// to 0 waits behind receiver 1's (its tag is 0's finish, 10).
		{"fair by receiver", 10, []float64{10, 10, 10}, []int32{0, 0, 1}, []float64{1, 3, 2}},
	} {
		e := &engine{}
		e.recvShare = func(int32) float64 { return math.Inf(1) }
		sid := e.addServer(10)
		got, sent := runPieces(e, sid, tc.piece, tc.sizes, tc.dsts)
		for k := range got {
			if math.Abs(got[k]-tc.want[k]) > 1e-9 {
				t.Errorf("%s: flow %d ends at %v, want %v (all %v)", tc.name, k, got[k], tc.want[k], got)
			}
		}
		total := 0.0
		for _, sz := range tc.sizes {
			total += sz
		}
		if math.Abs(sent-total) > 1e-6 {
			t.Errorf("%s: the server sent %v B, want %v", tc.name, sent, total)
		}
	}
}

// TestPieceParkedTakesNoCPU: flows waiting for their server's turn take
// no share of the shared CPU: two servers of 100 B/s, five one-piece
// flows each, on one core at 0.01 CPU-s per byte (100 B/s in all): the
// two holders share the core, 50 B/s each, and the 100 bytes end at 1 s.
// Parked flows counted on the CPU link would hold each holder to a tenth
// of it: 5 s.
func TestPieceParkedTakesNoCPU(t *testing.T) {
	t.Parallel()
	e := &engine{}
	e.recvShare = func(int32) float64 { return math.Inf(1) }
	e.links = []link{{capacity: 1}}
	e.cpu = cpuState{on: true, link: 0, perByte: 0.01, perOrigin: 0.01, origin: -1}
	e.relevel(0)
	a, b := e.addServer(100), e.addServer(100)
	e.setPiece(a, 10)
	e.setPiece(b, 10)
	for k := range 5 {
		e.startFlow(a, int32(k), 0, 0, 10, -1, -1)
		e.startFlow(b, int32(5+k), 0, 0, 10, -1, -1)
	}
	end := 0.0
	for n := 0; n < 10; n++ {
		s, t := e.nextServer()
		e.now = t
		id := e.finishing(s)
		if e.pieceNext(id) {
			continue
		}
		end = t
		e.endFlow(id)
	}
	if math.Abs(end-1) > 1e-6 {
		t.Errorf("ten one-piece flows on one core end at %.3fs, want 1s", end)
	}
}

// TestPieceCrowdAnswersEndApart: the harness's 64 KiB flash crowd (24
// hosts, one chunk, uploads 4 MiB/s, swarm-coop): the fetcher's 23
// answers are one piece each. Sent in 64 KiB pieces, as the daemon's
// limiter does, the askers end one turn (15.6 ms) apart, the last about
// when fluid sharing ends them all: the median comes about half the
// answers' time earlier.
func TestPieceCrowdAnswersEndApart(t *testing.T) {
	t.Parallel()
	sc := capped(0)
	sc.Hosts = 24
	sc.PackageSize = 64 << 10
	sc.HostUpload = Dist{{Rate: 4 << 20, Weight: 1}}
	fluid := run(t, sc, SwarmCoop)
	sc.UploadPiece = 64 << 10
	r := run(t, sc, SwarmCoop)
	checkComplete(t, r)
	turn := float64(sc.UploadPiece) / float64(4<<20)
	done := func(r *Result) []float64 {
		var d []float64
		for _, h := range r.PerHost {
			if h.FromOrigin == 0 {
				d = append(d, h.Done)
			}
		}
		slices.Sort(d)
		return d
	}
	f, p := done(fluid), done(r)
	if len(p) != sc.Hosts-1 || len(f) != sc.Hosts-1 {
		t.Fatalf("askers: %d in pieces, %d fluid, want %d", len(p), len(f), sc.Hosts-1)
	}
	if spread := f[len(f)-1] - f[0]; spread > turn/10 {
		t.Errorf("fluid: the askers end %.4fs apart, want together", spread)
	}
	for k := 1; k < len(p); k++ {
		if gap := p[k] - p[k-1]; math.Abs(gap-turn) > 1e-6 {
			t.Errorf("in pieces: asker %d ends %.5fs after the one before, want one turn, %.5fs", k, gap, turn)
		}
	}
	if d := p[len(p)-1] - f[len(f)-1]; math.Abs(d) > turn/2 {
		t.Errorf("the last asker ends at %.4fs in pieces, %.4fs fluid: want the same", p[len(p)-1], f[len(f)-1])
	}
	t.Logf("askers end %.3f..%.3fs in pieces (median %.3fs), all at %.3fs fluid (median %.3fs)", p[0], p[len(p)-1], r.P50, f[0], fluid.P50)
}

// TestPieceWorkConserving: flows of random sizes (parts of pieces
// included) to random receivers, started at 0 on a server sent in
// pieces: the server never idles while a flow is live (the last ends at
// the bytes over the capacity) and moves every byte.
func TestPieceWorkConserving(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 7))
	for trial := range 20 {
		n := 2 + rng.IntN(30)
		sizes := make([]float64, n)
		dsts := make([]int32, n)
		total := 0.0
		for k := range n {
			sizes[k] = float64(1 + rng.IntN(50*10))
			dsts[k] = int32(rng.IntN(8))
			total += sizes[k]
		}
		e := &engine{}
		e.recvShare = func(int32) float64 { return math.Inf(1) }
		sid := e.addServer(10)
		got, sent := runPieces(e, sid, 10, sizes, dsts)
		if last := slices.Max(got); math.Abs(last-total/10) > 1e-6 {
			t.Errorf("trial %d: the last flow ends at %.4fs, want the bytes over the capacity, %.4fs", trial, last, total/10)
		}
		if math.Abs(sent-total) > 1e-6 {
			t.Errorf("trial %d: sent %v B, want %v", trial, sent, total)
		}
	}
}
