package policy

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func memberIDs(k int) []PeerID {
	ids := make([]PeerID, k)
	for j := range ids {
		ids[j] = PeerID(fmt.Sprintf("peer-%d", j))
	}
	return ids
}

// drainOrigin takes every chunk NextForOrigin offers at now (Requested).
func drainOrigin(p *Picker, now time.Time) []int {
	var got []int
	for range p.NumChunks() + 1 {
		i, ok := p.NextForOrigin(now)
		if !ok {
			break
		}
		p.Requested(i, OriginPeer, now)
		got = append(got, i)
	}
	return got
}

func TestPickerMembersPartition(t *testing.T) {
	t.Parallel()
	const n = 512
	for _, m := range []int{2, 5, 40, 600} {
		ids := memberIDs(m)
		owners := make([]int, n)
		per := make([]int, m)
		for j, self := range ids {
			p := newTestPicker(n, 1, nil)
			p.SetMembers(self, ids)
			if p.Members() != m {
				t.Fatalf("m=%d: Members() = %d", m, p.Members())
			}
			for i := range n {
				if p.OriginOwner(i) {
					owners[i]++
					per[j]++
				}
			}
		}
		for i, c := range owners {
			if c != 1 {
				t.Fatalf("m=%d: chunk %d has %d owners, want 1", m, i, c)
			}
		}
		if m <= 5 {
			for j, c := range per {
				if fair := n / m; c < fair/2 || c > 2*fair {
					t.Errorf("m=%d: member %d owns %d chunks, want about %d", m, j, c, fair)
				}
			}
		}
	}
}

func TestPickerMembersOwnerFirstThenFallback(t *testing.T) {
	t.Parallel()
	const n = 64
	ids := memberIDs(4)
	p := newTestPicker(n, 1, func(c *PickerConfig) {
		c.OriginParallel = n
		c.OriginInitialWindow = n
		c.OriginSwarmWindow = n
		c.OriginFallbackDelay = time.Second
	})
	p.SetMembers(ids[0], ids)
	p.PeerJoined(ids[1], nil)
	got := drainOrigin(p, t0)
	if len(got) == 0 {
		t.Fatal("owner asked the origin for nothing")
	}
	for _, i := range got {
		if !p.OriginOwner(i) {
			t.Fatalf("at once: chunk %d not ours asked of the origin", i)
		}
	}
	own := 0
	for i := range n {
		if p.OriginOwner(i) {
			own++
		}
	}
	if len(got) != own {
		t.Errorf("at once: %d origin requests, we own %d", len(got), own)
	}
	// Before any chunk was seen the fallback waits RequestTimeout per rank.
	if more := drainOrigin(p, t0.Add(5*time.Second)); len(more) != 0 {
		t.Errorf("after 5s: %d chunks of others asked of the origin, want 0 yet", len(more))
	}
	later := drainOrigin(p, t0.Add(time.Hour))
	if len(got)+len(later) != n {
		t.Errorf("after an hour: %d + %d chunks asked of the origin, want all %d", len(got), len(later), n)
	}
	checkPicker(t, p)
}

func TestPickerMembersWindow(t *testing.T) {
	t.Parallel()
	const n, k = 200, 8
	ids := memberIDs(2)
	ps := make([]*Picker, 2)
	for j := range ps {
		ps[j] = newTestPicker(n, uint64(j), func(c *PickerConfig) {
			c.OriginParallel = n
			c.OriginInitialWindow = n
			c.OriginSwarmWindow = k
		})
		ps[j].SetMembers(ids[j], ids)
		ps[j].PeerJoined(ids[1-j], nil)
	}
	now := t0
	for round := 0; ; round++ {
		if round > 10*n {
			t.Fatal("no progress")
		}
		var got [2][]int
		for j, p := range ps {
			got[j] = drainOrigin(p, now)
		}
		if open := ps[0].OriginInflight() + ps[1].OriginInflight(); open > k {
			t.Fatalf("round %d: %d origin requests open, window %d", round, open, k)
		}
		if len(got[0])+len(got[1]) == 0 && ps[0].OriginInflight()+ps[1].OriginInflight() == 0 {
			break
		}
		// Each host receives its oldest origin chunk; the other hears of it.
		now = now.Add(10 * time.Millisecond)
		for j, p := range ps {
			for i := range n {
				if p.Asked(i, OriginPeer) {
					p.Received(i, OriginPeer, now, 1<<20)
					ps[1-j].PeerHave(ids[j], i)
					break
				}
			}
		}
	}
	for i := range n {
		if !ps[0].Have(i) && !ps[1].Have(i) {
			t.Errorf("chunk %d never fetched", i)
		}
		if ps[0].Have(i) && ps[1].Have(i) {
			t.Errorf("chunk %d fetched from the origin twice", i)
		}
	}
}

