package simulations

import (
	"errors"
	"slices"
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
// bytes counted as peer bytes. As on the daemon, only a host that asks
// the origin itself sends Fetching: an asker does not (the chunk is its
// fetcher's to announce), and a fetcher does not when an asker's request
// makes it fetch the chunk, so the hosts' Pickers keep the chunk eligible
// and ask the fetcher for it; once the fetcher's own download asks for
// the chunk (its origin window reached it) it announces it, as for any
// chunk it asks the origin for, and the hosts that have not asked yet
// wait for its Have. The answers leave by the host's upload link, shared
// with its sessions as the daemon's --upload-rate paces both
// (transfer/swarm sendPulled), or by a server of their own at
// Scenario.PullUpload.
//
// Two levels (strategy swarm-sites, as the daemon with --site runs it:
// transfer/swarm coop.go fetchersBefore, forward, upstreamFirst; pull.go
// pullData, upstreamFetch): the members carry their sites, so
// policy.Fetchers ranks a host's site first, and a host's origin request
// for chunk i goes to the first-ranked member of its own site (its
// site's fetcher, Fetchers.Before); a site's fetcher asks the chunk's
// global fetcher (Fetchers.Upstream), and only the global fetcher, the
// first of its own site too, asks the origin. A site's fetcher takes one
// copy in for its site: its own download's request and the requests of
// its site's hosts are joined into one to the global fetcher (the
// daemon's pullShared), even while a peer is sending it the chunk (the
// daemon forwards before it waits on its download); one that has not
// started the package asks the global fetcher for the askers only, and
// keeps the chunk for its own download (upstreamFetch's cache). Every
// answer is a flow from the fetcher's upload across the site links it
// crosses: the global fetcher's into each other site, its site's
// fetcher's inside the site. A fetcher that holds the chunk answers at
// once, at every level; a site's fetcher that gets the chunk from a
// peer first answers its askers then (the daemon's forward waits for the
// global fetcher's answer instead). Neither the site's fetcher nor its
// askers send Fetching; the global fetcher does once its own download
// asks the origin for the chunk, as in one level. The Pickers run the
// site rule and the hosts choose peers as swarm-locality's.
//
// A download's first origin requests go out before its sessions: the
// daemon schedules once as the download starts, while its search for
// peers runs beside it (transfer/swarm download.run), so the first
// request for a chunk goes to the chunk's fetcher even when a peer holds
// it already, and that request is not cancelled for the peer once the
// fetcher holds the chunk (download.overtake). In a workload of small
// packages this is how most chunks move: a host starting a package late
// takes it from the package's fetcher, not from the first host that got
// it, which every host's sessions would find at once. A host that ranks
// first for a chunk asks the next in rank for it before the origin,
// unless that host is one of its session peers already (the daemon's
// firstRankedAsk, a held-only question, in one level only): it takes the
// chunk from it if it holds it, and otherwise asks the origin at once
// (the daemon loses the question's round trip first).
//
// Not modelled: the held-only question to the host that asked for the
// chunk before this one knew the package (refusedAsker) and in two
// levels, the daemon's pull slots (a fetcher refusing beyond
// maxPulls, its askers turning to the next in rank) and timeouts, the
// cancelling of a pull-through request whose chunk a same-site peer
// came to hold before the fetcher answered (pullsOvertaken: a flash
// crowd's askers are answered as their fetcher gets the chunk), churn
// (Run refuses swarm-coop and swarm-sites with churn).

// ErrCoopChurn: swarm-coop and swarm-sites do not model churn.
var ErrCoopChurn = errors.New("cooperative fetching is not simulated with churn")

// Events of cooperative fetching, after headofline.go's.
const (
	evPull      = evFetchingOne + 1 + iota // a pull-through request reaches the fetcher: a=fetcher, b=asker, c=chunk
	evPulled                               // the chunk a fetcher sent reaches the asker: a=asker, b=fetcher, c=chunk
	evPullFetch                            // a fetcher's origin request for askers only reaches the origin: a=fetcher, c=chunk
)

// pullFlow marks a flow from a fetcher to an asker (flow.vm).
const pullFlow = -1

type coopState struct {
	on bool
	// two: two levels, the members ranked with their sites (swarm-sites).
	two bool
	// all: the members are every host, not only those present (a
	// workload's later packages: every host is in the overlay, fetching
	// some package).
	all     bool
	allList []int32
	fetch   map[int64]bool // fetcher*nChunks+chunk: an origin fetch for askers only
	// cache: chunks a host fetched for askers only before it started
	// the package; its own download takes them from there (the daemon's
	// cache of chunks fetched for peers, which originFetch reads first).
	cache  map[int64]bool
	pkg    int     // the package's index in a workload: part of its chunks' keys
	ver    uint64  // presVer of the ranking
	ranked bool    // first (siteFirst, up) set
	first  []int32 // each chunk's first-ranked fetcher among present
	// Two levels: per site, each chunk's fetcher in the site (siteFirst)
	// and whom that fetcher asks (up: the chunk's global fetcher, or the
	// site's fetcher itself when it is the global one: the origin); nil
	// for a site with no member.
	siteFirst [][]int32
	up        [][]int32
	keys      []uint64
	// second: each chunk's member ranked right after the first (the one
	// the first asks whether it holds the chunk), -2 not yet computed;
	// for the ranking of version secondVer.
	second    []int32
	secondVer uint64
	wait      map[int64][]int32 // fetcher*nChunks+chunk: hosts waiting for it
	// pullBase: the server of host h's pull-through answers is
	// pullBase+h (Scenario.PullUpload); 0: they leave by the host's
	// own server, h.
	pullBase int32
	// pullSrc[h*nChunks+i]: 1 + the fetcher whose pull-through answer
	// for chunk i host h's origin request is receiving (openPull), 0
	// none; the end game asks that fetcher nothing more over a session
	// (pullingFrom). Made with the run (newSimAt); only h's own events
	// write h's entries, after waitFree(h), so a fan-out job may read
	// them (pipe.go).
	pullSrc []int32
}

// addPullServers adds each host's server for pull-through answers when
// they have a capacity of their own (Scenario.PullUpload).
func (s *sim) addPullServers() {
	if !s.coop.on || s.sc.PullUpload == 0 {
		return
	}
	s.coop.pullBase = s.origin + 1
	if len(s.srvs) > int(s.coop.pullBase) {
		return // a workload's later package: the first one's
	}
	for range s.n {
		s.addUploadServer(float64(s.sc.PullUpload))
	}
}

// srvHost returns the host whose upload server id is (a host's own, or
// its pull-through server); not the origin's.
func (s *sim) srvHost(id int32) int32 {
	if s.coop.pullBase > 0 && id >= s.coop.pullBase {
		return id - s.coop.pullBase
	}
	return id
}

// visible returns the present hosts other hosts' lookups find: those
// whose provider record is out (Policy.ProviderDelay), in their order in
// present. Until a host leaves from the middle of present (churn), present
// is in the order of arrival and every record goes out ProviderDelay after
// its host arrived, so the visible hosts are a prefix of present, found by
// a binary search: a scan of every present host at each lookup cost
// hosts² per package at 10,000 hosts. The result is read-only.
func (s *sim) visible() []int32 {
	if s.sc.Policy.ProviderDelay == 0 {
		return s.present
	}
	if !s.presMoved {
		k, _ := slices.BinarySearchFunc(s.present, s.now, func(q int32, now float64) int {
			if s.hosts[q].pub <= now {
				return -1
			}
			return 1
		})
		if k == 0 {
			return nil
		}
		return s.present[:k:k]
	}
	var v []int32
	for _, q := range s.present {
		if s.hosts[q].pub <= s.now {
			v = append(v, q)
		}
	}
	return v
}

// coopMembers returns the hosts of the overlay: the members of
// cooperative fetching.
func (s *sim) coopMembers() []int32 {
	c := &s.coop
	if !c.all {
		return s.present
	}
	if c.allList == nil {
		c.allList = make([]int32, s.n)
		for h := range s.n {
			c.allList[h] = h
		}
	}
	return c.allList
}

// fetcher returns the host h asks for chunk i: itself (the origin)
// without cooperative fetching, else chunk i's first-ranked member; with
// two levels, the first-ranked member of h's site, or, for that member
// itself, the chunk's global fetcher (itself when it is the global one).
func (s *sim) fetcher(h int32, i int) int32 {
	members := s.coopMembers()
	if !s.coop.on || len(members) <= 1 {
		return h
	}
	c := &s.coop
	if !c.ranked || (!c.all && c.ver != s.presVer) {
		if c.keys == nil {
			c.keys = make([]uint64, s.nChunks)
			for k := range c.keys {
				c.keys[k] = chunkKey(c.pkg, k)
			}
		}
		if c.two {
			s.rankSites(members)
		} else if fs := s.sc.Fetchers; len(fs) == s.nChunks {
			// The scenario's draw (the daemons' own, validate-crowd).
			c.first = make([]int32, s.nChunks)
			for k, f := range fs {
				c.first[k] = int32(f)
			}
		} else {
			// Without sites every member ranks by its hash alone, so the
			// first-ranked is the same whichever member ranks.
			ms := make([]policy.Member, len(members))
			for k, q := range members {
				ms[k] = policy.Member{ID: s.ids[q]}
			}
			f := policy.NewFetchers(ms[0], ms)
			c.first = make([]int32, s.nChunks)
			for k := range c.first {
				c.first[k] = s.peerOf(f.First(c.keys[k]))
			}
		}
		c.ver, c.ranked = s.presVer, true
	}
	if !c.two {
		return c.first[i]
	}
	site := s.hosts[h].site
	if f := c.siteFirst[site][i]; f != h {
		return f
	}
	return c.up[site][i]
}

// chunkKey is the ranking key of chunk k of a workload's package pkg
// (0: the one package): a name of its own, as a chunk's CID is.
func chunkKey(pkg, k int) uint64 {
	return policy.ChunkKey([]byte("pkg/" + strconv.Itoa(pkg) + "/chunk/" + strconv.Itoa(k)))
}

// siteName is the site host h announces.
func (s *sim) siteName(h int32) string { return "s" + strconv.Itoa(int(s.hosts[h].site)) }

// rankSites sets the two-level fetchers of every chunk among members, as
// each member's policy.Fetchers ranks them: per site, the first-ranked of
// the site as any of its members sees it (Fetchers.First: the site's
// members rank before all others, in the same order for each of them),
// and whom that one asks (Fetchers.Upstream from its own view).
func (s *sim) rankSites(members []int32) {
	c := &s.coop
	ms := make([]policy.Member, len(members))
	for k, q := range members {
		ms[k] = policy.Member{ID: s.ids[q], Site: s.siteName(q)}
	}
	views := map[int32]*policy.Fetchers{}
	view := func(h int32) *policy.Fetchers {
		if f := views[h]; f != nil {
			return f
		}
		f := policy.NewFetchers(policy.Member{ID: s.ids[h], Site: s.siteName(h)}, ms)
		views[h] = f
		return f
	}
	c.siteFirst = make([][]int32, s.sc.Sites)
	c.up = make([][]int32, s.sc.Sites)
	var up []policy.PeerID
	for _, q := range members {
		site := s.hosts[q].site
		if c.siteFirst[site] != nil {
			continue
		}
		rep := view(q)
		first, to := make([]int32, s.nChunks), make([]int32, s.nChunks)
		for i, key := range c.keys {
			f := s.peerOf(rep.First(key))
			first[i], to[i] = f, f
			if up = view(f).Upstream(key, 1, up[:0]); len(up) > 0 {
				to[i] = s.peerOf(up[0])
			}
		}
		c.siteFirst[site], c.up[site] = first, to
	}
}

func (c *coopState) key(f, i int32, n int) int64 { return int64(f)*int64(n) + int64(i) }

// coopWaiting reports whether hosts wait for fetcher f's chunk i.
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
	if fs.have != nil && fs.have.Has(int(i)) || s.coopCached(f, i) {
		s.openPull(f, asker, i)
		return
	}
	c := &s.coop
	if c.wait == nil {
		c.wait, c.fetch, c.cache = map[int64][]int32{}, map[int64]bool{}, map[int64]bool{}
	}
	k := c.key(f, i, s.nChunks)
	c.wait[k] = append(c.wait[k], asker)
	// Two levels: a site's fetcher forwards to the chunk's global
	// fetcher (the daemon's forward, or pullData's upstreamFetch).
	up := int32(-1)
	if c.two {
		if g := s.fetcher(f, int(i)); g != f && g != asker {
			up = g
		}
	}
	if fs.state != stActive {
		// Not fetching this package itself (a later package's host that
		// has not started it): it fetches the chunk for the askers only.
		if !c.fetch[k] {
			c.fetch[k] = true
			if up >= 0 {
				s.schedule(s.now+s.lat(f, up), evPull, up, f, i)
			} else {
				s.schedule(s.now+s.latOrig, evPullFetch, f, 0, i)
			}
		}
		return
	}
	s.waitFree(f) // a fan-out job may be asking f's Picker (pipe.go)
	if fs.oreq.Has(int(i)) || up < 0 && fs.picker.PeerAsked(int(i)) {
		return // on its way to f
	}
	fs.oreq.Set(int(i))
	if up >= 0 {
		s.schedule(s.now+s.lat(f, up), evPull, up, f, i)
		return
	}
	s.schedule(s.now+s.latOrig, evOriginReq, f, 0, i)
}

