package swarm

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
)

// DownloadRequest says which package Download fetches and where it goes.
type DownloadRequest struct {
	// Manifest is the package's manifest CID; M its manifest, verified by
	// the caller against signed metadata (Download checks that M's CID is
	// Manifest).
	Manifest cid.Cid
	M        *metadata.Manifest
	// Have reports chunks the store already holds (a resumed download);
	// nil: none.
	Have func(c cid.Cid) bool
	// Sink receives every chunk, verified, exactly once. It may be called
	// concurrently. Chunks it accepted must be readable from the Swarm's
	// Store from then on (they are advertised to peers).
	Sink metadata.ChunkSink
	// Progress, if set, is called (serialised) with the bytes of unique
	// chunks held so far and their total.
	Progress func(done, total int64)
}

// DownloadStats describes a finished download.
type DownloadStats struct {
	// The chunk bytes the download stored, by source as Stats counts
	// them: from the origin if this host fetched them from it.
	FromPeers  int64
	FromOrigin int64
	Peers      int // distinct peers traded with
	Banned     []PeerID
	Dropped    []PeerID // peers dropped after MaxStrikes timeouts or failures
	Elapsed    time.Duration
}

// download is one running Download.
type download struct {
	s      *Swarm
	c      cid.Cid
	pkg    *pkgInfo
	req    DownloadRequest
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // origin fetches and the provider finder
	done   chan struct{}
	progMu sync.Mutex

	mu         sync.Mutex
	picker     *policy.Picker
	peers      map[PeerID]*session
	peersSeen  map[PeerID]bool
	seed       uint64 // the download's random choices (downloadSeed)
	banned     map[PeerID]bool
	dropped    map[PeerID]bool
	connecting map[PeerID]bool
	storing    policy.Bitfield
	// endgameAsked: chunks asked of a session peer while another request
	// of them was open; viaOrigin: chunks kept (or being stored) from an
	// origin request (a pull-through answer or the origin). Both only
	// say what a duplicate was (Counters).
	endgameAsked policy.Bitfield
	viaOrigin    policy.Bitfield
	originCancel map[int]context.CancelFunc
	originNext   time.Time // origin backoff
	originFails  int
	originErr    error
	// originDownSince is when the origin became unreachable for this
	// download (zero while it answers): one probe at a time is sent to it
	// then, with backoff, and OriginDeadline counts from here (or from the
	// last chunk, if later).
	originDownSince time.Time
	lastProgress    time.Time
	finished        bool
	finishedAt      time.Time // when finished was set
	err             error
	fromPeers       int64
	fromOrigin      int64
	doneBytes       int64
	totalBytes      int64
	timeouts        []policy.Request
	withdrawn       []policy.Request
	rank            []PeerID

	// Cooperative origin fetching (pull.go): coop is on when the network
	// serves pull-through requests. fetchers ranks the members for each
	// chunk (keys[i] is chunk i's key); membersAt is when the members
	// were last asked for, memberSet the Picker's members (providers
	// found included) as last given.
	coop      bool
	fetchers  *policy.Fetchers
	keys      []uint64
	membersAt time.Time
	memberSet map[PeerID]bool
	near      string              // the members in our site, as memberSites last said
	twoLevel  bool                // fetchers rank in two levels (memberSites)
	shared    map[int]*sharedPull // pull-through requests under way, by chunk
	providers []PeerID
	silent    map[PeerID]bool // fetchers that did not answer in time
	claimedAt time.Time       // when renewClaims last ran
	queued    []int           // renewClaims' OwnedQueued
	started   time.Time
	// sessionsFrom: a download that opens no session before this time
	// (zero: none deferred), and deferred the peers it would have opened
	// sessions to meanwhile (sessionDeferral).
	sessionsFrom time.Time
	deferred     []PeerID

	// waiters are closed once their chunk is stored or the download ends
	// (awaitChunk), or a pull-through request for it that its fetcher
	// answered ends without it (pullOne).
	waiters map[int][]chan struct{}
	// pulling: per chunk, the fetchers of the pull-through requests in
	// flight that have answered (pullOne): the chunk is on its way.
	pulling map[int][]PeerID
	// heard: the chunks whose pull-through request in flight has heard
	// from its fetcher, and the fetcher (coop.go, pullsOvertaken).
	heard map[int]PeerID
	// unheard: per fetcher, when a pull-through request was sent to it
	// that it has not answered, nor any sent since (coop.go, pullOne).
	unheard map[PeerID]time.Time

	// sem bounds the chunks being verified and stored at once, across the
	// download's sessions (twice deliverWorkers).
	sem chan struct{}
	// sinkKeepsNothing: req.Sink is a VerifiedChunkSink, so a received
	// chunk's buffer may be reused once delivered.
	sinkKeepsNothing bool
}

