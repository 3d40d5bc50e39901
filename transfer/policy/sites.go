package policy

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Sites: hosts of one site (a data centre, a rack, a lab) share a fast
// local network and one uplink to the rest of the world. The site rule
// makes each site pull about one copy of a package over its uplink and
// spread it inside:
//
//   - A chunk that a peer of our site holds is never asked of a peer in
//     another site: it is asked of the local holder.
//   - A chunk no peer of our site holds is asked across the site link by
//     one host of the site only: the one ranked first for the chunk by
//     rendezvous hashing among the site's hosts we know (ourselves and
//     our same-site peers). The others wait for it to arrive there and
//     then fetch it locally. Views of the site may differ between hosts;
//     the site's host ranked first of all always counts itself first, so
//     every chunk has at least one host that asks across.
//   - A host ranked r-th (r > 0) for a chunk may ask across too once r
//     wait times have passed since the chunk was first seen at a peer,
//     should no local peer hold it by then: the designated host may be
//     slow, or see no holder among its own peers of other sites. The
//     wait is four times the measured mean time from a chunk first seen
//     at a peer to a local peer holding it, at least OriginFallbackDelay/8
//     (OriginFallbackDelay before the first measurement): siteWaitArrive
//     and siteWaitMin.
//   - In the end game the rule is off: the last chunks are asked of
//     anyone, so that a slow or departed designated host never holds a
//     download up.
//
// The rule needs only which peers are in our site (SetPeerLocal); the
// caller knows that from the peers' announced sites (SiteOf), or from
// round-trip times (InferSite).

// SiteSource says how a host knows its site.
type SiteSource uint8

// Site sources.
const (
	SiteUnknown    SiteSource = iota // no site configured, none inferred
	SiteConfigured                   // --site NAME
	SiteInferred                     // InferSite, from round-trip times
)

func (s SiteSource) String() string {
	switch s {
	case SiteConfigured:
		return "configured"
	case SiteInferred:
		return "inferred"
	}
	return "unknown"
}

// MaxSiteLen caps a site name's length, on the wire and in configuration.
const MaxSiteLen = 64

// inferredPrefix starts every inferred site name, and no configured one.
const inferredPrefix = "~"

// Site is a host's site and how it is known.
type Site struct {
	Name   string
	Source SiteSource
}

// CheckSiteName reports whether name may be configured or announced as a
// site: 1 to MaxSiteLen bytes of letters, digits, '.', '_' and '-'.
func CheckSiteName(name string) error {
	if name == "" || len(name) > MaxSiteLen {
		return fmt.Errorf("site name %q: want 1 to %d bytes", name, MaxSiteLen)
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("site name %q: byte %q not a letter, digit, '.', '_' or '-'", name, c)
		}
	}
	return nil
}

// SameSite reports whether a peer that announced site peerSite is in our
// site ours: both known and equal. A host that knows no site of its own,
// or a peer that announced none, is in no site.
func SameSite(ours Site, peerSite string) bool {
	return ours.Source != SiteUnknown && ours.Name != "" && ours.Name == peerSite
}

// Inference from round-trip times.
const (
	// siteRTTFactor and siteRTTSlack: peers within max(factor x the
	// smallest RTT, smallest + slack) of us are in our site. The factor
	// tolerates jitter on a LAN; the slack keeps sub-millisecond RTTs,
	// whose relative noise is large, together.
	siteRTTFactor = 2
	siteRTTSlack  = time.Millisecond
	// siteRTTGap and siteRTTGapMin: the cluster is a site only if every
	// other peer is at least this many times farther than the cluster's
	// farthest member, and this much farther: without such a gap the RTTs
	// show no site boundary (on one loaded machine, loopback round trips
	// range from microseconds to milliseconds).
	siteRTTGap    = 3
	siteRTTGapMin = 10 * time.Millisecond
)

