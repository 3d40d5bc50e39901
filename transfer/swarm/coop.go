package swarm

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	pool "github.com/libp2p/go-buffer-pool"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
)

// A download's side of cooperative origin fetching: the members it ranks
// as fetchers, and the pull-through requests its origin requests become
// (pull.go has the wire and the fetcher's side).

// updateMembers asks the network for its members now, adds the providers
// Discovery found (nil: none new), and gives the Picker the union and the
// fetcher ranking the members (those serving pull-through requests, less
// the peers banned or dropped) when either changed; then it schedules.
func (d *download) updateMembers(providers []PeerID) {
	ms := d.pullMembers()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.finished {
		return
	}
	if d.setMembers(ms, providers) {
		d.schedule(time.Now())
	}
}

// membersDue reports whether the members were last asked for a quarter
// of FindInterval ago or more.
func (d *download) membersDue(now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return now.Sub(d.membersAt) >= d.s.cfg.FindInterval/4
}

// pullMembers returns the network's members (none without cooperative
// fetching).
func (d *download) pullMembers() []policy.Member {
	if pn, ok := d.s.cfg.Network.(PullNetwork); ok && d.coop {
		return pn.Members()
	}
	return nil
}

// setMembers is updateMembers without the scheduling; it reports whether
// the members changed. d.mu is held.
func (d *download) setMembers(ms []policy.Member, providers []PeerID) bool {
	d.membersAt = time.Now()
	if providers != nil {
		d.providers = providers
	}
	self := d.s.cfg.Self
	ms = slices.DeleteFunc(ms, func(m policy.Member) bool {
		return m.ID == self || m.ID == "" || m.ID == policy.OriginPeer || d.banned[m.ID] || d.dropped[m.ID] || d.silent[m.ID]
	})
	set := make(map[PeerID]bool, len(ms)+len(d.providers))
	ids := make([]PeerID, 0, len(ms)+len(d.providers))
	for _, m := range ms {
		if !set[m.ID] {
			set[m.ID] = true
			ids = append(ids, m.ID)
		}
	}
	for _, p := range d.providers {
		if !set[p] && p != self {
			set[p] = true
			ids = append(ids, p)
		}
	}
	var me policy.Member
	var sited []policy.Member
	var near string
	twoLevel := false
	if d.coop {
		// The members' round trips may tell the site at once (inferSite
		// does nothing without Config.RTT, or with a configured site).
		d.s.inferSite(ids, d.membersAt)
		me, sited, near, twoLevel = d.s.memberSites(ms)
	}
	if d.memberSet != nil && len(set) == len(d.memberSet) && !slices.ContainsFunc(ids, func(p PeerID) bool { return !d.memberSet[p] }) && near == d.near && twoLevel == d.twoLevel {
		return false
	}
	d.memberSet, d.near, d.twoLevel = set, near, twoLevel
	if d.coop {
		d.fetchers = nil
		if twoLevel {
			d.fetchers = policy.NewFetchers(me, sited)
		} else if !d.s.siteKnown() {
			d.fetchers = policy.NewFetchers(policy.Member{ID: self}, ms)
		}
		if d.keys == nil {
			d.keys = make([]uint64, len(d.pkg.refs))
			for i, r := range d.pkg.refs {
				d.keys[i] = policy.ChunkKey(r.CID.Bytes())
			}
		}
		pull := d.fetchers != nil && !d.fetchers.Alone()
		d.picker.SetPullThrough(pull)
	}
	if len(ids) == 0 {
		return false
	}
	d.picker.SetMemberRing(self, d.s.ring.of(self, ids))
	return true
}

// memberRingCache keeps the ring of the last member set a download was
// given. A host's downloads share their members (those it is connected
// to), so an upgrade of hundreds of packages makes the ring, 32 points
// per member hashed and sorted, once rather than once per package.
type memberRingCache struct {
	mu   sync.Mutex
	key  string
	ring *policy.MemberRing
}