// Per session, deliverWorkers(maxChunk) goroutines verify and store
// received chunks concurrently and as many more chunks may wait for them;
// per download, at most twice that many chunks are being verified and
// stored at once (more would only share the CPU and make every chunk
// late). A store with group commit syncs once per group, so it needs many
// PutChunk calls at once to make large groups: small chunks get more
// workers, up to deliverMaxWorkers, and the memory they hold stays about
// deliverBytes per session whatever the chunk size. deliverBytes is large
// enough that a store whose group syncs take tens of milliseconds still
// sees groups of many chunks (with fewer bytes the committer is never
// idle, its groups are small, and the stream stalls behind it).
// docs/transfer-tuning.md has the figures behind these values.
const (
	deliverBytes      = 16 << 20
	deliverMinWorkers = 4
	deliverMaxWorkers = 256
)

func deliverWorkers(maxChunk int) int {
	return min(max(deliverBytes/max(maxChunk, 1), deliverMinWorkers), deliverMaxWorkers)
}

// A request to the origin stays open until its chunk is stored, so with
// small chunks OriginParallel requests carry few bytes and the store's
// commit groups stay small (at most OriginParallel chunks per file-system
// sync). Packages of chunks smaller than originScaleBytes on average get
// proportionally more requests, up to originScaleMax times
// OriginParallel: about as many bytes in flight, in more, smaller
// requests.
const (
	originScaleBytes = 256 << 10
	originScaleMax   = 8
)

// base is Config.OriginParallel (New's default applied).
func originParallel(base int, meanChunk int64) int {
	return base * int(min(max(originScaleBytes/max(meanChunk, 1), 1), originScaleMax))
}

// VerifiedChunkSink is an optional ChunkSink extension: a sink that
// implements it is handed chunks Download already verified against their
// CID and length, so it need not hash them again. It keeps no reference to
// data once PutVerifiedChunk returns (the swarm reuses the buffer).
type VerifiedChunkSink interface {
	PutVerifiedChunk(c cid.Cid, data []byte) error
}

// Download fetches the package req names: from peers found through
// Discovery (rarest chunk first, pipelined, every chunk verified before
// req.Sink sees it) and from the origin for the chunks no peer has. It
// provides the package at once (one record) so that peers find this host,
// serves the chunks it holds to them while it runs, and returns when every
// chunk is in req.Sink, or ctx ends, or no source made progress for
// NoProgressTimeout (ErrNoSource). Sessions it opened stay up afterwards to
// serve peers still downloading. A swarm without Network keeps its full
// origin window from the start (no host to share the origin with) and
// fails when the origin twice in a row lacks a chunk or sends one corrupt.
func (s *Swarm) Download(ctx context.Context, req DownloadRequest) (*DownloadStats, error) {
	start := time.Now()
	if req.M == nil || req.Sink == nil || !req.Manifest.Defined() {
		return nil, errors.New("swarm download: manifest, its CID and a sink are required")
	}
	if got, err := req.M.CID(); err != nil || !got.Equals(req.Manifest) {
		return nil, fmt.Errorf("swarm download %s: %w: manifest CID is %s", req.Manifest, metadata.ErrHashMismatch, got)
	}
	d := s.newDownload(req, start)
	if d.picker.Done() {
		d.report()
		s.Announce(req.Manifest)
		return d.stats(start), nil
	}
	if d.coop {
		// The members, before a session or the first schedule can ask
		// the origin for anything.
		ms := d.pullMembers()
		d.mu.Lock()
		d.setMembers(ms, nil)
		d.mu.Unlock()
	}
	if err := s.addDownload(d); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, d.cancel)
	defer stop()
	d.run()
	sessions, err := d.end(ctx)
	d.mu.Lock()
	s.ctr.noteEnd(time.Since(d.finishedAt))
	d.mu.Unlock()
	if err != nil {
		return d.stats(start), fmt.Errorf("swarm download %s: %w", req.Manifest, err)
	}
	s.mu.Lock()
	s.held[req.Manifest] = true
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.setOurFull()
	}
	st := d.stats(start)
	s.log.Debug("package downloaded", "manifest", req.Manifest, "from_peers", st.FromPeers, "from_origin", st.FromOrigin, "peers", st.Peers, "banned", len(st.Banned), "elapsed", st.Elapsed)
	return st, nil
}

