package policy

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Unix(1_000_000, 0)

func newTestPicker(n int, seed uint64, mod func(*PickerConfig)) *Picker {
	cfg := PickerConfig{NumChunks: n, Rand: rand.New(rand.NewPCG(seed, seed^0x5eed))}
	if mod != nil {
		mod(&cfg)
	}
	return NewPicker(cfg)
}

// deepPipes lets a peer take 100 requests at once.
func deepPipes(c *PickerConfig) {
	c.MaxInflightPerPeer, c.InitialBDP, c.MaxInflightBytes = 100, 100<<20, 1<<40
}

func bitsOf(n int, idx ...int) Bitfield {
	b := NewBitfield(n)
	for _, i := range idx {
		b.Set(i)
	}
	return b
}

func allBits(n int) Bitfield {
	b := NewBitfield(n)
	for i := range n {
		b.Set(i)
	}
	return b
}

// checkPicker compares the Picker's incremental state with a brute-force
// recomputation.
func checkPicker(t *testing.T, p *Picker) {
	t.Helper()
	for i := range p.n {
		var a int32
		for _, sl := range p.slots {
			if sl.live && sl.have.Has(i) {
				a++
			}
		}
		if p.ck[i].avail != a {
			t.Fatalf("avail[%d] = %d, brute force %d", i, p.ck[i].avail, a)
		}
		n := 0
		for id := p.ck[i].reqHead; id >= 0; id = p.recs[id].next {
			n++
		}
		if int(p.ck[i].reqCount) != n {
			t.Fatalf("reqCount[%d] = %d, list has %d", i, p.ck[i].reqCount, n)
		}
		for l := range p.levels {
			in := p.levels[l].words != nil && p.levels[l].words[i>>6]&(1<<(i&63)) != 0
			want := p.pickable(i) && int(a) == l
			if in != want {
				t.Fatalf("chunk %d in level %d = %v, want %v (have %v req %d avail %d)", i, l, in, want, p.have.Has(i), p.ck[i].reqCount, a)
			}
		}
	}
	elig := 0
	for i := range p.n {
		if p.originEligible(i) {
			elig++
		}
	}
	if elig != p.elig {
		t.Fatalf("elig = %d, brute force %d", p.elig, elig)
	}
	for l := range p.levels {
		if c := Bitfield(p.levels[l].words).Count(); c != p.levels[l].count {
			t.Fatalf("level %d count = %d, bits %d", l, p.levels[l].count, c)
		}
	}
}

func TestPickerRarestFirst(t *testing.T) {
	t.Parallel()
	const n = 8
	p := newTestPicker(n, 1, deepPipes)
	// availability: chunk 0..3 by three peers, 4,5 by two, 6 by one, 7 by none.
	p.PeerJoined("a", bitsOf(n, 0, 1, 2, 3, 4, 5, 6))
	p.PeerJoined("b", bitsOf(n, 0, 1, 2, 3, 4, 5))
	p.PeerJoined("c", bitsOf(n, 0, 1, 2, 3))
	checkPicker(t, p)
	var got []int
	for {
		i, ok := p.NextForPeer("a", t0)
		if !ok {
			break
		}
		got = append(got, i)
		p.Requested(i, "a", t0)
	}
	if len(got) != 7 {
		t.Fatalf("picked %v, want 7 chunks", got)
	}
	wantAvail := []int{1, 2, 2, 3, 3, 3, 3}
	for k, i := range got {
		if a := p.Availability(i); a != wantAvail[k] {
			t.Fatalf("pick %d = chunk %d with availability %d, want %d (order %v)", k, i, a, wantAvail[k], got)
		}
	}
	if _, ok := p.NextForPeer("c", t0); ok {
		t.Fatalf("NextForPeer(c) found a chunk, want none: all requested")
	}
}