// of returns the ring of self and ids, made only if the set differs from
// the last one asked for.
func (c *memberRingCache) of(self PeerID, ids []PeerID) *policy.MemberRing {
	sorted := make([]string, 0, len(ids)+1)
	for _, id := range ids {
		sorted = append(sorted, string(id))
	}
	sorted = append(sorted, string(self))
	slices.Sort(sorted)
	key := strings.Join(slices.Compact(sorted), "\x00")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ring == nil || c.key != key {
		c.key, c.ring = key, policy.NewMemberRing(append(slices.Clip(ids), self))
	}
	return c.ring
}

// siteKnown reports whether this host's site is known (configured or
// inferred). Cooperative fetching then runs in two levels when the
// members' sites are known (memberSites), and else steps aside for the
// site policy (sites.go).
func (s *Swarm) siteKnown() bool { return s.Site().Name != "" }

// FileFetchers returns, in rank order, at most max members this host
// asks for a repository file (a manifest, metadata of a fixed version,
// the timestamp) before the origin: cooperative fetching of the files a
// package's download starts with, ranked as chunks are (key:
// policy.ChunkKey of the file's path), so that a crowd resolving one
// package makes the origin send each file once, not once per host. Empty when this host
// ranks first, has no members, or cooperative fetching is off; with
// sites, the members of our site ranked before us (each site fetches its
// own copy).
func (s *Swarm) FileFetchers(key uint64, max int) []PeerID {
	pn, ok := s.cfg.Network.(PullNetwork)
	if !ok || s.cfg.NoPullThrough || s.cfg.Origin == nil {
		return nil
	}
	ms := pn.Members()
	var f *policy.Fetchers
	if me, sited, _, twoLevel := s.memberSites(ms); twoLevel {
		f = policy.NewFetchers(me, sited)
	} else if !s.siteKnown() {
		f = policy.NewFetchers(policy.Member{ID: s.cfg.Self}, ms)
	} else {
		return nil
	}
	return f.Before(key, max, nil)
}

// memberSites returns this host and its members as the two-level fetcher
// ranking sees them, and the members in our site (their IDs, sorted and
// joined): those whose site, as the network told it when they connected
// (PullNetwork.Members), is our configured one. ok is false, and
// pull-through steps aside for the site policy's claims, unless our site
// is configured and the network told some member's site: every host of
// an overlay that tells sites then ranks in two levels from a download's
// start. Sites learnt later (a Have's, or inferred from round trips) would
// have hosts switch policy at different times, each fetching the chunks
// its own policy gives it: second copies from the origin.
func (s *Swarm) memberSites(ms []policy.Member) (me policy.Member, sited []policy.Member, near string, ok bool) {
	site := s.cfg.Site
	if site == "" || !slices.ContainsFunc(ms, func(m policy.Member) bool { return m.Site != "" }) {
		return policy.Member{}, nil, "", false
	}
	sited = make([]policy.Member, len(ms))
	var local []string
	for k, m := range ms {
		sited[k] = policy.Member{ID: m.ID}
		if m.Site == site {
			sited[k].Site = site
			local = append(local, string(m.ID))
		}
	}
	slices.Sort(local)
	return policy.Member{ID: s.cfg.Self, Site: site}, sited, strings.Join(local, " "), true
}

// fetchersBefore returns the fetchers to ask for chunk i before the
// origin, in rank order (none when we rank first, or fetch alone): with
// sites, our site's fetchers ranked before us, then the chunk's global
// fetcher (policy.Fetchers.Upstream), which alone asks the origin. d.mu
// is held.
func (d *download) fetchersBefore(i int) []PeerID {
	if d.fetchers == nil || d.fetchers.Alone() {
		return nil
	}
	b := d.fetchers.Before(d.keys[i], maxPullRanks, nil)
	if len(b) < maxPullRanks {
		b = d.fetchers.Upstream(d.keys[i], maxPullRanks-len(b), b)
	}
	return b
}