// newDownload prepares the download of req: its Picker knows the chunks
// the store already holds (req.Have).
func (s *Swarm) newDownload(req DownloadRequest, start time.Time) *download {
	pkg := newPkgInfo(req.M)
	n := len(pkg.refs)
	seed := s.downloadSeed()
	d := &download{
		s:            s,
		c:            req.Manifest,
		pkg:          pkg,
		req:          req,
		done:         make(chan struct{}),
		peers:        make(map[PeerID]*session),
		peersSeen:    make(map[PeerID]bool),
		banned:       make(map[PeerID]bool),
		dropped:      make(map[PeerID]bool),
		silent:       make(map[PeerID]bool),
		connecting:   make(map[PeerID]bool),
		storing:      policy.NewBitfield(n),
		endgameAsked: policy.NewBitfield(n),
		viaOrigin:    policy.NewBitfield(n),
		originCancel: make(map[int]context.CancelFunc),
		lastProgress: start,
		started:      start,
		seed:         seed,
		sem:          make(chan struct{}, 2*deliverWorkers(pkg.maxChunk)),
	}
	_, d.sinkKeepsNothing = req.Sink.(VerifiedChunkSink)
	parallel := originParallel(s.cfg.OriginParallel, pkg.meanChunk())
	initial := 0 // the Picker's slow start
	if s.cfg.Network == nil {
		initial = parallel // no other host shares the origin with us
	}
	_, pullNet := s.cfg.Network.(PullNetwork)
	d.coop = pullNet && !s.cfg.NoPullThrough && s.cfg.Origin != nil
	d.picker = policy.NewPicker(policy.PickerConfig{
		NumChunks:           n,
		ChunkLen:            func(i int) int64 { return pkg.refs[i].Length },
		Rand:                rand.New(rand.NewPCG(seed, seed>>1|1)),
		OriginParallel:      parallel,
		OriginInitialWindow: initial,
		RequestTimeout:      s.cfg.RequestTimeout,
		EndgameDelay:        s.endgameDelay(),
	})
	for i, r := range pkg.refs {
		d.totalBytes += r.Length
		if req.Have != nil && req.Have(r.CID) {
			d.picker.SetHave(i)
			d.doneBytes += r.Length
		}
	}
	if d.coop && n == 1 {
		d.sessionsFrom = start.Add(sessionDeferral * s.endgameDelay())
	}
	d.applySites(start)
	return d
}

// sessionDeferral: a download of a package of one chunk, with cooperative
// fetching on, opens its sessions only once it is this many end-game
// delays old (Swarm.endgameDelay: twice this host's mean response time)
// and still without its chunk. Its chunk comes through its fetcher
// (pull-through, which also asks a holder before the origin) nearly
// always first, while each session costs a stream, a Hello, two
// have-maps and goroutines on both sides for a chunk it rarely brings.
// A fetcher that is slow to answer still leaves the download its
// sessions, later.
const sessionDeferral = 4

// takeDeferred returns the peers whose sessions the download deferred,
// once they are due (d.mu held): from then on it connects at once.
func (d *download) takeDeferred(now time.Time) []PeerID {
	if d.sessionsFrom.IsZero() || now.Before(d.sessionsFrom) || d.finished {
		return nil
	}
	ps := d.deferred
	d.sessionsFrom, d.deferred = time.Time{}, nil
	return ps
}

// The end game's delay adapts to the time this host's requests take
// (policy.ResponseTimes.EndgameDelay): never less than an idle host's
// policy.DefaultEndgameDelay, never more than endgameMaxDelay of
// RequestTimeout (a peer that stopped answering is still passed by well
// before its request times out). Every download's Picker takes it when it
// starts and on every tick: a package of one chunk is in the end game
// from its first request, before its own requests measured anything.
const endgameMaxDelay = 4 // RequestTimeout/endgameMaxDelay

// endgameDelay is the end game's delay for this host now.
func (s *Swarm) endgameDelay() time.Duration {
	s.respMu.Lock()
	defer s.respMu.Unlock()
	return s.resp.EndgameDelay(policy.DefaultEndgameDelay, s.cfg.RequestTimeout/endgameMaxDelay)
}

// noteResponse records that a request of this host took d to bring its
// chunk.
func (s *Swarm) noteResponse(d time.Duration) {
	s.respMu.Lock()
	s.resp.Note(d)
	s.respMu.Unlock()
}

// downloadSeed seeds a download's random choices: at random, or, with
// Config.Seed, from the seed, this host and the download's sequence
// number (tests repeat their runs).
func (s *Swarm) downloadSeed() uint64 {
	seed := s.cfg.Seed
	if seed == 0 {
		return rand.Uint64()
	}
	h := fnv.New64a()
	h.Write([]byte(s.cfg.Self))
	return seed ^ (h.Sum64() + s.seq.Add(1))
}

// stats describes the download, started at start.
func (d *download) stats(start time.Time) *DownloadStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := &DownloadStats{FromPeers: d.fromPeers, FromOrigin: d.fromOrigin, Peers: len(d.peersSeen), Elapsed: time.Since(start)}
	for p := range d.banned {
		st.Banned = append(st.Banned, p)
	}
	for p := range d.dropped {
		st.Dropped = append(st.Dropped, p)
	}
	return st
}

// addDownload makes d the running download of its package, unless the
// Swarm is closed or the package is downloading already.
func (s *Swarm) addDownload(d *download) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.downloads[d.c] != nil {
		return fmt.Errorf("swarm download %s: %w", d.c, ErrDownloading)
	}
	s.downloads[d.c] = d
	d.ctx, d.cancel = context.WithCancel(s.ctx)
	return nil
}

