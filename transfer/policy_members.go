package transfer

import (
	"cmp"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"time"
)

// This file is the origin policy of a Picker that knows the swarm's
// members (SetMembers): origin responsibility partitioned by consistent
// hashing, and the origin paced by one global chunk order. See Picker and
// the package documentation.

// Defaults for the member-aware origin policy.
const (
	// DefaultOriginSwarmWindow is PickerConfig.OriginSwarmWindow's default
	// in units of OriginParallel.
	DefaultOriginSwarmWindowFactor = 8
	DefaultOriginFallbackDelay     = 2 * time.Second
	// maxFallbackRank caps the rank that delays a non-owner: past it every
	// member waits the same (the first maxFallbackRank owners are gone).
	maxFallbackRank = 8
)

// memberState is what SetMembers gives the origin policy.
type memberState struct {
	on bool // at least one member besides us
	// window: every chunk at order[:wEnd] has entered it (at entT); wUnseen
	// of them are unseen (nobody we know has them, we lack them).
	wEnd     int
	wUnseen  int
	gpos     []int32  // gpos[i]: chunk i's place in order (shared, read-only)
	deferred Bitfield // see below
	entT     []int64
	count    int     // members, us included
	order    []int32 // the global order: order[g] is a chunk (shared, read-only)
	orank    []int32 // our rank for chunk i: 0 = owner
	// due[r]: the window's chunks of our rank r (at most maxFallbackRank),
	// a min-heap of places in the order; chunkState.inDue is r+1 while
	// filed.
	due     [maxFallbackRank + 1][]int32
	seenLat float64 // EWMA of entering the window to being seen, ns
	self    uint64  // our hash
	// deferred: chunks one known peer has that we leave to other hosts
	// for a while (see deferFirst); deferQ in order of expiry.
	deferQ []pendEntry
	deferH int
	thawed bool
}

type ringPoint struct {
	h uint64
	m int32 // member
}

// mix64 is splitmix64's finaliser.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func peerHash(id PeerID) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return mix64(h.Sum64())
}

func chunkHash(i int) uint64 { return mix64(uint64(i) ^ 0x5354_4f52_4b00_0000) }

// SetMembers tells the Picker the swarm's members: every host known to
// hold or fetch the package (the DHT's providers, not only the peers we
// trade with), self among them or not. With at least one member besides
// self the origin policy partitions and paces (see Picker); with none it
// is the lone-host policy. It may be called again as the view changes;
// each call costs O(m log m + n log m) for m members and n chunks.
func (p *Picker) SetMembers(self PeerID, members []PeerID) {
	me := peerHash(self)
	p.setRing(me, ringOf(append(memberHashes(members, self), me)))
}

// MemberRing is a member set prepared for SetMemberRing: the members'
// hashes and their consistent-hash ring, read-only once made. Pickers
// given the same members can share one (a simulation runs thousands of
// Pickers of one swarm); SetMemberRing then costs O(n log m).
type MemberRing struct {
	ids  []uint64 // member hashes, sorted, distinct
	ring []ringPoint
}

// NewMemberRing prepares members for SetMemberRing.
func NewMemberRing(members []PeerID) *MemberRing { return ringOf(memberHashes(members, "")) }

// SetMemberRing is SetMembers(self, members) for r = NewMemberRing(members).
// If self is not among r's members, it costs what SetMembers does.
func (p *Picker) SetMemberRing(self PeerID, r *MemberRing) {
	me := peerHash(self)
	if _, ok := slices.BinarySearch(r.ids, me); !ok {
		r = ringOf(append(slices.Clip(r.ids), me))
	}
	p.setRing(me, r)
}

// memberHashes hashes the members other than self, the origin and "".
func memberHashes(members []PeerID, self PeerID) []uint64 {
	ids := make([]uint64, 0, len(members)+1)
	for _, m := range members {
		if m != self && m != OriginPeer && m != "" {
			ids = append(ids, peerHash(m))
		}
	}
	return ids
}

// ringOf makes the ring of the member hashes ids (sorted in place).
func ringOf(ids []uint64) *MemberRing {
	slices.Sort(ids)
	ids = slices.Compact(ids)
	m := len(ids)
	// The ring: v points per member (virtual nodes, so that few members
	// share the chunks evenly), v*m at most about 4096 unless m is larger.
	v := max(1, min(32, 4096/max(m, 1)))
	ring := make([]ringPoint, 0, v*m)
	for k, h := range ids {
		for j := range v {
			ring = append(ring, ringPoint{mix64(h + uint64(j)*0x9e3779b97f4a7c15), int32(k)})
		}
	}
	slices.SortFunc(ring, func(a, b ringPoint) int { return cmp.Or(cmp.Compare(a.h, b.h), cmp.Compare(a.m, b.m)) })
	return &MemberRing{ids: ids, ring: ring}
}