// InferSite guesses our site from round-trip times measured to peers
// (zero or negative: not measured). The site is the cluster of peers much
// closer than the others: those within max(2 x the smallest RTT, the
// smallest + 1ms), provided there are others and every one of them is at
// least 3 times and 10ms farther than the cluster's farthest (peers all
// alike show no site). It returns the site, named "~" and the
// lowest peer ID among self and the cluster (so hosts that see the same
// cluster agree on the name), Source SiteInferred, and the cluster's
// peers sorted. With no measured peer, or no gap, it returns
// SiteUnknown and no peers.
func InferSite(self PeerID, rtts map[PeerID]time.Duration) (Site, []PeerID) {
	type peerRTT struct {
		id  PeerID
		rtt time.Duration
	}
	var ms []peerRTT
	for id, d := range rtts {
		if d > 0 && id != self && id != OriginPeer && id != "" {
			ms = append(ms, peerRTT{id, d})
		}
	}
	if len(ms) == 0 {
		return Site{}, nil
	}
	slices.SortFunc(ms, func(a, b peerRTT) int { return cmp.Or(cmp.Compare(a.rtt, b.rtt), cmp.Compare(a.id, b.id)) })
	lo := ms[0].rtt
	limit := max(siteRTTFactor*lo, lo+siteRTTSlack)
	k := 0
	for k < len(ms) && ms[k].rtt <= limit {
		k++
	}
	if k == len(ms) || ms[k].rtt < siteRTTGap*ms[k-1].rtt || ms[k].rtt-ms[k-1].rtt < siteRTTGapMin {
		return Site{}, nil // no peer outside, or no clear boundary
	}
	local := make([]PeerID, 0, k)
	name := self
	for _, m := range ms[:k] {
		local = append(local, m.id)
		name = min(name, m.id)
	}
	slices.Sort(local)
	return Site{Name: inferredPrefix + string(name), Source: SiteInferred}, local
}

// ResolveSite is the site a host runs with: the configured one if any
// (configuration always beats inference), else the inferred one.
func ResolveSite(configured string, inferred Site) Site {
	if configured != "" {
		return Site{Name: configured, Source: SiteConfigured}
	}
	return inferred
}

// Choosing peers.

// SamplePeers appends to dst up to k random members of list that ok
// accepts and dst does not hold yet. A short list is walked in a random
// order; a long one is drawn from at random, at most 8k+16 times.
func SamplePeers[T comparable](list []T, k int, ok func(T) bool, rng *rand.Rand, dst []T) []T {
	if k <= 0 {
		return dst
	}
	fresh := func(q T) bool { return !slices.Contains(dst, q) && ok(q) }
	n := len(list)
	if n <= 4*k {
		for _, j := range rng.Perm(n) {
			if k == 0 {
				break
			}
			if q := list[j]; fresh(q) {
				dst = append(dst, q)
				k--
			}
		}
		return dst
	}
	for tries := 0; k > 0 && tries < 8*k+16; tries++ {
		if q := list[rng.IntN(n)]; fresh(q) {
			dst = append(dst, q)
			k--
		}
	}
	return dst
}

// ChooseSitePeers appends to dst up to want new peers to connect to, our
// site's first: want-crossMax (if positive) drawn from local (the hosts
// of our site), the rest from all (every host), so that at most about
// crossMax of them are in other sites.
func ChooseSitePeers[T comparable](local, all []T, want, crossMax int, ok func(T) bool, rng *rand.Rand, dst []T) []T {
	n0 := len(dst)
	if k := want - crossMax; k > 0 {
		dst = SamplePeers(local, k, ok, rng, dst)
	}
	return SamplePeers(all, want-(len(dst)-n0), ok, rng, dst)
}

// DefaultCrossSitePeers is the cap on a download's peers in other sites
// that ChooseSitePeers and AcceptSitePeer keep by default, given the cap
// maxPeers on all its peers: an eighth of them, at least 2, so that a
// site has several ways in and every host still draws most of its peers
// from its own site.
func DefaultCrossSitePeers(maxPeers int) int { return max(2, maxPeers/8) }

// AcceptSitePeer reports whether a peer may join our peers: one of our
// site always, one of another site only while fewer than crossMax of our
// peers are in other sites.
func AcceptSitePeer(local bool, crossPeers, crossMax int) bool {
	return local || crossPeers < crossMax
}

// The Picker's site rule.