// run provides the package, starts looking for peers and sends the first
// requests, then handles timeouts and retries on a tick until the
// download finishes or its context ends.
func (d *download) run() {
	d.s.provide(d.c)
	if d.s.cfg.Discovery != nil {
		d.wg.Add(1)
		go d.findPeers()
	}

	d.mu.Lock()
	d.schedule(time.Now())
	d.mu.Unlock()

	t := time.NewTicker(min(20*time.Millisecond, d.s.cfg.RequestTimeout/10))
	defer t.Stop()
	for {
		select {
		case <-d.done:
			return
		case <-d.ctx.Done():
			return
		case now := <-t.C:
			d.s.lag.note(time.Since(now), d.s.pullClaim())
			if d.coop && d.membersDue(now) {
				d.updateMembers(nil)
			}
			d.mu.Lock()
			d.tick(now)
			late := d.takeDeferred(now)
			d.mu.Unlock()
			for _, p := range late {
				d.connect(p)
			}
		}
	}
}

// end stops the download: its origin fetches and provider search return,
// it leaves the Swarm and its sessions. It returns the error that ended
// it (nil once every chunk is in the sink; ctx's cause, or ErrClosed,
// when it was stopped first) and the sessions of the package.
func (d *download) end(ctx context.Context) ([]*session, error) {
	s := d.s
	d.mu.Lock()
	err := d.err
	if !d.finished {
		d.finished = true
		err = context.Cause(ctx)
		if err == nil {
			err = ErrClosed
		}
	}
	peers := make([]*session, 0, len(d.peers))
	for _, ss := range d.peers {
		peers = append(peers, ss)
	}
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()

	s.mu.Lock()
	delete(s.downloads, d.c)
	var all []*session
	for _, ss := range s.sessions[d.c] {
		all = append(all, ss)
	}
	s.mu.Unlock()
	for _, ss := range peers {
		ss.dl.CompareAndSwap(d, nil)
	}
	return all, err
}

// findPeers asks Discovery for providers now, again after FindInterval/8,
// doubling the wait up to FindInterval (hosts that start together provide
// at about the same time, so the first answers miss some), and connects to
// those chosen (choosePeers: with a site, none known to be in another site
// beyond Config.CrossSitePeers), until the download ends. Every provider
// found (not only those it connects to) is a swarm member for the
// Picker's origin policy (SetMembers).
func (d *download) findPeers() {
	defer d.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	wait := d.s.cfg.FindInterval / 8
	var members, found []PeerID
	known := make(map[PeerID]bool)
	rng := rand.New(rand.NewPCG(d.seed>>1, d.seed|1))
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		grew := false
		for p := range d.s.cfg.Discovery.FindProviders(d.ctx, d.c) {
			if !known[p] && p != d.s.cfg.Self && p != policy.OriginPeer && p != "" {
				known[p] = true
				members = append(members, p)
				grew = true
			}
			// Each provider is chosen as it arrives: a slow lookup does
			// not hold the first sessions back.
			for _, q := range d.choosePeers(append(found[:0], p), rng) {
				d.connect(q)
			}
		}
		if grew {
			d.updateMembers(members)
		}
		t.Reset(wait)
		wait = min(2*wait, d.s.cfg.FindInterval)
	}
}

// connect opens a session to p unless it is us, known, banned, dropped,
// or the download has its fill of peers (peerLimit).
func (d *download) connect(p PeerID) {
	s := d.s
	if p == s.cfg.Self || p == policy.OriginPeer || p == "" {
		return
	}
	d.mu.Lock()
	if d.finished || d.banned[p] || d.dropped[p] || d.connecting[p] || d.peers[p] != nil ||
		len(d.peers)+len(d.connecting) >= d.peerLimit() {
		d.mu.Unlock()
		return
	}
	s.mu.Lock()
	_, exists := s.sessions[d.c][p]
	s.mu.Unlock()
	if exists {
		d.mu.Unlock()
		return
	}
	if !d.sessionsFrom.IsZero() {
		if !slices.Contains(d.deferred, p) {
			d.deferred = append(d.deferred, p)
		}
		d.mu.Unlock()
		return
	}
	d.connecting[p] = true
	d.mu.Unlock()
	started := s.goroutine(func() {
		ctx, cancel := context.WithTimeout(d.ctx, s.cfg.RequestTimeout)
		st, err := s.cfg.Network.OpenStream(ctx, p)
		cancel()
		d.mu.Lock()
		delete(d.connecting, p)
		d.mu.Unlock()
		if err != nil {
			s.log.Debug("cannot open swarm stream", "peer", p, "err", err)
			return
		}
		s.ctr.sessionsOpened.Add(1)
		newSession(s, p, st, true).run(d.c)
	})
	if !started {
		d.mu.Lock()
		delete(d.connecting, p)
		d.mu.Unlock()
	}
}