func (p *Picker) setRing(me uint64, r *MemberRing) {
	ms := &p.mem
	ids, ring := r.ids, r.ring
	m := len(ids)
	ms.count = m
	ms.self = me
	if m < 2 {
		ms.on = false
		return
	}
	if ms.order == nil {
		p.initOrder()
	}
	self32, _ := slices.BinarySearch(ids, me)
	seen := make([]int32, m) // member -> last chunk+1 that counted it
	for i := range p.n {
		// The owner is the member of the first point at or after the
		// chunk's hash on the ring; our rank is how many distinct members
		// come before us walking on from there (at most maxFallbackRank).
		c := chunkHash(i)
		k := sort.Search(len(ring), func(j int) bool { return ring[j].h >= c })
		r := 0
		for step := 0; step < len(ring) && r < maxFallbackRank; step++ {
			q := ring[(k+step)%len(ring)].m
			if int(q) == self32 {
				break
			}
			if seen[q] != int32(i+1) {
				seen[q] = int32(i + 1)
				r++
			}
		}
		ms.orank[i] = int32(r)
	}
	if !ms.on {
		ms.on = true
		// Every chunk enters the window afresh.
		ms.wEnd, ms.wUnseen = 0, 0
		for r := range ms.due {
			ms.due[r] = ms.due[r][:0]
		}
		for i := range p.ck {
			p.ck[i].inDue = 0
		}
	}
}

// Members returns how many members SetMembers gave, self included (0:
// never called).
func (p *Picker) Members() int { return p.mem.count }

// OriginOwner reports whether we are chunk i's origin owner among the
// members (always true with no members known).
func (p *Picker) OriginOwner(i int) bool {
	return !p.mem.on || !p.valid(i) || p.mem.orank[i] == 0
}

func (p *Picker) initOrder() {
	ms := &p.mem
	n := p.n
	o := p.cfg.Order
	if o == nil || o.n != n {
		o = NewChunkOrder(n)
	}
	ms.order, ms.gpos = o.order, o.gpos
	ms.orank = make([]int32, n)
	ms.entT = make([]int64, n)
	ms.deferred = NewBitfield(n)
}

// ChunkOrder is the swarm's global order of n chunks and its inverse. It
// depends on n alone, so Pickers of the same package may share one
// (PickerConfig.Order; read-only once made): a simulation runs thousands
// of Pickers of the same package.
type ChunkOrder struct {
	n     int
	order []int32 // order[g] is a chunk
	gpos  []int32 // gpos[i]: chunk i's place in order
}

// NewChunkOrder computes the global order of n chunks.
func NewChunkOrder(n int) *ChunkOrder {
	order := make([]int32, n)
	gpos := make([]int32, n)
	keys := make([]uint64, n)
	for i := range n {
		order[i] = int32(i)
		// Independent of the ring position, so that consecutive chunks of
		// the order have unrelated owners.
		keys[i] = mix64(chunkHash(i) ^ 0x6f72_6465_7200_0000)
	}
	slices.SortFunc(order, func(a, b int32) int {
		switch {
		case keys[a] < keys[b]:
			return -1
		case keys[a] > keys[b]:
			return 1
		}
		return int(a - b)
	})
	for g, i := range order {
		gpos[i] = int32(g)
	}
	return &ChunkOrder{n: n, order: order, gpos: gpos}
}

// seen: we have chunk i or a known peer does.
func (p *Picker) seen(i int) bool { return p.have.Has(i) || p.ck[i].avail > 0 }

// seenChanged keeps the window's unseen count after chunk i went from
// seen (was) to not or back.
func (p *Picker) seenChanged(i int, was bool) {
	ms := &p.mem
	if !ms.on || int(ms.gpos[i]) >= ms.wEnd {
		return
	}
	switch now := p.seen(i); {
	case now && !was:
		ms.wUnseen--
		ms.seenLat = ewma(ms.seenLat, float64(max(p.lastT-ms.entT[i], 1)))
	case was && !now:
		ms.wUnseen++
	}
}