func TestPickerTieBreakDiffersAcrossSeeds(t *testing.T) {
	t.Parallel()
	const n = 256
	firsts := map[int]bool{}
	for seed := range uint64(16) {
		p := newTestPicker(n, seed, nil)
		p.PeerJoined("seed", allBits(n))
		i, ok := p.NextForPeer("seed", t0)
		if !ok {
			t.Fatalf("seed %d: NextForPeer found nothing", seed)
		}
		firsts[i] = true
		// Same seed, same answer.
		q := newTestPicker(n, seed, nil)
		q.PeerJoined("seed", allBits(n))
		if j, _ := q.NextForPeer("seed", t0); j != i {
			t.Fatalf("seed %d: NextForPeer = %d then %d, want deterministic", seed, i, j)
		}
	}
	if len(firsts) < 8 {
		t.Fatalf("16 seeds chose %d distinct first chunks, want >= 8", len(firsts))
	}
}

func TestPickerOriginOnlyForUnavailable(t *testing.T) {
	t.Parallel()
	const n = 16
	p := newTestPicker(n, 7, func(c *PickerConfig) { c.OriginParallel, c.OriginInitialWindow, c.OriginJitter = 100, 100, 1 })
	p.PeerJoined("a", bitsOf(n, 0, 1, 2, 3, 4, 5, 6, 7))
	got := map[int]bool{}
	for {
		i, ok := p.NextForOrigin(t0)
		if !ok {
			break
		}
		if p.Availability(i) != 0 {
			t.Fatalf("NextForOrigin = %d, held by %d peers", i, p.Availability(i))
		}
		got[i] = true
		p.Requested(i, OriginPeer, t0)
	}
	if len(got) != 8 {
		t.Fatalf("origin chunks %v, want the 8 chunks no peer has", got)
	}
	checkPicker(t, p)
	// The peer leaves: its chunks become origin chunks.
	p.PeerLeft("a")
	checkPicker(t, p)
	n2 := 0
	for {
		i, ok := p.NextForOrigin(t0)
		if !ok {
			break
		}
		if i >= 8 {
			t.Fatalf("NextForOrigin = %d, already requested", i)
		}
		p.Requested(i, OriginPeer, t0)
		n2++
	}
	if n2 != 8 {
		t.Fatalf("after PeerLeft the origin got %d more chunks, want 8", n2)
	}
}

func TestPickerOriginOrderPrivate(t *testing.T) {
	t.Parallel()
	const n, k = 256, 16
	overlapTotal := 0
	for trial := range uint64(10) {
		a := newTestPicker(n, 2*trial+1, func(c *PickerConfig) { c.OriginInitialWindow = k; c.OriginParallel = k })
		b := newTestPicker(n, 2*trial+2, func(c *PickerConfig) { c.OriginInitialWindow = k; c.OriginParallel = k })
		pa := map[int]bool{}
		for range k {
			i, ok := a.NextForOrigin(t0)
			if !ok {
				t.Fatal("NextForOrigin found nothing")
			}
			a.Requested(i, OriginPeer, t0)
			pa[i] = true
		}
		for range k {
			i, _ := b.NextForOrigin(t0)
			b.Requested(i, OriginPeer, t0)
			if pa[i] {
				overlapTotal++
			}
		}
	}
	// Expected overlap of two random 16-subsets of 256: 1 per trial.
	if overlapTotal > 30 {
		t.Fatalf("two hosts' first %d origin chunks overlapped by %d in 10 trials, want few", k, overlapTotal)
	}
}

func TestPickerOriginWindow(t *testing.T) {
	t.Parallel()
	const n = 64
	p := newTestPicker(n, 3, nil)
	var reqs []int
	for {
		i, ok := p.NextForOrigin(t0)
		if !ok {
			break
		}
		p.Requested(i, OriginPeer, t0)
		reqs = append(reqs, i)
	}
	if len(reqs) != DefaultOriginInitialWindow {
		t.Fatalf("no peers: %d origin requests at start, want the initial window %d", len(reqs), DefaultOriginInitialWindow)
	}
	p.Received(reqs[0], OriginPeer, t0.Add(time.Millisecond), 1<<20)
	if w := p.OriginWindow(); w != DefaultOriginInitialWindow+1 {
		t.Fatalf("window after one origin chunk = %d, want %d", w, DefaultOriginInitialWindow+1)
	}
	for k := range 9 {
		p.PeerJoined(PeerID(fmt.Sprint("p", k)), nil)
	}
	if w := p.OriginWindow(); w != 1 {
		t.Fatalf("window with 9 peers = %d, want 1", w)
	}
	i, ok := p.NextForOrigin(t0)
	if !ok {
		t.Fatalf("NextForOrigin with a free slot found nothing")
	}
	p.Requested(i, OriginPeer, t0)
	if _, ok := p.NextForOrigin(t0); ok {
		t.Fatalf("NextForOrigin with the window full found a chunk")
	}
}