// pullFetchers asks chunk i's fetchers for it, in rank order, unless
// this host fetched it from the origin for peers lately: done once one
// delivered it (or the download no longer wants it). It returns the
// error to handle as the origin's when a fetcher answered for the origin
// (the chunk is missing there), nil when every fetcher refused, failed or
// could not reach the origin and we should ask the origin ourselves.
func (d *download) pullFetchers(ctx context.Context, i int, sent time.Time) (bool, error) {
	if data := d.s.pulledChunk(d.pkg.refs[i]); data != nil {
		// Fetched from the origin for a peer before this download began:
		// no fetcher need be asked, nor the origin again.
		d.deliver(i, policy.OriginPeer, data, sent)
		return true, nil
	}
	d.mu.Lock()
	before := d.fetchersBefore(i)
	var flags byte
	if len(before) == 0 && d.fetchers != nil && !d.fetchers.Alone() {
		before, flags = d.firstRankedAsk(i)
	}
	d.mu.Unlock()
	ref := d.pkg.refs[i]
	var named PeerID // by a pullAskOther answer
	for k := 0; k < len(before); k++ {
		f := before[k]
		fl := flags
		if f == named {
			fl = pullHeldOnly
		} else if k == 0 {
			fl |= pullFirstRank
		}
		data, raw, err := d.pullShared(ctx, f, i, fl, d.sinkKeepsNothing)
		var other *askOtherError
		if errors.As(err, &other) && named == "" && other.peer != d.s.cfg.Self && !slices.Contains(before, other.peer) {
			// The fetcher does not know the package, and names the peer
			// that asked it for the chunk before: asked next, once per
			// chunk, whether it holds the chunk (it may still be fetching
			// it; then the next in rank is asked as before).
			named = other.peer
			before = slices.Insert(slices.Clone(before), k+1, named)
		}
		if errors.Is(err, errPullSkipped) {
			continue
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err == nil {
			verr := ref.Verify(data)
			if verr == nil && !d.deliverFrom(i, policy.OriginPeer, f, data, sent) {
				d.s.ctr.dupPull.Add(int64(len(data)))
			}
			if raw != nil {
				pullBufs.Put(raw) // stored, or not wanted: nothing refers to it
			}
			if verr != nil {
				d.s.chunks[fromPeers][failed].Add(1)
				d.banFetcher(f, verr)
				continue
			}
			return true, nil
		}
		if errors.Is(err, metadata.ErrNotFound) {
			return false, err // the origin's answer, through the fetcher
		}
		if errors.Is(err, errPullOriginDown) {
			// The fetcher cannot reach the origin; we may (its site may
			// be cut off from it): the next in rank, or we, ask it.
			d.skipFetcher(f)
		}
		if d.sessionBrings(i) {
			// A session peer came to hold the chunk while the fetcher
			// failed (cut off, or slow to send it on a loaded host): it
			// comes from there, not from the next in rank's origin
			// request.
			return false, errSessionBrings
		}
		d.s.log.Debug("fetcher did not serve the chunk; next in rank", "fetcher", f, "chunk", ref.CID, "err", err)
	}
	return false, nil
}

// errSessionBrings: an origin request's fetchers did not serve its chunk,
// and a session peer holds it, or is sending it: the request is given
// back, not sent to the next fetcher or the origin.
var errSessionBrings = errors.New("chunk held by a session peer")

// sessionBrings reports whether a session peer of the download holds
// chunk i (and the chunk may be taken from it: overtakes), or a session
// request for it is open.
func (d *download) sessionBrings(i int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.finished || d.picker.PeerAsked(i) {
		return !d.finished
	}
	for p := range d.peers {
		if d.picker.PeerHas(p, i) && d.overtakes(p) {
			return true
		}
	}
	return false
}

// firstRankedAsk returns whom to ask for chunk i, which we rank first
// for, before the origin, and only whether they hold the chunk already
// (pullHeldOnly: a host arriving after the others hold the package takes
// it from them; in a flash crowd nobody waits on another's fetch): the
// host that asked us for it while we did not know the package (it
// fetched the chunk elsewhere); else the next in rank, unless its
// have-map is known: it lacks the chunk then, or the chunk would not be
// asked of the origin (a flash crowd's hosts would each wait a round
// trip before every origin request). d.mu is held.
func (d *download) firstRankedAsk(i int) ([]PeerID, byte) {
	if a := d.s.refusedAsker(d.c, i); a != "" && a != d.s.cfg.Self && !d.silent[a] && !d.banned[a] {
		return []PeerID{a}, pullHeldOnly
	}
	if next := d.fetchers.After(d.keys[i]); next != "" && !d.picker.PeerKnown(next) {
		return []PeerID{next}, pullHeldOnly
	}
	return nil, 0
}

// pullHeard records that fetcher f of chunk i's pull-through request
// answered; if a peer has the chunk by now, the request is cancelled
// (pullsOvertaken), unless f is sending the chunk already: a request
// cancelled then loses the bytes on their way, and the peer is asked
// for the chunk only once a session's round trip and the peer's upload
// queue allow.
func (d *download) pullHeard(f PeerID, i int, sending bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.unheard, f)
	if sending {
		delete(d.heard, i) // overtaken no more
		// Not asked of a session peer in the end game meanwhile.
		d.picker.Streaming(i, policy.OriginPeer)
		return
	}
	if d.heard == nil {
		d.heard = make(map[int]PeerID)
	}
	d.heard[i] = f
	for p := range d.peers {
		if d.picker.PeerHas(p, i) && d.overtakes(p) {
			d.overtake(i)
			return
		}
	}
}