// OriginResumed tells the Picker that the origin answers again after an
// outage: the window's unseen chunks count as entering it now, so that
// their fallback delays, and the latency samples they give, start from
// the resume rather than from before the outage (which would make every
// non-owner wait about twice the outage before asking).
func (p *Picker) OriginResumed(now time.Time) {
	ms := &p.mem
	if !ms.on {
		return
	}
	t := p.t(now)
	for _, i := range ms.order[:ms.wEnd] {
		if !p.seen(int(i)) {
			ms.entT[i] = t
		}
	}
}

// swarmWindow is K: how many chunks the swarm lacks that may be asked of
// the origin at once, all hosts together.
//
// By default it grows with the members, by log2(members/250) past 500: a
// host counts a chunk as seen only once one of its own peers has it, which
// takes longer the larger the swarm (the chunk must reach about
// members/peers hosts first), so with a fixed K the chunks the swarm holds
// but a host does not yet see fill its window and the origin idles (a
// third of the time at 3,000 hosts with K = 64).
func (p *Picker) swarmWindow() int {
	if p.cfg.OriginSwarmWindow > 0 {
		return p.cfg.OriginSwarmWindow
	}
	k := DefaultOriginSwarmWindowFactor * p.cfg.OriginParallel
	if m := p.mem.count; m > 500 {
		k = int(float64(k) * math.Log2(float64(m)/250))
	}
	return k
}

// growWindow lets chunks into the window, in the global order, until it
// holds K unseen ones; each entering chunk gets its due time.
func (p *Picker) growWindow(t int64) {
	ms := &p.mem
	k := p.swarmWindow()
	for ms.wUnseen < k && ms.wEnd < p.n {
		i := int(ms.order[ms.wEnd])
		ms.entT[i] = t
		ms.wEnd++
		if !p.seen(i) {
			ms.wUnseen++
		}
		p.pushDue(i)
	}
}

// fallbackDelay is how long a chunk's rank-1 member waits after the
// chunk entered its window before it asks the origin itself (rank r waits
// r times as long): the larger of OriginFallbackDelay and twice the mean
// time window chunks took from entering to being seen (measured; before
// the first sample, RequestTimeout).
func (p *Picker) fallbackDelay() int64 {
	d := float64(p.cfg.OriginFallbackDelay)
	if p.mem.seenLat > 0 {
		d = max(d, 2*p.mem.seenLat)
	} else {
		d = max(d, float64(p.cfg.RequestTimeout))
	}
	return int64(d)
}

// pushDue files chunk i (in the window, origin-eligible) under our rank.
func (p *Picker) pushDue(i int) {
	ms := &p.mem
	if p.ck[i].inDue != 0 || !p.originEligible(i) {
		return
	}
	r := min(int(ms.orank[i]), maxFallbackRank)
	p.ck[i].inDue = uint8(r + 1)
	ms.due[r] = append(ms.due[r], ms.gpos[i])
	h := ms.due[r]
	for k := len(h) - 1; k > 0; {
		parent := (k - 1) / 2
		if h[k] >= h[parent] {
			break
		}
		h[parent], h[k] = h[k], h[parent]
		k = parent
	}
}

func (p *Picker) popDue(r int) {
	ms := &p.mem
	h := ms.due[r]
	last := len(h) - 1
	p.ck[ms.order[h[0]]].inDue = 0
	h[0] = h[last]
	h = h[:last]
	for k := 0; ; {
		l := 2*k + 1
		if l >= len(h) {
			break
		}
		c := l
		if r := l + 1; r < len(h) && h[r] < h[l] {
			c = r
		}
		if h[c] >= h[k] {
			break
		}
		h[k], h[c] = h[c], h[k]
		k = c
	}
	ms.due[r] = h
}

// nextMember is NextForOrigin's choice among the members: of the window's
// eligible chunks, the one due first (owned chunks at once, in the global
// order), if it is due by t.
func (p *Picker) nextMember(t int64) (int, bool) {
	ms := &p.mem
	p.growWindow(t)
	d := p.fallbackDelay()
	best, bestAt := -1, int64(math.MaxInt64)
	for r := range ms.due {
		for len(ms.due[r]) > 0 {
			i := int(ms.order[ms.due[r][0]])
			if !p.originEligible(i) {
				p.popDue(r)
				continue
			}
			if cr := min(int(ms.orank[i]), maxFallbackRank); cr != r {
				// Our rank changed (SetMembers): file it again.
				p.popDue(r)
				p.pushDue(i)
				continue
			}
			if at := ms.entT[i] + int64(r)*d; at < bestAt {
				best, bestAt = i, at
			}
			break
		}
	}
	if best < 0 || bestAt > t {
		return 0, false
	}
	return best, true
}