// pullFetch: fetcher f's request for chunk i, for askers only, reaches
// the origin.
func (s *sim) pullFetch(f, i int32) {
	s.open(-1, f, i, pullFlow, float64(s.chunkLen[i]))
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
			s.openPull(f, a, i)
		}
	}
	delete(s.coop.wait, k)
	delete(s.coop.fetch, k)
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
	if hs.state == stIdle {
		// A site's fetcher that has not started the package: the global
		// fetcher's answer is for its askers, and kept for its download.
		s.servePulls(h, i)
		s.coopKeep(h, i)
		return
	}
	if hs.picker == nil || hs.have.Has(int(i)) || !hs.oreq.Has(int(i)) {
		hs.dup += size // had it, or cancelled the request meanwhile
		return
	}
	s.chunk(h, -1, i)
}

// coopFetching reports whether h is fetching chunk i for askers only
// (before it started the package): its own download's request joins
// that fetch, as the daemon's joins the call under way (originFetch,
// upstreamFetch).
func (s *sim) coopFetching(h, i int32) bool {
	return s.coop.on && s.coop.fetch[s.coop.key(h, i, s.nChunks)]
}

// coopCached reports whether h fetched chunk i for askers before it
// started the package.
func (s *sim) coopCached(h, i int32) bool {
	return s.coop.on && s.coop.cache[s.coop.key(h, i, s.nChunks)]
}