func TestPickerPendingKeepsOriginAway(t *testing.T) {
	t.Parallel()
	const n = 4
	p := newTestPicker(n, 5, func(c *PickerConfig) {
		c.OriginParallel, c.OriginInitialWindow, c.RequestTimeout, c.OriginJitter = 8, 8, 10*time.Second, 1
	})
	p.PeerJoined("a", nil)
	p.PeerPending("a", 0, t0)
	p.PeerPending("a", 1, t0)
	seen := map[int]bool{}
	for {
		i, ok := p.NextForOrigin(t0)
		if !ok {
			break
		}
		seen[i] = true
		p.Requested(i, OriginPeer, t0)
	}
	if seen[0] || seen[1] || !seen[2] || !seen[3] {
		t.Fatalf("origin chunks %v, want 2 and 3 (0 and 1 pending at a peer)", seen)
	}
	p.PeerHave("a", 0) // a got it: now a peer chunk
	if i, ok := p.NextForPeer("a", t0); !ok || i != 0 {
		t.Fatalf("NextForPeer(a) = %d, %v, want 0", i, ok)
	}
	// The claim on 1 expires.
	if i, ok := p.NextForOrigin(t0.Add(11 * time.Second)); !ok || i != 1 {
		t.Fatalf("NextForOrigin after the pending timeout = %d, %v, want 1", i, ok)
	}
	checkPicker(t, p)
}

// stallPicker returns a Picker of 4 chunks (RequestTimeout 10s,
// StallTimeout 2s) that asked peer, holding them all, for k at t0.
func stallPicker(t *testing.T, peer PeerID, k int) (*Picker, []int) {
	t.Helper()
	const n = 4
	p := newTestPicker(n, 9, func(c *PickerConfig) {
		c.RequestTimeout, c.StallTimeout = 10*time.Second, 2*time.Second
	})
	p.PeerJoined(peer, allBits(n))
	var asked []int
	for range k {
		i, ok := p.NextForPeer(peer, t0)
		if !ok {
			t.Fatalf("NextForPeer(%s) found nothing", peer)
		}
		p.Requested(i, peer, t0)
		asked = append(asked, i)
	}
	return p, asked
}

func TestPickerStallGoesToOrigin(t *testing.T) {
	t.Parallel()
	p, _ := stallPicker(t, "slow", 2)
	if i, ok := p.NextForOrigin(t0.Add(time.Second)); ok {
		t.Fatalf("NextForOrigin before the stall = %d, want none (all chunks held by a peer)", i)
	}
	i, ok := p.NextForOrigin(t0.Add(3 * time.Second))
	if !ok || p.Outstanding(i) != 1 {
		t.Fatalf("NextForOrigin after the stall = %d, %v, want a stalled chunk", i, ok)
	}
	p.Requested(i, OriginPeer, t0.Add(3*time.Second))
	cancel := p.Received(i, OriginPeer, t0.Add(4*time.Second), 100)
	if len(cancel) != 1 || cancel[0] != "slow" {
		t.Fatalf("Received from the origin: cancel %v, want [slow]", cancel)
	}
	to := p.Timeouts(t0.Add(11*time.Second), nil)
	if len(to) != 1 || to[0].Peer != "slow" || !to[0].At.Equal(t0) {
		t.Fatalf("Timeouts = %+v, want the other request to slow", to)
	}
	if s := p.Score("slow"); s.Timeouts != 1 || s.Strikes != 1 {
		t.Fatalf("Score(slow) = %+v, want one timeout", s)
	}
	checkPicker(t, p)
}