// memberEligible: chunk i became origin-eligible again; file it if it is
// in the window.
func (p *Picker) memberEligible(i int) {
	ms := &p.mem
	if ms.on && int(ms.gpos[i]) < ms.wEnd {
		p.pushDue(i)
	}
}

// First-hop deferral. A chunk that has just reached its first holder among
// our peers (often its origin owner) is wanted at once by every host that
// knows that holder, and a holder that serves them all at once delivers
// every copy late (its upload is shared; a slow one takes seconds). So,
// among the members, each host asks the sole holder at once only with
// probability firstHopRequesters/peers (a hash of the host and the chunk
// decides); the others leave the chunk alone until a second known peer has
// it, or for deferTime at most. The few first requesters get the chunk
// fast and pass it on.
const firstHopRequesters = 2

// deferTime bounds how long a chunk is left alone: OriginFallbackDelay/4,
// extended up to slowHolderExtends times while its sole holder is slow.
func (p *Picker) deferTime() int64 { return int64(p.cfg.OriginFallbackDelay / 4) }

// slowHolderExtends: a chunk whose sole holder is measured slow (a thin
// uplink, or one shared by many) stays deferred for up to this many more
// deferTimes, until a second known peer has it; at each, about
// firstHopRequesters more hosts ask (firstHop). Asked by every host at
// once, a slow holder's upload is split so many ways that each copy takes
// seconds, and the chunk spreads no faster than that; asked by a few
// hosts at a time, it reaches them quickly and they pass it on.
const slowHolderExtends = 6

// deferFirst may defer chunk i, which peer s alone has (just told us).
// A peer measured fast is asked at once: it serves many at once quickly.
func (p *Picker) deferFirst(i int, s int32) {
	ms := &p.mem
	sl := &p.slots[s]
	if !ms.on || p.have.Has(i) || p.numPeers <= firstHopRequesters {
		return
	}
	if sl.score.Throughput > 0 && !p.slowPeer(sl, p.lastT) {
		return
	}
	if p.firstHop(i, 0) {
		return
	}
	ms.deferred.Set(i)
	ms.deferQ = append(ms.deferQ, pendEntry{slot: s, gen: sl.gen, chunk: int32(i), at: p.lastT + p.deferTime()})
}

// firstHop reports whether we are among the about firstHopRequesters of
// our peers' number that ask chunk i's sole holder at draw k (a hash of
// us, the chunk and k decides).
func (p *Picker) firstHop(i, k int) bool {
	h := p.mem.self ^ chunkHash(i)
	if k > 0 {
		h = mix64(h + uint64(k))
	}
	u := float64(mix64(h)>>11) / (1 << 53)
	return u*float64(p.numPeers) < firstHopRequesters
}

func (p *Picker) expireDeferred(t int64) {
	ms := &p.mem
	for ms.deferH < len(ms.deferQ) && ms.deferQ[ms.deferH].at <= t {
		e := ms.deferQ[ms.deferH]
		ms.deferH++
		i := int(e.chunk)
		if !ms.deferred.Has(i) {
			continue
		}
		if sl := &p.slots[e.slot]; sl.gen == e.gen && sl.have.Has(i) && p.measuredSlow(sl) {
			// Each extension is another draw of firstHopRequesters in
			// peers, so that a few more hosts ask per deferTime even if
			// none did at first. Extended from its expiry, not from now:
			// a late look does not stretch it (the queue stays in order
			// within deferTime).
			for e.ext < slowHolderExtends && e.at <= t && !p.firstHop(i, int(e.ext)+1) {
				e.ext++
				e.at += p.deferTime()
			}
			if e.at > t {
				ms.deferQ = append(ms.deferQ, e)
				continue
			}
		}
		ms.deferred.Clear(i)
		ms.thawed = true
	}
	if ms.deferH == len(ms.deferQ) {
		ms.deferQ, ms.deferH = ms.deferQ[:0], 0
	}
}

// Thawed expires first-hop deferrals up to now and reports whether one
// ended since the last call with its chunk still at one holder: the
// caller should ask its peers again.
func (p *Picker) Thawed(now time.Time) bool {
	p.expireDeferred(p.t(now))
	ok := p.mem.thawed
	p.mem.thawed = false
	return ok
}