func TestPickerNoMembersUnchanged(t *testing.T) {
	t.Parallel()
	a := newTestPicker(100, 3, nil)
	b := newTestPicker(100, 3, nil)
	b.SetMembers("self", nil)
	b.SetMembers("self", []PeerID{"self"})
	for range 5 {
		i, ok := a.NextForOrigin(t0)
		j, ok2 := b.NextForOrigin(t0)
		if i != j || ok != ok2 {
			t.Fatalf("lone host: NextForOrigin = %d %v with SetMembers(self only), %d %v without", j, ok2, i, ok)
		}
		a.Requested(i, OriginPeer, t0)
		b.Requested(j, OriginPeer, t0)
		a.Received(i, OriginPeer, t0, 1)
		b.Received(j, OriginPeer, t0, 1)
	}
}

func TestPickerMembersFirstHopDeferral(t *testing.T) {
	t.Parallel()
	const hosts, peers = 200, 10
	ids := memberIDs(hosts)
	holder := ids[0]
	asked := 0
	for h := 1; h < hosts; h++ {
		p := newTestPicker(64, uint64(h), nil)
		p.SetMembers(ids[h], ids)
		p.PeerJoined(holder, nil)
		for j := 1; j < peers; j++ {
			p.PeerJoined(PeerID(fmt.Sprintf("other-%d", j)), nil) // holding nothing
		}
		p.t(t0)
		p.PeerHave(holder, 0)
		if i, ok := p.NextForPeer(holder, t0); ok && i == 0 {
			asked++
		}
		later := t0.Add(time.Second)
		if !p.Thawed(later) && !p.Asked(0, holder) {
			if i, ok := p.NextForPeer(holder, t0); !ok || i != 0 {
				t.Fatalf("host %d: chunk 0 neither offered nor thawed", h)
			}
		}
		if i, ok := p.NextForPeer(holder, later); !ok || i != 0 {
			t.Fatalf("host %d: after the deferral NextForPeer = %d, %v, want 0, true", h, i, ok)
		}
	}
	// About firstHopRequesters/peers of the hosts ask the sole holder at once.
	if want := (hosts - 1) * firstHopRequesters / peers; asked < want/3 || asked > 3*want {
		t.Errorf("%d of %d hosts asked the first holder at once, want about %d", asked, hosts-1, want)
	}
}