// siteState is a Picker's site rule (SetSites): which peers are local and
// what each chunk's local holders and designated host are.
type siteState struct {
	on     bool
	self   uint64   // our hash for rendezvous
	local  []bool   // per peer slot
	lavail []int32  // per chunk: local peers holding it
	top    []uint64 // per chunk: the best rendezvous score among local peers
	topBy  []int32  // per chunk: the slot holding top, -1 none
	hash   []uint64 // per slot: the peer's hash
	skip   Bitfield // chunks not to ask across: held locally, or not ours
	buf    Bitfield // skip | first-hop deferred
	queued Bitfield // chunks with an entry in waitQ
	free   Bitfield // chunks whose wait for the designated host ended
	waitQ  []siteWait
	seenAt []int64 // per chunk: 1 + when first seen at a peer, 0 never
	arrive float64 // EWMA of first seen to held locally, ns; 0 none yet
}

// siteWait: at time at (Picker time), chunk stops waiting for the hosts
// ranked before us.
type siteWait struct {
	at    int64
	chunk int32
}

// siteWaitMin and siteWaitArrive: a rank's wait is the larger of
// OriginFallbackDelay/siteWaitMin and siteWaitArrive x the mean time from
// a chunk seen at a peer to a local peer holding it.
const (
	siteWaitMin    = 8
	siteWaitArrive = 4
)

// SetSites turns the site rule on: self is our peer ID, and peers are in
// no site of ours until SetPeerLocal says so. Peers already known stay
// non-local.
func (p *Picker) SetSites(self PeerID) {
	st := &p.site
	if st.on {
		return
	}
	*st = siteState{on: true, self: peerHash(self),
		lavail: make([]int32, p.n), top: make([]uint64, p.n), topBy: make([]int32, p.n),
		skip: NewBitfield(p.n), buf: NewBitfield(p.n), queued: NewBitfield(p.n), free: NewBitfield(p.n), seenAt: make([]int64, p.n)}
	for i := range p.n {
		st.topBy[i] = -1
		st.updSkip(i)
	}
}

// SitesOn reports whether the site rule is on.
func (p *Picker) SitesOn() bool { return p.site.on }

// SetPeerLocal says whether a known peer is in our site. It does nothing
// before SetSites or for an unknown peer.
func (p *Picker) SetPeerLocal(peer PeerID, local bool) {
	s, ok := p.peers[peer]
	if !ok || !p.site.on || p.PeerLocal(peer) == local {
		return
	}
	if local {
		p.siteJoin(s)
	} else {
		p.siteLeft(s)
	}
}

// PeerLocal reports whether peer is known and in our site.
func (p *Picker) PeerLocal(peer PeerID) bool {
	s, ok := p.peers[peer]
	return ok && int(s) < len(p.site.local) && p.site.local[s]
}

// AcrossAllowed reports whether chunk i may be asked of a peer in another
// site now: the rule is off, or the end game is on, or no local peer holds
// it and we rank first for it among our site's hosts (or our ranked wait
// for it has passed).
func (p *Picker) AcrossAllowed(i int) bool {
	p.siteRelease()
	return !p.site.on || p.Endgame() || !p.valid(i) || !p.site.skip.Has(i)
}

// LocalHolders returns how many peers of our site hold chunk i.
func (p *Picker) LocalHolders(i int) int {
	if !p.site.on || !p.valid(i) {
		return 0
	}
	return int(p.site.lavail[i])
}

func rendezvous(peer uint64, i int) uint64 { return mix64(peer ^ chunkHash(i)) }

func (st *siteState) updSkip(i int) {
	if st.lavail[i] > 0 || (!st.free.Has(i) && st.topBy[i] >= 0 && st.top[i] > rendezvous(st.self, i)) {
		st.skip.Set(i)
	} else {
		st.skip.Clear(i)
	}
}

func (p *Picker) siteJoin(s int32) {
	st := &p.site
	for int(s) >= len(st.local) {
		st.local = append(st.local, false)
		st.hash = append(st.hash, 0)
	}
	st.local[s] = true
	h := peerHash(p.slots[s].id)
	st.hash[s] = h
	have := p.slots[s].have
	for i := range p.n {
		if sc := rendezvous(h, i); st.topBy[i] < 0 || sc > st.top[i] {
			st.top[i], st.topBy[i] = sc, s
		}
		if have.Has(i) {
			st.lavail[i]++
		}
		st.updSkip(i)
		if p.ck[i].avail > 0 {
			p.siteSeen(i)
		}
	}
}

