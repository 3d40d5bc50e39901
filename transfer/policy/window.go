package policy

import (
	"math"
	"slices"
	"time"
)

// The swarm's origin window, with the members known: a chunk may be asked
// of the origin only among the first K chunks of one global order that no
// known host has (pacing), by its owner at once and by the others after a
// delay that grows with their rank (partition).

// Defaults for the member-aware origin policy.
const (
	// DefaultOriginSwarmWindowFactor is PickerConfig.OriginSwarmWindow's
	// default in units of OriginParallel (for up to 500 members).
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
	// originLat: EWMA of our origin requests' times, request to arrival,
	// ns: how long the origin takes for anyone's chunk now.
	originLat float64
	self      uint64 // our hash
	// deferred: chunks one known peer has that we leave to other hosts
	// for a while (see deferFirst); deferQ in order of expiry.
	deferQ []pendEntry
	deferH int
	thawed bool
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
// but a host does not yet see fill its window and the origin idles
// (docs/transfer-tuning.md).
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
// the first sample, RequestTimeout), twice the mean counting at most
// queueLimit. A member ranked before us that brings nothing for that
// long (its site cut off from the origin, its requests silently dropped)
// holds the chunk up no longer, however slowly chunks were seen so far.
func (p *Picker) fallbackDelay() int64 {
	d := float64(p.cfg.OriginFallbackDelay)
	limit := p.queueLimit()
	if p.mem.seenLat > 0 {
		d = max(d, min(2*p.mem.seenLat, limit))
	} else {
		d = max(d, limit)
	}
	return int64(d)
}

// queueLimit bounds the wait for an owner: RequestTimeout, or, behind a
// slow origin (a capped link the swarm shares, whose queue makes each
// request take longer), twice the time our own origin requests take to
// get through the window's chunks we own: an owner takes about as long
// to reach its own, one origin window after another, and a second copy
// fetched meanwhile would only slow every other request down.
//
// Only with sites on: without them (and without pull-through) every host
// sees the owner's claims and Haves directly, the RequestTimeout wait
// already holds the origin to about one copy, and a longer one only
// delays the chunks whose owner is slow.
func (p *Picker) queueLimit() float64 {
	if !p.site.on {
		return float64(p.cfg.RequestTimeout)
	}
	return max(float64(p.cfg.RequestTimeout), 4*p.mem.originLat)
}

// pushDue files chunk i (in the window, origin-eligible) under our rank.
func (p *Picker) pushDue(i int) {
	ms := &p.mem
	if p.ck[i].inDue != 0 || !p.originEligible(i) {
		return
	}
	r := p.dueRank(i)
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

// dueRank is the rank whose fallback delay chunk i waits: ours among the
// members; with pull-through on (the caller asks the chunk's fetcher, who
// fetches it once for all), 0: no chunk waits a delay (nextMember).
func (p *Picker) dueRank(i int) int {
	if p.pull {
		return 0
	}
	return min(int(p.mem.orank[i]), maxFallbackRank)
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
			if cr := p.dueRank(i); cr != r {
				// Our rank changed (SetMembers): file it again.
				p.popDue(r)
				p.pushDue(i)
				continue
			}
			at := ms.entT[i] + int64(r)*d
			if p.pull {
				// Due on entering the window; our own chunks first.
				at = ms.entT[i]
			}
			if at < bestAt {
				best, bestAt = i, at
			}
			break
		}
		if p.pull && best >= 0 && bestAt <= t {
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

// OwnedQueued appends to dst the chunks of the origin window that we own
// (rank 0) and have not asked the origin for yet: our origin requests
// take them next, once the open ones end. A host says it fetches them
// (Fetching) before it does, so that behind a slow origin, whose queue
// keeps our slots full for longer than a non-owner's fallback wait, the
// non-owners wait for our copy instead of fetching a second one. None
// without members, with pull-through on (no chunk waits a delay), or
// without sites (as queueLimit).
func (p *Picker) OwnedQueued(now time.Time, dst []int) []int {
	ms := &p.mem
	if !ms.on || p.pull || !p.site.on {
		return dst
	}
	p.growWindow(p.t(now))
	for _, g := range ms.due[0] {
		if i := int(ms.order[g]); p.originEligible(i) && ms.orank[i] == 0 {
			dst = append(dst, i)
		}
	}
	return dst
}
