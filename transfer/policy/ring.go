package policy

import (
	"cmp"
	"hash/fnv"
	"slices"
	"sort"
)

// The member ring: each chunk's origin owner among the swarm's members by
// consistent hashing, and this host's rank after the owner.

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
	// The members counted for a chunk, at most maxFallbackRank: a list
	// this short is cheaper to scan than a table of every member is to
	// make (a simulation gives thousands of members to every Picker).
	var seen [maxFallbackRank]int32
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
			if !slices.Contains(seen[:r], q) {
				seen[r] = q
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

// SetPullThrough says whether the caller sends each origin request to the
// chunk's first-ranked fetcher among the members (Fetchers), which
// fetches it from the origin once for every host that asks, and asks the
// origin itself only when it ranks first or its fetchers fail. While on,
// with members known, every chunk of the window is due at once at every
// host: none waits a fallback delay by its rank on the member ring.
func (p *Picker) SetPullThrough(on bool) { p.pull = on }

// Members returns how many members SetMembers gave, self included (0:
// never called).
func (p *Picker) Members() int { return p.mem.count }

// OriginOwner reports whether we are chunk i's origin owner among the
// members (always true with no members known).
func (p *Picker) OriginOwner(i int) bool {
	return !p.mem.on || !p.valid(i) || p.mem.orank[i] == 0
}