// A peer sending parts of a large chunk is slow, not stalled: while parts
// arrive (Progress), its requests neither go to the origin nor time out;
// once the parts stop, they do both.
func TestPickerProgressIsNotStall(t *testing.T) {
	t.Parallel()
	p, asked := stallPicker(t, "busy", 1)
	i := asked[0]
	at := t0
	for range 12 {
		at = at.Add(time.Second)
		p.Progress("busy", at)
		p.Progress("nobody", at) // an unknown peer changes nothing
		if j, ok := p.NextForOrigin(at); ok {
			t.Fatalf("NextForOrigin at +%v while parts arrive = %d, want none", at.Sub(t0), j)
		}
		if to := p.Timeouts(at, nil); len(to) != 0 {
			t.Fatalf("Timeouts at +%v while parts arrive = %+v, want none", at.Sub(t0), to)
		}
	}
	if j, ok := p.NextForOrigin(at.Add(3 * time.Second)); !ok || j != i {
		t.Fatalf("NextForOrigin 3s after the last part = %d, %v, want stalled chunk %d", j, ok, i)
	}
	if to := p.Timeouts(at.Add(11*time.Second), nil); len(to) != 1 || to[0].Chunk != i {
		t.Fatalf("Timeouts 11s after the last part = %+v, want chunk %d", to, i)
	}
	checkPicker(t, p)
}

func TestPickerEndgame(t *testing.T) {
	t.Parallel()
	const n = 3
	p := newTestPicker(n, 11, deepPipes)
	p.PeerJoined("a", allBits(n))
	p.PeerJoined("b", allBits(n))
	for range n {
		i, ok := p.NextForPeer("a", t0)
		if !ok {
			t.Fatal("NextForPeer(a) found nothing")
		}
		p.Requested(i, "a", t0)
	}
	if !p.Endgame() {
		t.Fatal("Endgame() = false with 3 missing, threshold 4")
	}
	// Requests on time are not duplicated; late ones are.
	if i, ok := p.NextForPeer("b", t0.Add(DefaultEndgameDelay-time.Millisecond)); ok {
		t.Fatalf("NextForPeer(b) %v after the requests = %d, want none (EndgameDelay %v)", DefaultEndgameDelay-time.Millisecond, i, DefaultEndgameDelay)
	}
	late := t0.Add(DefaultEndgameDelay)
	dup := map[int]bool{}
	for {
		i, ok := p.NextForPeer("b", late)
		if !ok {
			break
		}
		if dup[i] {
			t.Fatalf("chunk %d requested twice from b", i)
		}
		dup[i] = true
		p.Requested(i, "b", late)
	}
	if len(dup) != n {
		t.Fatalf("end game duplicated %d chunks to b, want %d", len(dup), n)
	}
	if i, ok := p.NextForPeer("a", late.Add(time.Second)); ok {
		t.Fatalf("NextForPeer(a) = %d, want none (cap of %d requests per chunk)", i, DefaultEndgameDuplicates)
	}
	cancel := p.Received(0, "b", late.Add(time.Millisecond), 10)
	if len(cancel) != 1 || cancel[0] != "a" {
		t.Fatalf("Received(0, b) cancel = %v, want [a]", cancel)
	}
	if p.Remaining() != 2 || p.Outstanding(0) != 0 {
		t.Fatalf("Remaining = %d, Outstanding(0) = %d; want 2, 0", p.Remaining(), p.Outstanding(0))
	}
	checkPicker(t, p)
}

func TestPickerEndgameOffBeforeThreshold(t *testing.T) {
	t.Parallel()
	const n = 10
	p := newTestPicker(n, 12, deepPipes)
	p.PeerJoined("a", allBits(n))
	p.PeerJoined("b", allBits(n))
	for range 2 {
		i, _ := p.NextForPeer("a", t0)
		p.Requested(i, "a", t0)
	}
	for range n - 2 {
		i, ok := p.NextForPeer("b", t0)
		if !ok {
			break
		}
		p.Requested(i, "b", t0)
	}
	if i, ok := p.NextForPeer("b", t0); ok {
		t.Fatalf("NextForPeer(b) = %d with 10 missing (no end game), want none", i)
	}
}