// coopKeep keeps chunk i, which h fetched for askers before it started
// the package, in h's cache; it reports whether it did.
func (s *sim) coopKeep(h, i int32) bool {
	if !s.coop.on || s.hosts[h].state != stIdle || s.coop.cache == nil {
		return false
	}
	s.coop.cache[s.coop.key(h, i, s.nChunks)] = true
	return true
}

// cancelPull withdraws h's pull-through request for chunk i, if it has
// one: the daemon's asker resets the request's stream when a peer
// delivered the chunk first, so the fetcher stops sending it (a flow
// under way ends) or never sends it (h waited for the fetcher's own
// fetch, which goes on for the others and itself).
func (s *sim) cancelPull(h, i int32) {
	if !s.coop.on {
		return
	}
	r := &s.rin[h]
	for k, c := range r.cls {
		if c&^clsParts == uint32(s.tag)<<clsShift|clsPull && s.flows[r.in[k]].chunk == i {
			s.close(r.in[k])
			return
		}
	}
	f := s.fetcher(h, int(i))
	if f == h {
		return
	}
	k := s.coop.key(f, i, s.nChunks)
	if w := s.coop.wait[k]; len(w) > 0 {
		s.coop.wait[k] = slices.DeleteFunc(w, func(a int32) bool { return a == h })
	}
}