// pullsOvertaken cancels the pull-through requests open for chunk i
// (i < 0: for every chunk peer has), now that peer has it: the chunk
// comes from the peer, not from a fetcher that may be waiting for a peer
// of its own to send it, or for the origin. Only requests whose fetcher
// has answered, and is not sending the chunk yet, are cancelled: one
// that has said nothing is left to find it silent (pullIdle), so that
// the requests waiting for it are not sent to a dead fetcher meanwhile.
// d.mu is held.
func (d *download) pullsOvertaken(peer PeerID, i int) {
	if !d.overtakes(peer) {
		return
	}
	for j := range d.heard {
		if j == i || i < 0 && d.picker.PeerHas(peer, j) {
			d.overtake(j)
		}
	}
}

// overtakes reports whether a chunk peer holds is taken from it rather
// than through the pull-through request open for it: not when peer is
// in another site while the site rule is on (two-level pull-through:
// our site's fetcher takes the chunk's one copy into the site; a copy
// from peer would be a second one). d.mu is held.
func (d *download) overtakes(peer PeerID) bool {
	return !d.picker.SitesOn() || d.picker.PeerLocal(peer)
}

// overtake cancels the pull-through request for chunk j, unless its
// fetcher holds the chunk (it sends it at once; asked again as a peer, it
// would send it twice). d.mu is held.
func (d *download) overtake(j int) {
	if f := d.heard[j]; d.picker.PeerHas(f, j) {
		return
	}
	if c := d.originCancel[j]; c != nil {
		c()
	}
}

// errPullSkipped: the fetcher was ranked no more while the request waited
// its turn.
var errPullSkipped = errors.New("fetcher skipped")