// minSessionPeers is the fewest peers a download opens sessions to
// (peerLimit) however few chunks its package has: a second in case the
// first is slow or goes away.
const minSessionPeers = 2

// peerLimit is how many peers the download opens sessions to:
// Config.MaxPeersPerDownload, but no more than its package has chunks
// (at least minSessionPeers). A peer is worth a session for the chunks
// it can send, and a package of k chunks keeps at most k peers busy at
// once; every session costs a stream, a Hello and two have-maps, and
// goroutines on both sides. An upgrade of hundreds of one-chunk packages
// among many hosts would otherwise open a session between every pair of
// hosts for every package, while each package's chunk comes through
// its fetcher (pull.go) or from the first peer that has it. Sessions
// that peers open to us count too once attached, but are not refused:
// the peer decides what it needs.
func (d *download) peerLimit() int {
	return min(d.s.cfg.MaxPeersPerDownload, max(minSessionPeers, len(d.pkg.refs)))
}

// schedule issues every request the Picker allows now: a batched Request
// to each peer with room in its pipeline (best peers first), then origin
// requests, announced to the peers with Fetching. d.mu is held.
func (d *download) schedule(now time.Time) {
	if d.finished {
		return
	}
	d.rank = d.rank[:0]
	for p := range d.peers {
		d.rank = append(d.rank, p)
	}
	d.rank = d.picker.RankPeers(d.rank)
	for _, p := range d.rank {
		var idx []uint32
		for len(idx) < MaxIndicesPerMessage {
			i, ok := d.picker.NextForPeer(p, now)
			if !ok {
				break
			}
			if d.picker.Outstanding(i) > 0 && slices.Contains(d.pulling[i], p) {
				// The end game would ask p for a chunk p is fetching
				// for us through our pull-through request: a second
				// copy of the same bytes from the same upload, which
				// slows every answer p owes. Nothing more of p this
				// round; once the pull ends the chunk is p's to ask.
				break
			}
			if d.picker.Outstanding(i) > 0 {
				d.endgameAsked.Set(i)
			}
			d.picker.Requested(i, p, now)
			idx = append(idx, uint32(i))
		}
		if len(idx) > 0 {
			d.peers[p].send(&Message{Type: MsgRequest, Indices: idx})
		}
	}
	if d.s.cfg.Origin == nil || now.Before(d.originNext) {
		return
	}
	var fetching []uint32
	for {
		if !d.originDownSince.IsZero() && d.picker.Inflight(policy.OriginPeer) > 0 {
			break // one probe at a time while the origin is unreachable
		}
		i, ok := d.picker.NextForOrigin(now)
		if !ok {
			break
		}
		d.picker.Requested(i, policy.OriginPeer, now)
		if len(d.fetchersBefore(i)) == 0 && d.originDownSince.IsZero() {
			// We fetch it from the origin ourselves; a chunk asked of its
			// fetcher is the fetcher's to announce. A probe of an origin
			// we cannot reach is not announced: it would keep the peers
			// that can reach it off the chunk.
			fetching = append(fetching, uint32(i))
		}
		ctx, cancel := context.WithCancel(d.ctx)
		d.originCancel[i] = cancel
		d.wg.Add(1)
		go d.fetchOrigin(ctx, i)
	}
	if len(fetching) > 0 {
		d.broadcast(&Message{Type: MsgFetching, Indices: fetching}, "")
	}
}

// broadcast sends m to every session of the package but the one with
// except. d.mu is held.
func (d *download) broadcast(m *Message, except PeerID) {
	d.s.mu.Lock()
	ss := make([]*session, 0, len(d.s.sessions[d.c]))
	for p, x := range d.s.sessions[d.c] {
		if p != except {
			ss = append(ss, x)
		}
	}
	d.s.mu.Unlock()
	for _, x := range ss {
		x.send(m)
	}
}

