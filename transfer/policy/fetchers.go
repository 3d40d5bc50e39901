package policy

import (
	"hash/fnv"
	"slices"
)

// Cooperative origin fetching: for each chunk, the members a host knows
// (itself included) rank themselves by rendezvous hashing of the chunk's
// key; the first-ranked fetches the chunk from the origin, the others ask
// it (a pull-through request), falling to the next rank when it does not
// answer. The ranking depends only on the member set and the chunk, so
// hosts that see the same members agree on every chunk's fetcher with no
// message exchanged, and a member joining or leaving moves only the
// chunks it ranks first.

// Member is one swarm member as the fetcher ranking sees it.
type Member struct {
	ID PeerID
	// Site is the member's site; "" when unknown.
	Site string
}

// fetcher is a member prepared for ranking.
type fetcher struct {
	h    uint64
	id   PeerID
	near bool // in our site
}

// Fetchers ranks a host's members, itself included, as each chunk's
// origin fetchers. Read-only once made: safe for concurrent use.
type Fetchers struct {
	self  PeerID
	selfH uint64 // peerHash(self)
	m     []fetcher
}

// NewFetchers prepares the ranking of self and members (duplicates, self,
// OriginPeer and "" among members are ignored). With self's site known,
// the members of that site rank before all others (each site fetches its
// own copy, and its hosts ask one another); a member whose site is
// unknown counts as in another site. With self's site unknown every
// member ranks by its hash alone. The ranking is a total order (site,
// then weight, then ID), so the order members come in does not matter.
func NewFetchers(self Member, members []Member) *Fetchers {
	f := &Fetchers{self: self.ID, selfH: peerHash(self.ID), m: make([]fetcher, 0, len(members)+1)}
	f.m = append(f.m, fetcher{h: f.selfH, id: self.ID, near: true})
	seen := map[PeerID]bool{self.ID: true, OriginPeer: true, "": true}
	for _, m := range members {
		if seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		near := self.Site == "" || m.Site == self.Site
		f.m = append(f.m, fetcher{h: peerHash(m.ID), id: m.ID, near: near})
	}
	return f
}

// Len returns the members ranked, self included.
func (f *Fetchers) Len() int { return len(f.m) }

// Alone reports whether self is the only member.
func (f *Fetchers) Alone() bool { return len(f.m) <= 1 }

// ChunkKey is the ranking key of a chunk: a hash of its name (the bytes
// of its CID), so that one chunk has one fetcher whatever package and
// index it is at, and the chunks of many small packages spread over the
// members.
func ChunkKey(name []byte) uint64 {
	h := fnv.New64a()
	h.Write(name)
	return mix64(h.Sum64())
}

// weight is member h's rendezvous weight for key.
func weight(h, key uint64) uint64 { return mix64(h ^ mix64(key+0x6665_7463_6800_0000)) }

// Before returns, in rank order, the members ranked before self for key
// (at most max of them; max <= 0: all), appended to dst: the fetchers a
// host asks before it fetches the chunk from the origin itself. Empty
// when self ranks first.
func (f *Fetchers) Before(key uint64, max int, dst []PeerID) []PeerID {
	selfW := weight(f.selfH, key)
	type ranked struct {
		w    uint64
		near bool
		id   PeerID
	}
	var top []ranked
	for _, m := range f.m {
		if m.id == f.self {
			continue
		}
		w := weight(m.h, key)
		// Ahead of self: nearer, or as near with a larger weight (equal
		// weights: the smaller ID first).
		if !m.near || (w < selfW || (w == selfW && m.id > f.self)) {
			continue
		}
		r := ranked{w, m.near, m.id}
		k := len(top)
		for k > 0 && (top[k-1].w < r.w || (top[k-1].w == r.w && top[k-1].id > r.id)) {
			k--
		}
		if max > 0 && k >= max {
			continue
		}
		top = slices.Insert(top, k, r)
		if max > 0 && len(top) > max {
			top = top[:max]
		}
	}
	for _, r := range top {
		dst = append(dst, r.id)
	}
	return dst
}

// Upstream returns, by weight alone (sites aside, the larger weight
// first), the members of other sites (or of unknown site) whose weight
// for key is larger than self's, at most max of them (max <= 0: all),
// appended to dst: the chunk's global fetcher first. A host ranked
// first in its site (Before is empty), or whose site's fetchers before
// it failed, asks them for the chunk instead of the origin (two-level
// pull-through): the global fetcher alone asks the origin, and each site
// takes one copy in from it. The global fetcher of a chunk is the first
// of its own site too (the same weights rank both), so it asks nobody.
// Empty when self's site is unknown (every member is near, and Before
// ranks them all).
func (f *Fetchers) Upstream(key uint64, max int, dst []PeerID) []PeerID {
	selfW := weight(f.selfH, key)
	type ranked struct {
		w  uint64
		id PeerID
	}
	var up []ranked
	for _, m := range f.m {
		if m.near || m.id == f.self {
			continue
		}
		w := weight(m.h, key)
		if w < selfW || (w == selfW && m.id > f.self) {
			continue
		}
		up = append(up, ranked{w, m.id})
	}
	// The larger weight first; equal weights: the smaller ID first.
	slices.SortFunc(up, func(a, b ranked) int {
		switch {
		case a.w > b.w || (a.w == b.w && a.id < b.id):
			return -1
		case a.w == b.w && a.id == b.id:
			return 0
		}
		return 1
	})
	if max > 0 && len(up) > max {
		up = up[:max]
	}
	for _, r := range up {
		dst = append(dst, r.id)
	}
	return dst
}

// First returns the member ranked first for key (self, when it is).
func (f *Fetchers) First(key uint64) PeerID {
	if b := f.Before(key, 1, nil); len(b) > 0 {
		return b[0]
	}
	return f.self
}

// After returns the member ranked right after self for key ("" when
// self ranks last, or is alone): the one a first-ranked host asks
// whether it holds the chunk already.
func (f *Fetchers) After(key uint64) PeerID {
	selfW := weight(f.selfH, key)
	var best PeerID
	var bestW uint64
	bestNear := false
	for _, m := range f.m {
		if m.id == f.self {
			continue
		}
		w := weight(m.h, key)
		// Behind self: farther, or as near with a smaller weight (equal
		// weights: the larger ID behind).
		if m.near && (w > selfW || (w == selfW && m.id < f.self)) {
			continue
		}
		// The best of those behind: nearer first, then the larger
		// weight, then the smaller ID.
		better := best == "" || (m.near && !bestNear) ||
			(m.near == bestNear && (w > bestW || (w == bestW && m.id < best)))
		if better {
			best, bestW, bestNear = m.id, w, m.near
		}
	}
	return best
}