// pullOne sends one pull-through request to f once it is f's turn
// (Swarm.askSlot), unless f was found silent meanwhile; a silent f is
// ranked no more (skipFetcher) before its slot is given back. The chunk
// is in a buffer of bufs (nil: a new one), returned with it.
func (d *download) pullOne(ctx context.Context, f PeerID, i int, ref metadata.ChunkRef, flags byte, bufs *pool.BufferPool) ([]byte, []byte, error) {
	release, err := d.s.askSlot(ctx, f)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	d.mu.Lock()
	skip := d.silent[f] || d.banned[f]
	// A request to f unanswered for nearly pullIdle, and nothing else
	// from f meanwhile (pullalive.go): f is about to be found silent; a
	// request sent now would reach a dead fetcher after that (a slot
	// freed by a cancelled request is taken at once).
	if t, ok := d.unheard[f]; ok && time.Since(t) >= d.s.pullIdle()*9/10 && d.s.alive.silentFor(f, d.s.pullIdle()*9/10) {
		skip = true
	}
	var sent time.Time // the unheard mark this request set
	if !skip {
		if d.unheard == nil {
			d.unheard = make(map[PeerID]time.Time)
		}
		if _, ok := d.unheard[f]; !ok {
			sent = time.Now()
			d.unheard[f] = sent
		}
	}
	d.mu.Unlock()
	if skip {
		return nil, nil, errPullSkipped
	}
	answered := false // d.mu
	data, raw, err := d.s.pull(ctx, f, d.c, i, ref, flags, bufs, func(sending bool) {
		d.pullHeard(f, i, sending)
		d.mu.Lock()
		if !answered {
			answered = true
			d.pullOnWay(i, f, true)
		}
		d.mu.Unlock()
	})
	d.mu.Lock()
	delete(d.heard, i)
	if t, ok := d.unheard[f]; ok && !sent.IsZero() && t.Equal(sent) {
		delete(d.unheard, f) // this request is over, answered or not
	}
	if answered {
		d.pullOnWay(i, f, false)
		if err != nil && len(d.pulling[i]) == 0 {
			// Those waiting for the chunk (pullData) look again at how it
			// may still come.
			d.wakeWaiters(i)
		}
	}
	d.mu.Unlock()
	if errors.Is(err, errPullSilent) {
		// Before the slot goes to a request waiting for it.
		d.skipFetcher(f)
	}
	return data, raw, err
}

// upstreamFirst reports whether we rank first in our site for chunk i
// and another site's member is its global fetcher (two-level
// pull-through): every request for the chunk goes there, a forwarded
// one too (each hop goes to a member of larger weight for the chunk, so
// requests never go round), and one whose asker gave up on another of
// our site's members (who ranks before us in the asker's view, not in
// ours).
func (d *download) upstreamFirst(i int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fetchers == nil || d.fetchers.Alone() || d.keys == nil {
		return false
	}
	k := d.keys[i]
	return len(d.fetchers.Before(k, 1, nil)) == 0 && len(d.fetchers.Upstream(k, 1, nil)) > 0
}

// pullBufs recycles the buffers of chunks pulled for our own download
// (pullShared with own), as chunkBufs does a session's.
var pullBufs pool.BufferPool

// sharedPull is one pull-through request for a chunk, shared by every
// caller that asks the same fetcher for it meanwhile: our download's own
// origin request and the requests of our site's hosts we forward
// (forward). A site's fetcher takes one copy of the chunk in from the
// global fetcher, however many of its site's hosts ask it at once.
type sharedPull struct {
	f       PeerID
	done    chan struct{}
	data    []byte
	err     error
	waiters int
	cancel  context.CancelFunc
}

// pullShared asks fetcher f for chunk i (pullOne, with flags), joined,
// with two-level pull-through, with a request to f for it under way. The request runs until it ends
// or every caller waiting for it has gone.
//
// With own (the caller alone will read the chunk, and without two-level
// pull-through no other caller shares the request) the chunk is in a
// buffer of pullBufs, returned with it: the caller puts it back once it
// has stored the chunk (a VerifiedChunkSink keeps no reference to it).
// Otherwise the buffer is nil and the chunk stays the callers'.
func (d *download) pullShared(ctx context.Context, f PeerID, i int, flags byte, own bool) ([]byte, []byte, error) {
	d.mu.Lock()
	two := d.twoLevel
	d.mu.Unlock()
	if !two {
		// Without sites a host's own requests and those it forwards go
		// to one fetcher only while members views differ: each its own.
		var bufs *pool.BufferPool
		if own {
			bufs = &pullBufs
		}
		return d.pullOne(ctx, f, i, d.pkg.refs[i], flags, bufs)
	}
	// A request our site's hosts made of us before this download began
	// may be under way to the chunk's global fetcher (pullData).
	if data, err := d.s.upstreamFetch(ctx, "", d.c, i, d.pkg.refs[i]); !errors.Is(err, errNoUpstreamCall) {
		return data, nil, err
	}
	d.mu.Lock()
	c := d.shared[i]
	if c == nil || c.f != f {
		cctx, cancel := context.WithCancel(d.ctx)
		c = &sharedPull{f: f, done: make(chan struct{}), cancel: cancel}
		ref := d.pkg.refs[i]
		if !d.s.goroutine(func() {
			data, _, err := d.pullOne(cctx, f, i, ref, flags, nil)
			d.mu.Lock()
			c.data, c.err = data, err
			if d.shared[i] == c {
				delete(d.shared, i)
			}
			d.mu.Unlock()
			cancel()
			close(c.done)
		}) {
			d.mu.Unlock()
			cancel()
			return nil, nil, ErrClosed
		}
		if d.shared == nil {
			d.shared = make(map[int]*sharedPull)
		}
		d.shared[i] = c
	}
	c.waiters++
	d.mu.Unlock()
	select {
	case <-c.done:
		return c.data, nil, c.err
	case <-ctx.Done():
		d.mu.Lock()
		if c.waiters--; c.waiters == 0 {
			// Nobody wants it any more: a later caller asks afresh.
			c.cancel()
			if d.shared[i] == c {
				delete(d.shared, i)
			}
		}
		d.mu.Unlock()
		return nil, nil, ctx.Err()
	}
}