func TestPipelineDepth(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	cases := []struct {
		name   string
		chunk  int64
		tp     float64
		rtt    time.Duration
		maxInf int
		maxB   int64 // MaxInflightBytes, 0: the default (4 MiB)
		peers  int   // peers known (DownloadInflight, 32 MiB, is shared)
		want   int
	}{
		{"unmeasured 1MiB", mib, 0, 0, 64, 0, 1, 2},
		{"unmeasured 4KiB", 4 << 10, 0, 0, 64, 0, 1, 64},
		{"unmeasured 4KiB capped", 4 << 10, 0, 0, 16, 0, 1, 16},
		{"slow link", mib, 1 * mib, 10 * time.Millisecond, 64, 0, 1, 2},
		{"fast far link, lone peer", mib, 100 * mib, 100 * time.Millisecond, 64, 0, 1, 11},
		{"fast far link, 4 peers", mib, 100 * mib, 100 * time.Millisecond, 64, 0, 4, 8},
		{"fast far link, 32 peers", mib, 100 * mib, 100 * time.Millisecond, 64, 0, 32, 4},
		{"fast far link, 32 peers, 64 MiB each", mib, 100 * mib, 100 * time.Millisecond, 64, 64 * mib, 32, 11},
		{"huge, lone peer", mib, 10000 * mib, time.Second, 64, 0, 1, 32},
		{"huge, no byte cap", mib, 10000 * mib, time.Second, 64, 1 << 40, 1, 64},
		{"huge, 4KiB chunks, 32 peers", 4 << 10, 10000 * mib, time.Second, 64, 0, 32, 64},
		{"4 MiB chunks, 32 peers", 4 * mib, 100 * mib, 100 * time.Millisecond, 64, 0, 32, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPicker(4, 1, func(c *PickerConfig) {
				c.ChunkLen = func(int) int64 { return tc.chunk }
				c.MaxInflightPerPeer = tc.maxInf
				c.MaxInflightBytes = tc.maxB
			})
			for k := range tc.peers {
				p.PeerJoined(PeerID(fmt.Sprintf("p%d", k)), nil)
			}
			sl := &p.slots[p.peers["p0"]]
			sl.score.Throughput, sl.score.RTT = tc.tp, tc.rtt
			if got := p.PipelineDepth("p0"); got != tc.want {
				t.Fatalf("PipelineDepth = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPickerScoring(t *testing.T) {
	t.Parallel()
	const n = 8
	p := newTestPicker(n, 4, nil)
	p.PeerJoined("fast", allBits(n))
	p.PeerJoined("slow", allBits(n))
	i, _ := p.NextForPeer("fast", t0)
	p.Requested(i, "fast", t0)
	p.Received(i, "fast", t0.Add(10*time.Millisecond), 1<<20)
	j, _ := p.NextForPeer("slow", t0)
	p.Requested(j, "slow", t0)
	p.Received(j, "slow", t0.Add(time.Second), 1<<20)
	fs := p.Score("fast")
	if fs.RTT != 10*time.Millisecond || fs.Throughput < 100<<20 || fs.Chunks != 1 {
		t.Fatalf("Score(fast) = %+v", fs)
	}
	got := p.RankPeers([]PeerID{"slow", "gone", "fast"})
	if len(got) != 2 || got[0] != "fast" || got[1] != "slow" {
		t.Fatalf("RankPeers = %v, want [fast slow]", got)
	}
	k, _ := p.NextForPeer("fast", t0)
	p.Requested(k, "fast", t0)
	if s := p.Failed(k, "fast"); s != 1 {
		t.Fatalf("Failed strikes = %d, want 1", s)
	}
	if got := p.RankPeers([]PeerID{"slow", "fast"}); got[0] != "fast" {
		t.Fatalf("RankPeers after one strike = %v, want fast still first (100x faster)", got)
	}
	checkPicker(t, p)
}

// TestPickerRandomOps drives a Picker with random operations and checks
// its state against brute force, and that picks are rarest first.
func TestPickerRandomOps(t *testing.T) {
	t.Parallel()
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 99))
		n := 1 + rng.IntN(300)
		p := newTestPicker(n, seed, func(c *PickerConfig) { c.StallTimeout = 3 * time.Second })
		now := t0
		peers := []PeerID{"a", "b", "c", "d", "e"}
		for op := range 2000 {
			now = now.Add(time.Duration(rng.IntN(500)) * time.Millisecond)
			pr := peers[rng.IntN(len(peers))]
			switch rng.IntN(10) {
			case 0:
				b := NewBitfield(n)
				for i := range n {
					if rng.IntN(3) == 0 {
						b.Set(i)
					}
				}
				p.PeerJoined(pr, b)
			case 1:
				if rng.IntN(4) == 0 {
					p.PeerLeft(pr)
				}
			case 2:
				p.PeerHave(pr, rng.IntN(n))
			case 3, 4:
				i, ok := p.NextForPeer(pr, now)
				if !ok {
					continue
				}
				if !p.PeerHas(pr, i) || p.Have(i) {
					t.Fatalf("seed %d op %d: NextForPeer(%s) = %d: peer has %v, we have %v", seed, op, pr, i, p.PeerHas(pr, i), p.Have(i))
				}
				if p.Outstanding(i) == 0 {
					for j := range n {
						if p.PeerHas(pr, j) && p.pickable(j) && p.ck[j].avail < p.ck[i].avail {
							t.Fatalf("seed %d op %d: picked %d (avail %d) over %d (avail %d)", seed, op, i, p.ck[i].avail, j, p.ck[j].avail)
						}
					}
				}
				p.Requested(i, pr, now)
			case 5:
				i, ok := p.NextForOrigin(now)
				if ok {
					if p.Outstanding(i) == 0 && (p.ck[i].avail != 0 || p.ck[i].pend != 0) {
						t.Fatalf("seed %d op %d: origin picked %d with avail %d pend %d", seed, op, i, p.ck[i].avail, p.ck[i].pend)
					}
					p.Requested(i, OriginPeer, now)
				}
			case 6:
				i := rng.IntN(n)
				if p.Outstanding(i) > 0 {
					from := OriginPeer
					if id := p.ck[i].reqHead; p.recs[id].peer >= 0 {
						from = p.slots[p.recs[id].peer].id
					}
					if rng.IntN(3) == 0 {
						p.Failed(i, from)
					} else {
						p.Received(i, from, now, 1000)
					}
				}
			case 7:
				p.Timeouts(now, nil)
			case 8:
				p.PeerPending(pr, rng.IntN(n), now)
			case 9:
				if rng.IntN(5) == 0 {
					p.SetHave(rng.IntN(n))
				}
			}
			if op%50 == 0 {
				checkPicker(t, p)
			}
		}
		checkPicker(t, p)
	}
}

func TestBitfieldBytes(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 7, 8, 9, 63, 64, 65, 200} {
		b := NewBitfield(n)
		for i := 0; i < n; i += 3 {
			b.Set(i)
		}
		enc := b.AppendBytes(nil, n)
		if len(enc) != (n+7)/8 {
			t.Fatalf("n=%d: %d bytes, want %d", n, len(enc), (n+7)/8)
		}
		got, err := BitfieldFromBytes(enc, n)
		if err != nil {
			t.Fatalf("n=%d: BitfieldFromBytes error %v", n, err)
		}
		for i := range n {
			if got.Has(i) != b.Has(i) {
				t.Fatalf("n=%d: bit %d = %v, want %v", n, i, got.Has(i), b.Has(i))
			}
		}
		if got.Count() != b.Count() {
			t.Fatalf("n=%d: Count %d, want %d", n, got.Count(), b.Count())
		}
		if n%8 != 0 {
			enc[len(enc)-1] |= 0x80
			if _, err := BitfieldFromBytes(enc, n); err == nil {
				t.Fatalf("n=%d: padding bit accepted", n)
			}
		}
		if _, err := BitfieldFromBytes(append(enc, 0), n); err == nil {
			t.Fatalf("n=%d: long bitfield accepted", n)
		}
	}
}