// fetchOrigin gets chunk i for an origin request: from its fetchers, in
// rank order (pullFetchers), then from the origin itself, unless a
// session peer holds the chunk or is sending it by then (sessionBrings):
// the request is then given back for the Picker to take it from the
// peers, and the fetchers that failed cost no copy from the origin.
func (d *download) fetchOrigin(ctx context.Context, i int) {
	defer d.wg.Done()
	ref := d.pkg.refs[i]
	sent := time.Now()
	d.mu.Lock()
	ranked := len(d.fetchersBefore(i)) > 0 // another member is to fetch it
	d.mu.Unlock()
	done, err := d.pullFetchers(ctx, i, sent)
	if done {
		return
	}
	if err == nil && ranked && d.sessionBrings(i) {
		err = errSessionBrings
	}
	if err == nil {
		if ranked {
			d.s.ctr.originFallbacks.Add(1)
		}
		var data []byte
		if data, err = d.s.originFetch(ctx, ref, nil); err == nil {
			if !d.deliver(i, policy.OriginPeer, data, sent) {
				d.s.ctr.dupOrigin.Add(int64(len(data)))
			}
			return
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// Whether we cancelled it is read before our own cancel below, which
	// only releases the request's context.
	cancelled := ctx.Err() != nil
	if c := d.originCancel[i]; c != nil {
		c()
		delete(d.originCancel, i)
	}
	if cancelled || d.finished {
		// We cancelled it (a peer delivered first) or the download ended.
		d.picker.Cancelled(i, policy.OriginPeer)
		return
	}
	if errors.Is(err, errSessionBrings) {
		// Not the origin's failure: the request is given back, and the
		// Picker takes the chunk from the session peers.
		d.picker.Cancelled(i, policy.OriginPeer)
		d.schedule(time.Now())
		return
	}
	d.picker.Failed(i, policy.OriginPeer)
	d.originFails++
	d.originErr = err
	if d.s.cfg.Network == nil && !originOutage(err) && d.originFails > 1 {
		// Without peers the origin is the only source: a chunk it lacks,
		// or sends corrupt, twice in a row will not come from anyone.
		d.finish(fmt.Errorf("chunk %s: %w", ref.CID, err))
		return
	}
	backoff := min(50*time.Millisecond<<min(d.originFails, 7), 5*time.Second)
	now := time.Now()
	d.originNext = now.Add(backoff)
	if originOutage(err) {
		if d.originDownSince.IsZero() {
			d.originDownSince = now
		}
		d.s.noteOrigin(err, sent, now)
	}
	d.s.log.Debug("origin chunk failed", "chunk", ref.CID, "err", err, "backoff", backoff)
	d.schedule(now)
}

// originOutage tells an origin that cannot be reached (refused, reset,
// stalled, an HTTP error status) from one that answered about the chunk
// (missing, corrupt, too long).
func originOutage(err error) bool {
	return !errors.Is(err, metadata.ErrNotFound) && !errors.Is(err, metadata.ErrHashMismatch) &&
		!errors.Is(err, metadata.ErrTooLarge) && !errors.Is(err, context.Canceled)
}

// progress records that part of chunk i arrived from ss.
func (d *download) progress(ss *session, i int, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.finished && d.peers[ss.peer] == ss && d.picker.Asked(i, ss.peer) {
		d.picker.Progress(ss.peer, now)
		d.picker.Streaming(i, ss.peer)
	}
}

// peerChunk verifies chunk i from ss and delivers it, or bans ss if it
// fails; false if we did not ask ss for it.
func (d *download) peerChunk(ss *session, i int, data []byte) bool {
	d.mu.Lock()
	asked := !d.finished && d.peers[ss.peer] == ss && d.picker.Asked(i, ss.peer)
	d.mu.Unlock()
	if !asked {
		d.countSessionDup(i, len(data), true)
		return false
	}
	if err := d.pkg.refs[i].Verify(data); err != nil {
		d.s.chunks[fromPeers][failed].Add(1)
		d.ban(ss, i, err)
		return true
	}
	if !d.deliver(i, ss.peer, data, time.Time{}) {
		d.countSessionDup(i, len(data), false)
	}
	return true
}

// noteResponse records how long the request for chunk i asked of asked
// took (an origin request: since sent, if known). d.mu is held.
func (d *download) noteResponse(i int, asked PeerID, sent, now time.Time) {
	if asked == policy.OriginPeer {
		if !sent.IsZero() {
			d.s.noteResponse(now.Sub(sent))
		}
	} else if age, ok := d.picker.RequestAge(i, asked, now); ok {
		d.s.noteResponse(age)
	}
}

// countSessionDup counts a chunk i of n bytes from a session peer that
// was not kept (late: its request was closed before it arrived).
func (d *download) countSessionDup(i, n int, late bool) {
	c := &d.s.ctr
	c.dupSession.Add(int64(n))
	if late {
		c.dupSessionLate.Add(int64(n))
	}
	d.mu.Lock()
	eg, via := d.endgameAsked.Has(i), d.viaOrigin.Has(i)
	d.mu.Unlock()
	if eg {
		c.dupSessionEndgame.Add(int64(n))
	}
	if via {
		c.dupSessionBehind.Add(int64(n))
	}
}

// ban excludes a peer that sent a corrupt chunk from this download and
// closes every connection to it.
func (d *download) ban(ss *session, i int, err error) {
	d.mu.Lock()
	d.banned[ss.peer] = true
	d.picker.Failed(i, ss.peer)
	if d.peers[ss.peer] == ss {
		delete(d.peers, ss.peer)
		d.picker.PeerLeft(ss.peer)
	}
	ss.dl.CompareAndSwap(d, nil)
	d.schedule(time.Now())
	d.mu.Unlock()
	d.s.log.Warn("peer banned: corrupt chunk", "peer", ss.peer, "manifest", d.c, "err", err)
	ss.close(fmt.Errorf("banned: %w", err))
	d.s.cfg.Network.ClosePeer(ss.peer)
}

// drop removes a peer that keeps failing (d.mu held).
func (d *download) drop(p PeerID) {
	ss := d.peers[p]
	d.dropped[p] = true
	delete(d.peers, p)
	d.picker.PeerLeft(p)
	if ss != nil {
		ss.dl.CompareAndSwap(d, nil)
		d.s.log.Info("peer dropped: repeated timeouts or failures", "peer", p, "manifest", d.c)
		ss.close(errors.New("dropped: repeated timeouts"))
	}
}

// deliver stores a verified chunk, once, and tells the peers. from is
// where it came from: a peer, or OriginPeer for the origin. It reports
// whether the chunk was kept (false: held or being stored already, or
// the download ended).
func (d *download) deliver(i int, from PeerID, data []byte, sent time.Time) bool {
	return d.deliverFrom(i, from, from, data, sent)
}

// deliverFrom is deliver of a chunk the Picker asked of asked (a peer, or
// OriginPeer) and whose bytes came from `from` (a chunk asked of the
// origin may come through a fetcher).
func (d *download) deliverFrom(i int, asked, from PeerID, data []byte, sent time.Time) bool {
	ref := d.pkg.refs[i]
	d.mu.Lock()
	if d.finished || d.picker.Have(i) || d.storing.Has(i) {
		d.mu.Unlock()
		return false
	}
	d.storing.Set(i)
	if asked == policy.OriginPeer {
		d.viaOrigin.Set(i)
	}
	d.mu.Unlock()
	var err error
	if vs, ok := d.req.Sink.(VerifiedChunkSink); ok {
		err = vs.PutVerifiedChunk(ref.CID, data)
	} else {
		err = d.req.Sink.PutChunk(ref.CID, data)
	}
	d.mu.Lock()
	d.storing.Clear(i)
	if d.finished {
		d.mu.Unlock()
		return true
	}
	d.wakeWaiters(i)
	if err != nil {
		d.finish(fmt.Errorf("store chunk %s: %w", ref.CID, err))
		d.mu.Unlock()
		return true
	}
	now := time.Now()
	n := int64(len(data))
	// Only an answer to a request sent after the outage began ends it: a
	// response already under way when the origin went down proves nothing.
	if from == policy.OriginPeer && !d.originDownSince.IsZero() && sent.After(d.originDownSince) {
		d.picker.OriginResumed(now)
		d.s.log.Info("origin answers again: download resumes", "manifest", d.c, "waited", now.Sub(d.originDownSince).Round(time.Millisecond))
		d.originDownSince = time.Time{}
	}
	src := d.s.countSource(ref.CID, from)
	d.s.chunks[chunkSource(src)][verified].Add(1)
	d.noteResponse(i, asked, sent, now)
	d.cancelOtherRequests(i, asked, now, n)
	if from == policy.OriginPeer {
		d.s.noteOrigin(nil, sent, now)
	}
	route := "origin"
	switch {
	case asked != policy.OriginPeer:
		d.s.ctr.keptSession.Add(n)
		route = "session"
	case from != policy.OriginPeer:
		d.s.ctr.keptPull.Add(n)
		route = "pull"
	}
	// One line per chunk kept, for tracing where a crowd's chunks went
	// (make validate-crowd keeps the daemons' debug logs).
	d.s.log.Debug("chunk kept", "manifest", d.c, "index", i, "route", route, "from", from, "src", src, "bytes", n)
	if src == policy.OriginPeer {
		d.fromOrigin += n
		d.s.bytesFromOrigin.Add(n)
	} else {
		d.fromPeers += n
		d.s.bytesFromPeers.Add(n)
	}
	// Per peer, what it sent us, even of a chunk counted from the origin
	// (acct.go); a chunk kept in memory counts for the peer it came from.
	peer := from
	if peer == policy.OriginPeer {
		peer = src
	}
	if peer != policy.OriginPeer {
		d.s.countPeer(peer, n, 0)
	}
	d.doneBytes += n
	d.lastProgress = now
	d.broadcast(&Message{Type: MsgHaveUpdate, Index: uint32(i)}, from)
	if d.picker.Done() {
		d.finish(nil)
	} else {
		d.schedule(now)
	}
	d.mu.Unlock()
	d.report()
	return true
}

// cancelOtherRequests tells the Picker that chunk i (n bytes) arrived
// for its request of asked, and cancels the chunk's other requests: the
// sessions' and the origin request, through a fetcher or not. d.mu is
// held.
func (d *download) cancelOtherRequests(i int, asked PeerID, now time.Time, n int64) {
	for _, p := range d.picker.Received(i, asked, now, n) {
		if p == policy.OriginPeer {
			if c := d.originCancel[i]; c != nil {
				c()
				delete(d.originCancel, i)
			}
		} else if ss := d.peers[p]; ss != nil {
			ss.cancelChunk(i)
		}
	}
	if asked == policy.OriginPeer {
		if c := d.originCancel[i]; c != nil {
			c()
			delete(d.originCancel, i)
		}
		d.originFails = 0
	}
}

func (d *download) report() {
	if d.req.Progress == nil {
		return
	}
	d.progMu.Lock()
	defer d.progMu.Unlock()
	d.mu.Lock()
	done, total := d.doneBytes, d.totalBytes
	d.mu.Unlock()
	d.req.Progress(done, total)
}

// finish ends the download (d.mu held).
func (d *download) finish(err error) {
	if d.finished {
		return
	}
	d.finished = true
	d.finishedAt = time.Now()
	d.err = err
	d.s.ctr.sessionsDeferred.Add(int64(len(d.deferred)))
	for _, c := range d.originCancel {
		c()
	}
	for i := range d.waiters {
		d.wakeWaiters(i)
	}
	close(d.done)
}

// tick handles timeouts and retries what can be retried (d.mu held).
func (d *download) tick(now time.Time) {
	if d.finished {
		return
	}
	d.applySites(now)
	d.renewClaims(now)
	d.picker.SetEndgameDelay(d.s.endgameDelay())
	d.timeouts = d.picker.Timeouts(now, d.timeouts[:0])
	for _, r := range d.timeouts {
		ss := d.peers[r.Peer]
		if ss == nil {
			continue
		}
		ss.cancelChunk(r.Chunk)
		if d.picker.Score(r.Peer).Strikes >= d.s.cfg.MaxStrikes {
			d.drop(r.Peer)
		}
	}
	if !d.originDownSince.IsZero() {
		if waited := now.Sub(later(d.originDownSince, d.lastProgress)); waited > d.s.cfg.OriginDeadline {
			d.finish(fmt.Errorf("%w: %s unreachable since %s and no chunk from anyone for %v (deadline %v): %w",
				ErrOriginUnavailable, d.s.originName(), d.originDownSince.Format(time.RFC3339), waited.Round(time.Millisecond), d.s.cfg.OriginDeadline, d.originErr))
			return
		}
	} else if now.Sub(d.lastProgress) > d.s.cfg.NoProgressTimeout {
		err := ErrNoSource
		if d.originErr != nil {
			err = fmt.Errorf("%w (origin: %w)", ErrNoSource, d.originErr)
		}
		d.finish(err)
		return
	}
	d.schedule(now)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// peerJoined records ss's have-map.
func (d *download) peerJoined(ss *session, have policy.Bitfield) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.finished || d.peers[ss.peer] != ss || !d.admitSite(ss) {
		return
	}
	d.picker.PeerJoined(ss.peer, have)
	d.pullsOvertaken(ss.peer, -1)
	now := time.Now()
	d.applySites(now)
	d.schedule(now)
}

func (d *download) peerHave(ss *session, i int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.finished || d.peers[ss.peer] != ss {
		return
	}
	d.picker.PeerHave(ss.peer, i)
	d.pullsOvertaken(ss.peer, i)
	if d.picker.HasWithdrawn() {
		// Requests left waiting at slow peers, now that a faster one has
		// the chunk (Picker.Withdrawn): cancelled, asked elsewhere next.
		d.withdrawn = d.picker.Withdrawn(d.withdrawn[:0])
		for _, r := range d.withdrawn {
			if ps := d.peers[r.Peer]; ps != nil {
				ps.cancelChunk(r.Chunk)
			}
		}
	}
	d.schedule(time.Now())
}

func (d *download) peerPending(ss *session, idx []uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.finished || d.peers[ss.peer] != ss {
		return
	}
	now := time.Now()
	for _, i := range idx {
		d.picker.PeerPending(ss.peer, int(i), now)
	}
}

func (d *download) rejected(ss *session, idx []uint32, reason RejectReason) {
	if reason == RejectCancelled {
		// The answer to a Cancel of ours (the chunk stopped part way):
		// about a request already closed, or one asked again since.
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.finished || d.peers[ss.peer] != ss {
		return
	}
	for _, i := range idx {
		if !d.picker.Asked(int(i), ss.peer) {
			continue
		}
		if reason == RejectBusy {
			d.picker.Cancelled(int(i), ss.peer)
			continue
		}
		d.picker.PeerLacks(ss.peer, int(i))
		if d.picker.Failed(int(i), ss.peer) >= d.s.cfg.MaxStrikes {
			d.drop(ss.peer)
			break
		}
	}
	d.schedule(time.Now())
}

// detach forgets a session that ended.
func (d *download) detach(ss *session) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.peers[ss.peer] != ss {
		return
	}
	delete(d.peers, ss.peer)
	d.picker.PeerLeft(ss.peer)
	d.schedule(time.Now())
}
