package simulations

import (
	"errors"
	"strconv"

	"github.com/storkpm/stork/transfer/policy"
)

// Cooperative origin fetching (strategy swarm-coop), as the daemon's
// transfer/swarm coop.go and pull.go do it: the members of a host are
// the hosts present (the overlay it is connected to, known before the
// download starts, so ProviderDelay does not apply to them); its Picker
// gets them with SetMemberRing and SetPullThrough, and each origin
// request for chunk i goes to the member policy.Fetchers ranks first for
// i (the host itself: the origin). The fetcher serves the chunk if it
// holds it, otherwise it waits for it (it is fetching it from the
// origin, or a peer is sending it) or fetches it from the origin once
// for everyone asking (pull-through); a host asking a fetcher that has
// left falls back to the origin. The chunk reaches the asker as its
// origin request's answer (Picker.Received from policy.OriginPeer), its
// bytes counted as peer bytes. Not modelled: the held-only question to
// the next in rank (Fetchers.After), the daemon's pull slots and
// timeouts, churn (Run refuses swarm-coop with churn).

// ErrCoopChurn: swarm-coop does not model churn.
var ErrCoopChurn = errors.New("cooperative fetching is not simulated with churn")

// Events of cooperative fetching, after headofline.go's.
const (
	evPull   = evFetchingOne + 1 + iota // a pull-through request reaches the fetcher: a=fetcher, b=asker, c=chunk
	evPulled                            // the chunk a fetcher sent reaches the asker: a=asker, b=fetcher, c=chunk
)

// pullFlow marks a flow from a fetcher to an asker (flow.vm).
const pullFlow = -1

type coopState struct {
	on    bool
	ver   uint64  // presVer of first
	first []int32 // each chunk's first-ranked fetcher among present
	keys  []uint64
	wait  map[int64][]int32 // fetcher*nChunks+chunk: hosts waiting for it
}

// visible returns the present hosts other hosts' lookups find: those
// whose provider record is out (Policy.ProviderDelay).
func (s *sim) visible() []int32 {
	if s.sc.Policy.ProviderDelay == 0 {
		return s.present
	}
	var v []int32
	for _, q := range s.present {
		if s.hosts[q].pub <= s.now {
			v = append(v, q)
		}
	}
	return v
}

// fetcher returns the host h asks for chunk i: itself (the origin)
// without cooperative fetching, else chunk i's first-ranked member.
func (s *sim) fetcher(h int32, i int) int32 {
	if !s.coop.on || len(s.present) <= 1 {
		return h
	}
	c := &s.coop
	if c.first == nil || c.ver != s.presVer {
		if c.keys == nil {
			c.keys = make([]uint64, s.nChunks)
			for k := range c.keys {
				c.keys[k] = policy.ChunkKey([]byte("chunk/" + strconv.Itoa(k)))
			}
		}
		// Without sites every member ranks by its hash alone, so the
		// first-ranked is the same whichever member ranks.
		ms := make([]policy.Member, len(s.present))
		for k, q := range s.present {
			ms[k] = policy.Member{ID: s.ids[q]}
		}
		f := policy.NewFetchers(ms[0], ms)
		c.first = make([]int32, s.nChunks)
		for k := range c.first {
			c.first[k] = s.peerOf(f.First(c.keys[k]))
		}
		c.ver = s.presVer
	}
	return c.first[i]
}

func (c *coopState) key(f, i int32, n int) int64 { return int64(f)*int64(n) + int64(i) }

// waiting reports whether hosts wait for fetcher f's chunk i.
func (s *sim) coopWaiting(f, i int32) bool {
	return s.coop.on && len(s.coop.wait[s.coop.key(f, i, s.nChunks)]) > 0
}

// pull: asker's pull-through request for chunk i reaches fetcher f.
func (s *sim) pull(f, asker, i int32) {
	fs := &s.hosts[f]
	if s.hosts[asker].state == stGone {
		return
	}
	if fs.state == stGone {
		// Refused: the asker fetches it from the origin itself.
		s.schedule(s.now+s.lat(f, asker)+s.latOrig, evOriginReq, asker, 0, i)
		return
	}
	if fs.have.Has(int(i)) {
		s.open(f, asker, i, pullFlow, float64(s.chunkLen[i]))
		return
	}
	c := &s.coop
	if c.wait == nil {
		c.wait = map[int64][]int32{}
	}
	k := c.key(f, i, s.nChunks)
	c.wait[k] = append(c.wait[k], asker)
	if fs.oreq.Has(int(i)) || fs.picker.PeerAsked(int(i)) {
		return // on its way to f
	}
	fs.oreq.Set(int(i))
	s.schedule(s.now+s.latOrig, evOriginReq, f, 0, i)
}

// servePulls sends chunk i, which f just received, to the hosts waiting
// for it.
func (s *sim) servePulls(f, i int32) {
	if !s.coop.on {
		return
	}
	k := s.coop.key(f, i, s.nChunks)
	for _, a := range s.coop.wait[k] {
		if s.hosts[a].state != stGone {
			s.open(f, a, i, pullFlow, float64(s.chunkLen[i]))
		}
	}
	delete(s.coop.wait, k)
}

// pulled: chunk i from fetcher f reaches h, the answer to h's origin
// request.
func (s *sim) pulled(h, f, i int32) {
	hs := &s.hosts[h]
	if hs.state == stGone {
		return
	}
	size := float64(s.chunkLen[i])
	if hs.site == s.hosts[f].site {
		hs.fromSite += size
	} else {
		hs.fromWAN += size
	}
	if hs.picker == nil || hs.have.Has(int(i)) || !hs.oreq.Has(int(i)) {
		hs.dup += size // had it, or cancelled the request meanwhile
		return
	}
	s.chunk(h, -1, i)
}