// banFetcher bans a fetcher whose chunk failed its hash, as a peer whose
// chunk does.
func (d *download) banFetcher(f PeerID, err error) {
	d.mu.Lock()
	d.banned[f] = true
	if ss := d.peers[f]; ss != nil {
		delete(d.peers, f)
		d.picker.PeerLeft(f)
		ss.dl.CompareAndSwap(d, nil)
		defer ss.close(err)
	}
	d.memberSet = nil // rank again without it
	d.mu.Unlock()
	d.s.log.Warn("peer banned: corrupt chunk through pull-through", "peer", f, "manifest", d.c, "err", err)
	d.s.cfg.Network.ClosePeer(f)
	d.updateMembers(nil)
}

// skipFetcher ranks the members again without f, which did not answer a
// pull-through request in time: a dead or stalled fetcher costs the
// download one timeout, not one per chunk it ranks first for.
func (d *download) skipFetcher(f PeerID) {
	d.mu.Lock()
	if d.silent[f] {
		d.mu.Unlock()
		return
	}
	d.silent[f] = true
	d.memberSet = nil
	d.mu.Unlock()
	d.s.log.Debug("fetcher silent: ranked no more for this download", "fetcher", f, "manifest", d.c)
	d.updateMembers(nil)
}

// pullOnWay records a pull-through request to f for chunk i whose
// fetcher answered (on), or its end (!on). d.mu is held.
func (d *download) pullOnWay(i int, f PeerID, on bool) {
	if on {
		if d.pulling == nil {
			d.pulling = make(map[int][]PeerID)
		}
		d.pulling[i] = append(d.pulling[i], f)
		return
	}
	fs := d.pulling[i]
	if k := slices.Index(fs, f); k >= 0 {
		fs = slices.Delete(fs, k, k+1)
	}
	if len(fs) == 0 {
		delete(d.pulling, i)
	} else {
		d.pulling[i] = fs
	}
}

// awaitChunk returns a channel closed once chunk i is stored or the
// download ends, if a peer is sending chunk i to us, a fetcher other
// than asker that answered our pull-through request is fetching or
// sending it (pulled), or we are storing it; nil otherwise (the chunk is
// not on its way). The channel is closed too when the last pull-through
// request for it ends without it. A request to asker does not count:
// asker, whose members view differs from ours, waits on us (pullData).
func (d *download) awaitChunk(i int, asker PeerID) (ch <-chan struct{}, pulled bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pulled = slices.ContainsFunc(d.pulling[i], func(f PeerID) bool { return f != asker })
	if d.finished || d.picker.Have(i) || !d.storing.Has(i) && !d.picker.PeerAsked(i) && !pulled {
		return nil, false
	}
	c := make(chan struct{})
	if d.waiters == nil {
		d.waiters = make(map[int][]chan struct{})
	}
	d.waiters[i] = append(d.waiters[i], c)
	return c, pulled
}

// wakeWaiters closes chunk i's waiters (d.mu held).
func (d *download) wakeWaiters(i int) {
	for _, ch := range d.waiters[i] {
		close(ch)
	}
	delete(d.waiters, i)
}