// coopHeldAsk returns the host h asks whether it holds chunk i before it
// fetches it from the origin, having ranked first for it (one level
// only): the next in rank, if it holds the chunk (its store, or fetched
// for askers) and is not one of h's session peers; -1 otherwise. The
// daemon asks it a held-only question (firstRankedAsk), and asks the
// origin when the answer is no.
func (s *sim) coopHeldAsk(h, i int32) int32 {
	c := &s.coop
	if !c.on || c.two || s.fetcher(h, int(i)) != h {
		return -1
	}
	members := s.coopMembers()
	if len(members) < 2 {
		return -1
	}
	if c.second == nil || c.secondVer != c.ver {
		c.second = make([]int32, s.nChunks)
		for k := range c.second {
			c.second[k] = -2
		}
		c.secondVer = c.ver
	}
	if c.second[i] == -2 {
		ms := make([]policy.Member, len(members))
		for k, q := range members {
			ms[k] = policy.Member{ID: s.ids[q]}
		}
		c.second[i] = -1
		if next := policy.NewFetchers(policy.Member{ID: s.ids[h]}, ms).After(c.keys[i]); next != "" {
			c.second[i] = s.peerOf(next)
		}
	}
	q := c.second[i]
	if q < 0 || q == h {
		return -1
	}
	if k := s.sessionOf(h, q); k >= 0 && s.hosts[h].sess[k].known {
		return -1 // its have-map says: the Picker asks it as a peer
	}
	qs := &s.hosts[q]
	if qs.state != stGone && (qs.have != nil && qs.have.Has(int(i)) || s.coopCached(q, i)) {
		return q
	}
	return -1
}