// A request left at a slow peer (asked while it was the chunk's only
// holder) is withdrawn once a peer that is not slow has the chunk: it is
// returned by Withdrawn and the chunk is offered to the new holder. A
// request at a peer that is not slow, or a new holder that is slow, leaves
// things as they are.
func TestPickerMembersRerouteFromSlowPeer(t *testing.T) {
	t.Parallel()
	const n = 64
	p := newTestPicker(n, 3, deepPipes)
	ids := memberIDs(20)
	p.SetMembers(ids[0], ids)
	fast := []PeerID{"fast-1", "fast-2", "fast-3", "fast-4"}
	slow, slow2 := PeerID("slow-1"), PeerID("slow-2")
	for k, id := range append(append([]PeerID{}, fast...), slow, slow2) {
		p.PeerJoined(id, bitsOf(n, k)) // chunk k, to measure the peer with
	}
	now := t0
	for k, id := range fast {
		p.Requested(k, id, now)
		p.Received(k, id, now.Add(time.Millisecond), 1<<20) // ~1 GB/s
	}
	for k, id := range []PeerID{slow, slow2} {
		p.Requested(4+k, id, now)
		p.Received(4+k, id, now.Add(time.Second), 1<<20) // ~1 MB/s
	}
	now = now.Add(time.Second)
	p.t(now)
	if w := p.Withdrawn(nil); len(w) != 0 {
		t.Fatalf("Withdrawn before any reroute = %v", w)
	}

	// A chunk the slow peer alone has, deferred (first hop), stays
	// deferred past deferTime while no second holder is known, up to
	// slowHolderExtends more.
	deferred := -1
	for c := 20; c < n && deferred < 0; c++ {
		p.PeerHave(slow, c)
		if p.mem.deferred.Has(c) {
			deferred = c
		}
	}
	if deferred < 0 {
		t.Fatal("no chunk of the slow peer deferred")
	}
	dt := time.Duration(p.deferTime())
	if p.Thawed(now.Add(2 * dt)); !p.mem.deferred.Has(deferred) {
		t.Errorf("chunk %d thawed after 2 deferTimes, its only holder slow", deferred)
	}
	if p.Thawed(now.Add((slowHolderExtends + 2) * dt)); p.mem.deferred.Has(deferred) {
		t.Errorf("chunk %d still deferred after %d deferTimes", deferred, slowHolderExtends+2)
	}
	now = now.Add((slowHolderExtends + 2) * dt)
	p.t(now)

	// Chunk 10 asked of the slow peer; then a fast peer has it too.
	p.PeerHave(slow, 10)
	p.Requested(10, slow, now)
	p.PeerHave(fast[0], 10)
	if w := p.Withdrawn(nil); len(w) != 1 || w[0].Chunk != 10 || w[0].Peer != slow {
		t.Fatalf("Withdrawn = %v, want chunk 10's request at %s", w, slow)
	}
	if p.Asked(10, slow) {
		t.Errorf("chunk 10 still asked of the slow peer after the reroute")
	}
	if i, ok := p.NextForPeer(fast[0], now); !ok || i != 10 {
		t.Errorf("NextForPeer(fast) = %d, %v, want the rerouted chunk 10", i, ok)
	}
	if w := p.Withdrawn(nil); len(w) != 0 {
		t.Errorf("Withdrawn again = %v, want nothing (drained)", w)
	}

	// Chunk 11 asked of a fast peer: another holder changes nothing.
	p.PeerHave(fast[1], 11)
	p.Requested(11, fast[1], now)
	p.PeerHave(fast[2], 11)
	// Chunk 12 asked of the slow peer, then a second slow holder: nothing.
	p.PeerHave(slow, 12)
	p.Requested(12, slow, now)
	p.PeerHave(slow2, 12)
	if w := p.Withdrawn(nil); len(w) != 0 {
		t.Errorf("Withdrawn = %v, want nothing (a fast peer's request; a slow new holder)", w)
	}
	if !p.Asked(11, fast[1]) || !p.Asked(12, slow) {
		t.Errorf("requests withdrawn that should stay: 11 at fast %v, 12 at slow %v", p.Asked(11, fast[1]), p.Asked(12, slow))
	}
}

// TestPickerMemberRingSameAsSetMembers: a shared MemberRing gives every
// Picker the ranks SetMembers gives it, with self among the members or
// not (then SetMemberRing adds it), and the ring is not changed by use.
func TestPickerMemberRingSameAsSetMembers(t *testing.T) {
	t.Parallel()
	const n = 300
	for _, m := range []int{3, 50, 5000} {
		ids := memberIDs(m)
		r := NewMemberRing(ids)
		before := append([]uint64(nil), r.ids...)
		for _, self := range []PeerID{ids[0], ids[m/2], "outsider"} {
			a, b := newTestPicker(n, 1, nil), newTestPicker(n, 1, nil)
			a.SetMembers(self, ids)
			b.SetMemberRing(self, r)
			if a.Members() != b.Members() {
				t.Fatalf("m=%d self %s: Members %d vs %d", m, self, a.Members(), b.Members())
			}
			for i := range n {
				if a.mem.orank[i] != b.mem.orank[i] {
					t.Fatalf("m=%d self %s: chunk %d rank %d with SetMembers, %d with the ring", m, self, i, a.mem.orank[i], b.mem.orank[i])
				}
			}
		}
		if len(r.ids) != len(before) || !slices.Equal(r.ids, before) {
			t.Fatalf("m=%d: SetMemberRing changed the shared ring", m)
		}
	}
}