// forward serves asker's pull-through request for chunk i through the
// member we rank first for it, when that is neither us nor the asker:
// the chunk's global fetcher, when we are our site's (two-level
// pull-through); else one the asker does not see yet (members views
// differ while the overlay is made), whose other askers would make it
// fetch a second copy from the origin. The request joins our own to
// that member for the chunk, if one is open (pullShared). The
// chunk goes into our download too. A member that cannot reach the
// origin (pullOriginDown) is ranked no more for this download, and the
// request goes to the member ranked first then (up to maxPullRanks). nil
// when there is no such member or it did not serve the chunk: then we
// fetch it as the asker's fetcher.
func (d *download) forward(ctx context.Context, asker PeerID, i int) []byte {
	ref, sent := d.pkg.refs[i], time.Now()
	var f PeerID
	var data []byte
	for range maxPullRanks {
		d.mu.Lock()
		before := d.fetchersBefore(i)
		d.mu.Unlock()
		if len(before) == 0 || before[0] == asker || before[0] == f {
			return nil
		}
		f = before[0]
		var err error
		data, _, err = d.pullShared(ctx, f, i, pullForwarded, false)
		if err == nil {
			break
		}
		d.s.log.Debug("forwarded pull-through request not served", "fetcher", f, "chunk", ref.CID, "err", err)
		if !errors.Is(err, errPullOriginDown) || ctx.Err() != nil {
			return nil
		}
		// f cannot reach the origin: passed over for this download's
		// chunks (as pullFetchers does), and the request goes to the
		// member ranked next, as our own would: one copy from the origin
		// for every site, not one per site whose fetcher f let down.
		d.skipFetcher(f)
	}
	if data == nil {
		return nil
	}
	if err := ref.Verify(data); err != nil {
		d.s.chunks[fromPeers][failed].Add(1)
		d.banFetcher(f, err)
		return nil
	}
	d.s.goroutine(func() { d.deliverFrom(i, policy.OriginPeer, f, data, sent) })
	return data
}

// claimEvery is how often renewClaims may run: often enough that a
// chunk entering the origin window is claimed by its owner well within a
// non-owner's fallback wait (policy's OriginFallbackDelay, 2 s at
// least), and its claims renewed well within a peer's PendingTimeout.
func (s *Swarm) claimEvery() time.Duration {
	return min(s.cfg.RequestTimeout/3, 500*time.Millisecond)
}

// renewClaims says Fetching, every claimEvery, for the chunks this host
// is fetching from the origin itself and for the window's chunks it owns
// and will fetch next (policy.Picker.OwnedQueued), while its origin
// requests make progress: the origin sent it a chunk within
// RequestTimeout, or the download is younger than that. A peer's Picker
// keeps a claim RequestTimeout (PendingTimeout) from the latest, so
// behind a slow origin, whose queue holds our requests longer than that,
// the peers wait for our copy instead of fetching a second one. A host
// cut off from the origin gets no chunk from it and renews nothing: its
// claims expire as before. d.mu is held.
func (d *download) renewClaims(now time.Time) {
	if now.Sub(d.claimedAt) < d.s.claimEvery() || !d.originDownSince.IsZero() || d.s.cfg.Origin == nil {
		return
	}
	d.claimedAt = now
	at := d.s.originAt.Load()
	fresh := at != 0 && now.Sub(time.Unix(0, at)) <= d.s.cfg.RequestTimeout
	if !fresh && (at != 0 || now.Sub(d.started) > d.s.cfg.RequestTimeout) {
		return
	}
	var fetching []uint32
	for i := range d.originCancel {
		if len(d.fetchersBefore(i)) == 0 {
			fetching = append(fetching, uint32(i))
		}
	}
	d.queued = d.picker.OwnedQueued(now, d.queued[:0])
	for _, i := range d.queued {
		fetching = append(fetching, uint32(i))
	}
	for len(fetching) > 0 {
		n := min(len(fetching), MaxIndicesPerMessage)
		d.broadcast(&Message{Type: MsgFetching, Indices: fetching[:n]}, "")
		fetching = fetching[n:]
	}
}