// siteLeft takes slot s out of the site (it left, or is no longer local).
func (p *Picker) siteLeft(s int32) {
	st := &p.site
	if !st.on || int(s) >= len(st.local) || !st.local[s] {
		return
	}
	st.local[s] = false
	have := p.slots[s].have
	for i := range p.n {
		if have.Has(i) {
			st.lavail[i]--
		}
		if st.topBy[i] == s {
			st.topBy[i], st.top[i] = -1, 0
			for q, on := range st.local {
				if sc := rendezvous(st.hash[q], i); on && (st.topBy[i] < 0 || sc > st.top[i]) {
					st.top[i], st.topBy[i] = sc, int32(q)
				}
			}
		}
		st.updSkip(i)
	}
}

// siteHave counts a local peer's have-map change of chunk i by d (+1, -1).
func (p *Picker) siteHave(s int32, i int, d int32) {
	st := &p.site
	if st.on && int(s) < len(st.local) && st.local[s] {
		st.lavail[i] += d
		st.updSkip(i)
		if d > 0 && st.lavail[i] == 1 && st.seenAt[i] > 0 {
			st.arrive = ewma(st.arrive, float64(p.lastT+1-st.seenAt[i]))
		}
	}
}

// siteSeen starts chunk i's wait for the hosts of our site ranked before
// us, once: i was just seen at a peer (or a local peer that outranks us
// joined).
func (p *Picker) siteSeen(i int) {
	st := &p.site
	if !st.on {
		return
	}
	if st.seenAt[i] == 0 {
		st.seenAt[i] = p.lastT + 1
	}
	if st.queued.Has(i) || st.free.Has(i) {
		return
	}
	me := rendezvous(st.self, i)
	r := 0
	for q, on := range st.local {
		if on && rendezvous(st.hash[q], i) > me {
			r++
		}
	}
	if r == 0 {
		return
	}
	wait := float64(p.cfg.OriginFallbackDelay)
	if st.arrive > 0 {
		wait = max(wait/siteWaitMin, siteWaitArrive*st.arrive)
	}
	st.queued.Set(i)
	st.push(siteWait{at: p.lastT + int64(float64(r)*wait), chunk: int32(i)})
}

// siteRelease ends the waits due by the latest time given.
func (p *Picker) siteRelease() {
	st := &p.site
	for len(st.waitQ) > 0 && st.waitQ[0].at <= p.lastT {
		i := int(st.pop().chunk)
		st.queued.Clear(i)
		st.free.Set(i)
		st.updSkip(i)
	}
}

// push and pop keep waitQ a binary min-heap by time.
func (st *siteState) push(w siteWait) {
	q := append(st.waitQ, w)
	for k := len(q) - 1; k > 0; {
		up := (k - 1) / 2
		if q[up].at <= q[k].at {
			break
		}
		q[up], q[k] = q[k], q[up]
		k = up
	}
	st.waitQ = q
}

func (st *siteState) pop() siteWait {
	q := st.waitQ
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q = q[:last]
	for k := 0; ; {
		c := 2*k + 1
		if c >= len(q) {
			break
		}
		if c+1 < len(q) && q[c+1].at < q[c].at {
			c++
		}
		if q[k].at <= q[c].at {
			break
		}
		q[k], q[c] = q[c], q[k]
		k = c
	}
	st.waitQ = q
	return top
}

// siteSkip is what a pick for slot s must skip, given the
// first-hop deferral's skip: a peer of another site skips the chunks it
// may not be asked for (AcrossAllowed).
func (p *Picker) siteSkip(s int32, skip Bitfield) Bitfield {
	st := &p.site
	if !st.on || (int(s) < len(st.local) && st.local[s]) || p.Endgame() {
		return skip
	}
	p.siteRelease()
	if skip == nil {
		return st.skip
	}
	for w := range st.buf {
		st.buf[w] = st.skip[w] | skip[w]
	}
	return st.buf
}