// BenchmarkPickerSwarm: a 4096-chunk download from 32 peers holding random
// halves, every chunk picked, requested and received.
func BenchmarkPickerSwarm(b *testing.B) {
	const n, np = 4096, 32
	rng := rand.New(rand.NewPCG(1, 1))
	haves := make([]Bitfield, np)
	for k := range haves {
		haves[k] = NewBitfield(n)
		for i := range n {
			if rng.IntN(2) == 0 {
				haves[k].Set(i)
			}
		}
	}
	ids := make([]PeerID, np)
	for k := range ids {
		ids[k] = PeerID(fmt.Sprint("peer", k))
	}
	b.ReportAllocs()
	for b.Loop() {
		p := newTestPicker(n, 1, nil)
		for k := range np {
			p.PeerJoined(ids[k], haves[k])
		}
		now := t0
		for !p.Done() {
			progress := false
			for _, id := range ids {
				if i, ok := p.NextForPeer(id, now); ok {
					p.Requested(i, id, now)
					now = now.Add(time.Microsecond)
					p.Received(i, id, now, 1<<20)
					progress = true
				}
			}
			if i, ok := p.NextForOrigin(now); ok {
				p.Requested(i, OriginPeer, now)
				p.Received(i, OriginPeer, now, 1<<20)
				progress = true
			}
			if !progress {
				b.Fatal("no progress")
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/chunk")
}

func TestPickerOriginJitter(t *testing.T) {
	t.Parallel()
	const n = 64
	p := newTestPicker(n, 13, func(c *PickerConfig) {
		c.OriginInitialWindow, c.OriginParallel, c.OriginJitter = 8, 8, 100*time.Millisecond
	})
	p.PeerJoined("a", nil) // a peer: window 8/2 = 4, starts jittered
	i, ok := p.NextForOrigin(t0)
	if !ok {
		t.Fatal("first NextForOrigin found nothing")
	}
	p.Requested(i, OriginPeer, t0)
	// The gate is random in [0, 100ms*2/63]: closed for a moment at most.
	if gate := time.Duration(p.originGate); gate > 100*time.Millisecond*2/63+time.Microsecond {
		t.Fatalf("origin gate %v after one start, want <= %v", gate, 100*time.Millisecond*2/63)
	}
	if _, ok := p.NextForOrigin(t0.Add(4 * time.Millisecond)); !ok {
		t.Fatal("NextForOrigin after the jitter found nothing")
	}
	// Few chunks left for the origin: the jitter widens.
	for k := range n - 2 {
		p.PeerHave("a", k)
	}
	p.Received(i, OriginPeer, t0.Add(5*time.Millisecond), 1)
	if lo := time.Duration(p.originGate) - 5*time.Millisecond; lo < 0 || lo > 100*time.Millisecond*2 {
		t.Fatalf("origin gate %v after the start with 1-2 chunks left, want within [0, 200ms]", lo)
	}
	checkPicker(t, p)
}

// TestPickerReceivedRefSameAsReceived: two Pickers driven the same way,
// one told of arrivals by peer ID and one by handle, end in the same
// state and return the same cancels, including for a handle on a peer
// that left (an unknown sender, its slot taken by another) and for peers that leave and join again.
func TestPickerReceivedRefSameAsReceived(t *testing.T) {
	t.Parallel()
	const n = 64
	rng := rand.New(rand.NewPCG(7, 7))
	byID := newTestPicker(n, 3, deepPipes)
	byRef := newTestPicker(n, 3, deepPipes)
	peers := []PeerID{"a", "b", "c"}
	refs := map[PeerID]PeerRef{}
	join := func(pr PeerID) {
		byID.PeerJoined(pr, allBits(n))
		byRef.PeerJoined(pr, allBits(n))
		refs[pr], _ = byRef.Ref(pr)
	}
	for _, pr := range peers {
		join(pr)
	}
	join("x") // a peer that leaves at once: its handle is stale
	stale := refs["x"]
	byID.PeerLeft("x")
	byRef.PeerLeft("x")
	join("y") // likely in x's old slot
	peers = append(peers, "y")
	now := t0
	for op := range 400 {
		now = now.Add(time.Duration(1+rng.IntN(50)) * time.Millisecond)
		pr := peers[rng.IntN(len(peers))]
		switch rng.IntN(6) {
		case 0, 1, 2:
			i, ok := byID.NextForPeer(pr, now)
			j, ok2 := byRef.NextForPeer(pr, now)
			if i != j || ok != ok2 {
				t.Fatalf("op %d: NextForPeer(%s) = %d %v and %d %v", op, pr, i, ok, j, ok2)
			}
			if ok {
				byID.Requested(i, pr, now)
				byRef.Requested(i, pr, now)
			}
		case 3, 4:
			i := rng.IntN(n)
			from, ref := pr, refs[pr]
			if rng.IntN(8) == 0 {
				from, ref = "x", stale // a sender the Picker does not know
			}
			got := fmt.Sprint(byID.Received(i, from, now, 1<<20))
			if want := fmt.Sprint(byRef.ReceivedRef(i, ref, now, 1<<20)); got != want {
				t.Fatalf("op %d: chunk %d from %s: cancels %s by ID, %s by handle", op, i, from, got, want)
			}
		case 5:
			if pr == "c" && rng.IntN(4) == 0 {
				byID.PeerLeft(pr)
				byRef.PeerLeft(pr)
				join(pr)
			}
		}
	}
	for _, pr := range peers {
		if a, b := byID.Score(pr), byRef.Score(pr); a != b {
			t.Errorf("Score(%s) = %+v by ID, %+v by handle", pr, a, b)
		}
	}
	for i := range n {
		if byID.Have(i) != byRef.Have(i) || byID.Outstanding(i) != byRef.Outstanding(i) {
			t.Errorf("chunk %d: have %v/%v outstanding %d/%d", i, byID.Have(i), byRef.Have(i), byID.Outstanding(i), byRef.Outstanding(i))
		}
	}
	checkPicker(t, byRef)
}

// TestPickerProgressRefSameAsProgress: Progress and Streaming by handle
// leave a Picker as they do by peer ID, for known peers, a handle on a
// peer that left (its slot taken by another) and the zero handle.
func TestPickerProgressRefSameAsProgress(t *testing.T) {
	t.Parallel()
	const n = 32
	rng := rand.New(rand.NewPCG(9, 9))
	byID := newTestPicker(n, 3, deepPipes)
	byRef := newTestPicker(n, 3, deepPipes)
	refs := map[PeerID]PeerRef{}
	join := func(pr PeerID) {
		byID.PeerJoined(pr, allBits(n))
		byRef.PeerJoined(pr, allBits(n))
		refs[pr], _ = byRef.Ref(pr)
	}
	for _, pr := range []PeerID{"a", "b", "x"} {
		join(pr)
	}
	stale := refs["x"]
	byID.PeerLeft("x")
	byRef.PeerLeft("x")
	join("y") // likely in x's old slot
	refs["x"] = stale
	now := t0
	for _, pr := range []PeerID{"a", "b", "y"} {
		for range 3 {
			i, ok := byID.NextForPeer(pr, now)
			if !ok {
				break
			}
			byID.Requested(i, pr, now)
			byRef.Requested(i, pr, now)
		}
	}
	senders := []PeerID{"a", "b", "y", "x", ""}
	for op := range 300 {
		now = now.Add(time.Duration(1+rng.IntN(20)) * time.Millisecond)
		pr := senders[rng.IntN(len(senders))]
		ref := refs[pr] // the zero handle for ""
		if rng.IntN(2) == 0 {
			byID.Progress(pr, now)
			byRef.ProgressRef(ref, now)
		} else {
			i := rng.IntN(n)
			byID.Streaming(i, pr)
			byRef.StreamingRef(i, ref)
		}
		for s := range byID.slots {
			if byID.slots[s].lastByte != byRef.slots[s].lastByte {
				t.Fatalf("op %d: slot %d last byte %d by ID, %d by handle", op, s, byID.slots[s].lastByte, byRef.slots[s].lastByte)
			}
		}
		for id := range byID.recs {
			if byID.recs[id].streaming != byRef.recs[id].streaming {
				t.Fatalf("op %d: request %d streaming %v by ID, %v by handle", op, id, byID.recs[id].streaming, byRef.recs[id].streaming)
			}
		}
	}
	later := now.Add(time.Minute)
	if a, b := fmt.Sprint(byID.Timeouts(later, nil)), fmt.Sprint(byRef.Timeouts(later, nil)); a != b {
		t.Errorf("Timeouts %s by ID, %s by handle", a, b)
	}
}