// openPull starts fetcher f's answer to asker's pull-through request for
// chunk i. Its first bytes are on their way: the asker's end game waits
// longer before it asks a peer for the chunk (Picker.Streaming on its
// origin request, as the daemon's pullHeard once the fetcher sends).
func (s *sim) openPull(f, asker, i int32) {
	s.open(f, asker, i, pullFlow, float64(s.chunkLen[i]))
	if p := s.hosts[asker].picker; p != nil && s.hosts[asker].oreq.Has(int(i)) {
		s.waitFree(asker)
		p.Streaming(int(i), policy.OriginPeer)
		s.coop.pullSrc[int(asker)*s.nChunks+int(i)] = f + 1
	}
}

// pullingFrom reports whether q is sending h chunk i as the answer to
// h's pull-through request (openPull): the daemon's download.schedule
// asks q nothing more that round in the end game rather than ask q for
// i over a session (its d.pulling), a second copy of the same bytes
// from one upload, shared per peer with the first (engine.go server),
// which slowed every answer q owed. The mark stays until h has the
// chunk: an answer ends only with the chunk (pulled) or with h having
// it from a peer (cancelPull).
func (s *sim) pullingFrom(h, q, i int32) bool {
	return s.coop.pullSrc != nil && s.coop.pullSrc[int(h)*s.nChunks+int(i)] == q+1
}
