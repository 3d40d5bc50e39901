package policy

import (
	"math/bits"
	"math/rand/v2"
)

// Rarity levels: every chunk we lack and nobody is asked for sits in the
// bitset of its availability (how many known peers hold it), so that a
// pick scans the lowest levels first and availability changes are O(1).

// levelSet is a set of chunk indices: a bitset plus a summary bit per
// non-empty word, so that scans skip empty stretches 64 words at a time.
type levelSet struct {
	words   []uint64
	summary []uint64
	count   int
}

// carve points l at buf[off:], words then summary (their contents stay).
func (l *levelSet) carve(buf []uint64, off, nw, ns int) {
	l.words = buf[off : off+nw : off+nw]
	l.summary = buf[off+nw : off+nw+ns : off+nw+ns]
}

func (l *levelSet) init(n int) {
	w := (n + 63) / 64
	l.words = make([]uint64, w)
	l.summary = make([]uint64, (w+63)/64)
}

func (l *levelSet) add(i int) {
	w := i >> 6
	if l.words[w]&(1<<(i&63)) != 0 {
		return
	}
	l.words[w] |= 1 << (i & 63)
	l.summary[w>>6] |= 1 << (w & 63)
	l.count++
}

func (l *levelSet) remove(i int) {
	w := i >> 6
	if l.words[w]&(1<<(i&63)) == 0 {
		return
	}
	l.words[w] &^= 1 << (i & 63)
	if l.words[w] == 0 {
		l.summary[w>>6] &^= 1 << (w & 63)
	}
	l.count--
}

// pick returns a member also in mask and not in skip (nil: none), chosen
// from a random starting word and at random within the first matching
// word.
func (l *levelSet) pick(mask, skip Bitfield, rng *rand.Rand) (int, bool) {
	nw := len(l.words)
	if nw == 0 || l.count == 0 {
		return 0, false
	}
	start := rng.IntN(nw)
	try := func(w int) (int, bool) {
		x := l.words[w] & mask[w]
		if skip != nil {
			x &^= skip[w]
		}
		if x == 0 {
			return 0, false
		}
		k := rng.IntN(bits.OnesCount64(x))
		for ; k > 0; k-- {
			x &= x - 1
		}
		return w*64 + bits.TrailingZeros64(x), true
	}
	// Scan summary words from start's, wrapping once; within the first
	// summary word only words >= start, and those < start at the end.
	ns := len(l.summary)
	s0 := start >> 6
	for k := 0; k <= ns; k++ {
		sw := (s0 + k) % ns
		x := l.summary[sw]
		switch {
		case k == 0:
			x &= ^uint64(0) << (start & 63)
		case k == ns:
			x &= (uint64(1) << (start & 63)) - 1
		}
		for x != 0 {
			b := bits.TrailingZeros64(x)
			x &= x - 1
			if i, ok := try(sw*64 + b); ok {
				return i, true
			}
		}
	}
	return 0, false
}

// indexSet is a set of int32 with O(1) add, remove and iteration.
type indexSet struct {
	items []int32
	pos   []int32 // index in items, -1 if absent
}

func (s *indexSet) init(n int) {
	s.items = make([]int32, 0, n)
	s.pos = make([]int32, n)
	for i := range s.pos {
		s.pos[i] = -1
	}
}

func (s *indexSet) add(i int32) {
	if s.pos[i] >= 0 {
		return
	}
	s.pos[i] = int32(len(s.items))
	s.items = append(s.items, i)
}

func (s *indexSet) remove(i int32) {
	k := s.pos[i]
	if k < 0 {
		return
	}
	last := s.items[len(s.items)-1]
	s.items[k] = last
	s.pos[last] = k
	s.items = s.items[:len(s.items)-1]
	s.pos[i] = -1
}

func (p *Picker) level(a int32) *levelSet {
	for int(a) >= len(p.levels) {
		p.levels = append(p.levels, levelSet{})
	}
	l := &p.levels[a]
	if l.words == nil {
		p.initLevel(int(a))
	}
	return l
}

// initLevel gives level a its words and summary in lvBuf, where level b's
// are at [b*stride, (b+1)*stride): the levels a pick scans one after the
// other are adjacent in memory. lvBuf grows eight levels at a time.
func (p *Picker) initLevel(a int) {
	nw := (p.n + 63) / 64
	ns := (nw + 63) / 64
	stride := nw + ns
	if stride == 0 {
		p.levels[a].init(p.n)
		return
	}
	if (a+1)*stride > len(p.lvBuf) {
		buf := make([]uint64, ((a+8)&^7)*stride)
		copy(buf, p.lvBuf)
		p.lvBuf = buf
		for b := range p.levels {
			if p.levels[b].words != nil {
				p.levels[b].carve(buf, b*stride, nw, ns)
			}
		}
	}
	p.levels[a].carve(p.lvBuf, a*stride, nw, ns)
}

// makePickable puts i back at its level after its last request ended.
func (p *Picker) makePickable(i int) {
	p.level(p.ck[i].avail).add(i)
	p.pickU.Set(i)
	p.maybeOrigin(i)
}

// setAvail moves chunk i to availability a.
func (p *Picker) setAvail(i int, a int32) {
	old := p.ck[i].avail
	was, wasSeen := p.originEligible(i), p.seen(i)
	p.ck[i].avail = a
	p.updElig(i, was)
	p.seenChanged(i, wasSeen)
	if a != 1 && p.mem.on {
		p.mem.deferred.Clear(i)
	}
	if p.pickable(i) {
		p.levels[old].remove(i)
		p.level(a).add(i)
	}
	if a == 0 {
		p.maybeOrigin(i)
	} else if old == 0 {
		p.siteSeen(i)
	}
}

// anyPickable reports whether a pickable chunk is in have.
func (p *Picker) anyPickable(have Bitfield) bool {
	u := p.pickU
	for w, x := range have {
		if w < len(u) && x&u[w] != 0 {
			return true
		}
	}
	return false
}