// TestPickerMemberRingRanks: a Picker's rank for each chunk is the number
// of distinct members met walking the ring from the chunk's point before
// self, at most maxFallbackRank, with few members (many points each, met
// again and again) and many.
func TestPickerMemberRingRanks(t *testing.T) {
	t.Parallel()
	const n = 200
	for _, m := range []int{2, 3, 9, 50, 10000} {
		ids := memberIDs(m)
		r := NewMemberRing(ids)
		for _, self := range []PeerID{ids[0], ids[m-1]} {
			p := newTestPicker(n, 1, nil)
			p.SetMemberRing(self, r)
			me, _ := slices.BinarySearch(r.ids, peerHash(self))
			for i := range n {
				c := chunkHash(i)
				k := 0
				for k < len(r.ring) && r.ring[k].h < c {
					k++
				}
				counted := map[int32]bool{}
				for step := 0; step < len(r.ring) && len(counted) < maxFallbackRank; step++ {
					q := r.ring[(k+step)%len(r.ring)].m
					if int(q) == me {
						break
					}
					counted[q] = true
				}
				if got := p.mem.orank[i]; int(got) != len(counted) {
					t.Fatalf("m=%d self %s chunk %d: rank %d, want %d", m, self, i, got, len(counted))
				}
			}
		}
	}
}

// TestPickerMemberRingAllocatesNothing: SetMemberRing with self on the
// ring allocates nothing, however many members. A simulation of 10,000
// hosts gives the ring to every host of every package; a table of every
// member made at each call cost hosts² per package.
func TestPickerMemberRingAllocatesNothing(t *testing.T) {
	ids := memberIDs(10000)
	r := NewMemberRing(ids)
	p := newTestPicker(4, 1, nil)
	p.SetMemberRing(ids[7], r)
	if a := testing.AllocsPerRun(20, func() { p.SetMemberRing(ids[7], r) }); a != 0 {
		t.Errorf("SetMemberRing with 10,000 members: %v allocations, want 0", a)
	}
}

// A chunk's owner and the members ranked before us keep us off the origin
// for at most RequestTimeout each, however slowly chunks were seen so far:
// an owner cut off from the origin (silent drops) brings no bytes, and
// the wait for it must expire (issue 21, site-cut).
func TestPickerMembersFallbackBounded(t *testing.T) {
	t.Parallel()
	const n = 64
	ids := memberIDs(4)
	p := newTestPicker(n, 1, func(c *PickerConfig) {
		c.OriginParallel = n
		c.OriginInitialWindow = n
		c.OriginSwarmWindow = n
		c.OriginFallbackDelay = time.Second
		c.RequestTimeout = 10 * time.Second
	})
	p.SetMembers(ids[0], ids)
	p.PeerJoined(ids[1], nil)
	drainOrigin(p, t0)
	// Chunks seen 9s after entering the window: a mean of 9s, twice that
	// is above RequestTimeout.
	p.NextForOrigin(t0.Add(9 * time.Second))
	for i := range n {
		if !p.OriginOwner(i) && i%2 == 0 {
			p.PeerHave(ids[1], i)
		}
	}
	var rank1 []int
	for i := range n {
		if i%2 == 1 && p.mem.orank[i] == 1 {
			rank1 = append(rank1, i)
		}
	}
	if len(rank1) == 0 {
		t.Fatal("no unseen chunk of rank 1: the test shows nothing")
	}
	got := map[int]bool{}
	for _, i := range drainOrigin(p, t0.Add(10*time.Second+time.Millisecond)) {
		got[i] = true
	}
	for _, i := range rank1 {
		if !got[i] {
			t.Errorf("chunk %d (rank 1, unseen) not asked of the origin RequestTimeout after it entered the window", i)
		}
	}
	checkPicker(t, p)
}
