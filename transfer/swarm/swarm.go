package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/time/rate"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
)

// Defaults for Config.
const (
	DefaultMaxPeersPerDownload = 32
	DefaultReprovideInterval   = 10 * time.Minute
	DefaultFindInterval        = 5 * time.Second
	DefaultMaxStrikes          = 3
	DefaultNoProgressTimeout   = 2 * time.Minute
	DefaultOriginDeadline      = 10 * time.Minute
	// DefaultOriginRequestTimeout is longer than the origin client's
	// minimum rate (16 KiB/s) lets a 4 MiB chunk take.
	DefaultOriginRequestTimeout = 5 * time.Minute
	maxUploadQueue              = 1024 // queued chunk requests per stream
	rateBurst                   = 256 << 10
	ratePiece                   = 64 << 10
)

// Config configures a Swarm. Zero fields take the defaults.
type Config struct {
	// Self is this host's peer ID. Required.
	Self PeerID
	// Network opens streams to peers; Discovery announces and finds
	// package holders. Both nil: a swarm without peers, whose only source
	// is Origin (see Download).
	Network   Network
	Discovery Discovery
	// Store is what this host serves: verified chunks only. Required.
	Store ChunkStore
	// Origin is the repository; nil means none (peers only).
	Origin ChunkSource
	// Logger; nil discards.
	Logger *slog.Logger
	// UploadRate and DownloadRate cap this host's swarm traffic in
	// bytes/s (token buckets shared by every stream); 0 is unlimited. The
	// origin is not counted.
	UploadRate, DownloadRate int64
	// RequestTimeout: a peer request unanswered this long is abandoned and
	// the peer takes a strike. Default 10s. Peer requests older than half
	// of it may be duplicated to the origin.
	RequestTimeout time.Duration
	// MaxPeersPerDownload caps the peers a download trades with. Default 32.
	MaxPeersPerDownload int
	// CrossSitePeers caps, once this host knows its site, the peers of
	// other sites a download trades with (policy.ChooseSitePeers and
	// AcceptSitePeer). Default policy.DefaultCrossSitePeers of
	// MaxPeersPerDownload.
	CrossSitePeers int
	// OriginParallel caps concurrent origin requests per download. Default 8.
	OriginParallel int
	// MaxStrikes: a peer with this many consecutive failures or timeouts is
	// dropped from the download. Default 3.
	MaxStrikes int
	// FindInterval: while downloading, look for providers again this often.
	// Default 5s.
	FindInterval time.Duration
	// ReprovideInterval: Run provides held packages again this often.
	// Default 10m.
	ReprovideInterval time.Duration
	// NoProgressTimeout: a download that receives no chunk this long fails
	// with ErrNoSource. Default 2m. It does not apply while the origin is
	// unreachable: OriginDeadline does.
	NoProgressTimeout time.Duration
	// OriginDeadline: a download that needs the origin while it is
	// unreachable (its requests fail other than with a missing or corrupt
	// chunk) waits for it, probing it with backoff, and fails with
	// ErrOriginUnavailable once this long has passed since the outage
	// began or the last chunk arrived from anyone, whichever is later.
	// Default 10m.
	OriginDeadline time.Duration
	// OriginRequestTimeout: one origin chunk request not ended after this
	// long is abandoned and fails as an outage would (silent drops: a
	// connect or read that never ends). Default 5m.
	OriginRequestTimeout time.Duration
	// Seed, if non-zero, seeds the per-download random choices (tests);
	// otherwise they are seeded randomly.
	Seed uint64
	// NoPullThrough turns cooperative origin fetching off: downloads ask
	// the origin themselves for every chunk no peer has (partitioned only
	// among the members Discovery finds), and the host serves no
	// pull-through requests. By default, with a Network that is a
	// PullNetwork, a download asks each chunk's fetcher among the
	// network's members for it first (pull.go).
	NoPullThrough bool
	// Manifests, if set, lets this host serve pull-through requests for
	// packages it neither holds nor downloads (it checks them against its
	// trusted metadata); nil serves only the packages it knows.
	Manifests ManifestResolver
	// Site is this host's configured site (policy.CheckSiteName), announced
	// to peers; "" infers one from RTT, if given. See sites.go.
	Site string
	// RTT returns the measured round trip to a peer, 0 if not measured.
	// Nil: no site inference.
	RTT func(PeerID) time.Duration
}

// Swarm trades package chunks with peers over the swarm protocol and uses
// the origin for what no peer can serve. It is safe for concurrent use.
// See the package documentation for the algorithm.
type Swarm struct {
	cfg    Config
	log    *slog.Logger
	up     *rate.Limiter
	upFair *fairShare // turns at up, fair between peers
	down   *rate.Limiter
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	seq    atomic.Uint64

	mu        sync.Mutex
	closed    bool
	downloads map[cid.Cid]*download
	sessions  map[cid.Cid]map[PeerID]*session
	pkgs      map[cid.Cid]*pkgInfo
	held      map[cid.Cid]bool
	peerStats map[PeerID]*PeerStats
	sites     siteView

	bytesFromPeers  atomic.Int64
	bytesFromOrigin atomic.Int64
	bytesUploaded   atomic.Int64

	// originDown is the start of the origin outage this host sees (zero
	// while it answers): its start is logged once at WARN, its end once
	// at INFO, however many chunks and downloads meet it. outage is
	// closed when one begins (a fresh one is made when it ends): a
	// pull-through request waiting on an origin request stops waiting
	// (originFetchFor).
	originMu   sync.Mutex
	originDown time.Time
	outage     chan struct{}
	// probing: a probe of an origin known unreachable is under way
	// (probeOrigin).
	probing atomic.Bool

	// chunks counts the chunks received, by source (fromPeers,
	// fromOrigin) and by verification result (verified, failed).
	chunks [2][2]atomic.Int64
	// ctr: streams opened and pull-through outcomes (counters.go).
	ctr counters
	// resp: how long this host's requests take, over all its downloads;
	// the end game's delay follows it (endgameDelay).
	respMu sync.Mutex
	resp   policy.ResponseTimes
	// alive: when each peer last sent us anything (pullalive.go).
	alive fetcherAlive
	// lag: how late this host's own goroutines run lately (pullalive.go).
	lag schedLag

	// Pull-through serving (pull.go): the requests served now, per peer
	// and in all; the origin fetches under way, by chunk; the chunks
	// fetched for peers, kept a while (oldest first).
	pullMu      sync.Mutex
	pulls       map[PeerID]int
	pullsAll    int
	originCalls map[cid.Cid]*originCall
	upCalls     map[cid.Cid]*originCall // upstreamFetch's, by chunk
	// originAt: when the origin last sent this host a chunk (unix ns;
	// 0 never), the sign that its origin requests make progress
	// (renewClaims).
	originAt atomic.Int64
	// upstreamAt: when a fetcher we asked last said its origin requests
	// progressed, or sent us a chunk (unix ns): a site's fetcher waiting
	// on the chunk's global fetcher passes the sign on to its askers
	// (keepalive).
	upstreamAt atomic.Int64
	cache      []cachedChunk
	cacheIdx   map[cid.Cid]int
	cacheBytes int
	// asking holds, per fetcher, a slot for each pull-through request
	// this host has open to it (at most maxAskPerFetcher, across its
	// downloads).
	asking map[PeerID]chan struct{}
	// refusedAsks: who asked for a chunk of a package this host did not
	// know (pull.go, noteRefused).
	refusedAsks map[pullAsk]refusedAsk
	// unconf: the chunks fetched for askers before their packages are
	// confirmed (pullref.go).
	unconf unconfirmedPulls
	// ledger: the chunks fetched from the origin that no download has
	// counted yet (acct.go).
	ledger originLedger
	// ring: the members' consistent-hash ring last made (memberRingCache).
	ring memberRingCache
}

// Indexes of Swarm.chunks.
const (
	fromPeers, fromOrigin = 0, 1
	verified, failed      = 0, 1
)

func chunkSource(p PeerID) int {
	if p == policy.OriginPeer {
		return fromOrigin
	}
	return fromPeers
}

// PeerStats counts the chunk bytes exchanged with one peer.
type PeerStats struct {
	Downloaded int64
	Uploaded   int64
}

// Stats is a snapshot of a Swarm's counters.
//
// BytesFromOrigin and BytesFromPeers split the chunk bytes this host's
// downloads stored, each chunk counted once, when stored: as from the
// origin if this host fetched it from the origin (for its own download,
// or for a peer's pull-through request, before or while its download
// ran), whatever the copy stored came through (a host that fetched a
// chunk for a peer may take it back from that peer); as from peers
// otherwise (sessions, a fetcher's pull-through answer, a chunk a site's
// fetcher took from its global fetcher). So every host's two add up to
// the bytes its downloads stored, and summed over the hosts that fetched
// and stored them, the bytes from the origin are those the origin sent,
// as long as no chunk was fetched from it twice. Not counted anywhere:
// chunks a host fetched for peers only (no download of its own stored
// them; they are in its BytesUploaded), and response bytes the origin
// sent that the host dropped (a cancelled request).
type Stats struct {
	BytesFromPeers  int64
	BytesFromOrigin int64
	BytesUploaded   int64
	// Chunks received that passed and that failed verification, by
	// source (the verified ones counted as the bytes are).
	ChunksVerifiedPeers, ChunksVerifiedOrigin int64
	ChunksFailedPeers, ChunksFailedOrigin     int64
	// Sessions is the number of open swarm streams.
	Sessions int
	Peers    map[PeerID]PeerStats
}

// pkgInfo is what the swarm knows of a package: its unique chunks.
type pkgInfo struct {
	refs     []metadata.ChunkRef
	maxChunk int
	bytes    int64 // of refs
}

// meanChunk is the mean length of the package's unique chunks.
func (pi *pkgInfo) meanChunk() int64 { return pi.bytes / int64(max(len(pi.refs), 1)) }

// sessionWorkers is how many deliverLoops and upload readers a session
// about the package runs: deliverWorkers and uploadReaders, but never more
// than the package has chunks (more could never all be busy). An upgrade
// of hundreds of one-chunk packages opens a session per package and peer:
// each needs one of each, not hundreds.
func (pi *pkgInfo) sessionWorkers() (deliver, readers int) {
	n := max(len(pi.refs), 1)
	return min(deliverWorkers(pi.maxChunk), n), min(uploadReaders, n)
}

func newPkgInfo(m *metadata.Manifest) *pkgInfo {
	pi := &pkgInfo{refs: m.UniqueChunks()}
	for _, r := range pi.refs {
		pi.maxChunk = max(pi.maxChunk, int(r.Length))
		pi.bytes += r.Length
	}
	return pi
}

// New checks cfg and returns a Swarm. Call Run (or Close) to stop it.
func New(cfg Config) (*Swarm, error) {
	switch {
	case cfg.Self == "":
		return nil, errors.New("swarm: no Self peer ID")
	case (cfg.Network == nil) != (cfg.Discovery == nil):
		return nil, errors.New("swarm: Network and Discovery go together")
	case cfg.Store == nil:
		return nil, errors.New("swarm: no Store")
	}
	if cfg.Site != "" {
		if err := policy.CheckSiteName(cfg.Site); err != nil {
			return nil, fmt.Errorf("swarm: %w", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = policy.DefaultRequestTimeout
	}
	if cfg.MaxPeersPerDownload <= 0 {
		cfg.MaxPeersPerDownload = DefaultMaxPeersPerDownload
	}
	if cfg.CrossSitePeers <= 0 {
		cfg.CrossSitePeers = policy.DefaultCrossSitePeers(cfg.MaxPeersPerDownload)
	}
	if cfg.OriginParallel <= 0 {
		cfg.OriginParallel = policy.DefaultOriginParallel
	}
	if cfg.MaxStrikes <= 0 {
		cfg.MaxStrikes = DefaultMaxStrikes
	}
	if cfg.FindInterval <= 0 {
		cfg.FindInterval = DefaultFindInterval
	}
	if cfg.ReprovideInterval <= 0 {
		cfg.ReprovideInterval = DefaultReprovideInterval
	}
	if cfg.NoProgressTimeout <= 0 {
		cfg.NoProgressTimeout = DefaultNoProgressTimeout
	}
	if cfg.OriginDeadline <= 0 {
		cfg.OriginDeadline = DefaultOriginDeadline
	}
	if cfg.OriginRequestTimeout <= 0 {
		cfg.OriginRequestTimeout = DefaultOriginRequestTimeout
	}
	s := &Swarm{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "swarm"),
		downloads: make(map[cid.Cid]*download),
		sessions:  make(map[cid.Cid]map[PeerID]*session),
		pkgs:      make(map[cid.Cid]*pkgInfo),
		held:      make(map[cid.Cid]bool),
		peerStats: make(map[PeerID]*PeerStats),

		pulls:       make(map[PeerID]int),
		originCalls: make(map[cid.Cid]*originCall),
		upCalls:     make(map[cid.Cid]*originCall),
		cacheIdx:    make(map[cid.Cid]int),
		asking:      make(map[PeerID]chan struct{}),
	}
	if cfg.UploadRate > 0 {
		s.up = rate.NewLimiter(rate.Limit(cfg.UploadRate), rateBurst)
		s.upFair = newFairShare()
	}
	if cfg.DownloadRate > 0 {
		s.down = rate.NewLimiter(rate.Limit(cfg.DownloadRate), rateBurst)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// goroutine runs f as a goroutine owned by the Swarm, unless it is closed.
func (s *Swarm) goroutine(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// Run provides the held packages every ReprovideInterval until ctx ends,
// then closes the Swarm (every stream, every download) and returns nil.
func (s *Swarm) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.ReprovideInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.Close()
			return nil
		case <-s.ctx.Done():
			s.Close()
			return nil
		case <-t.C:
			s.mu.Lock()
			var cs []cid.Cid
			for c := range s.held {
				cs = append(cs, c)
			}
			s.mu.Unlock()
			for _, c := range cs {
				s.provide(c)
			}
		}
	}
}

// Close stops the Swarm: running downloads fail with ErrClosed, every
// stream is reset, and every goroutine it started has returned when Close
// does.
func (s *Swarm) Close() {
	s.mu.Lock()
	s.closed = true
	var ss []*session
	for _, m := range s.sessions {
		for _, x := range m {
			ss = append(ss, x)
		}
	}
	s.mu.Unlock()
	s.cancel()
	for _, x := range ss {
		x.close(ErrClosed)
	}
	s.wg.Wait()
}

// Announce records that this host holds manifest completely (the store
// serves it) and provides it now, in the background, and on every
// ReprovideInterval.
func (s *Swarm) Announce(manifest cid.Cid) {
	s.mu.Lock()
	s.held[manifest] = true
	s.mu.Unlock()
	s.provide(manifest)
}

func (s *Swarm) provide(c cid.Cid) {
	if s.cfg.Discovery == nil {
		return
	}
	s.goroutine(func() {
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		defer cancel()
		if err := s.cfg.Discovery.Provide(ctx, c); err != nil && s.ctx.Err() == nil {
			s.log.Warn("provide failed", "manifest", c, "err", err)
		}
	})
}

// DownloadState is what a running download is doing.
type DownloadState struct {
	// Done and Total are the bytes of unique chunks held and needed.
	Done, Total int64
	// WaitingOriginSince is when the origin became unreachable for this
	// download; zero while it answers (or was not needed).
	WaitingOriginSince time.Time
}

// DownloadState reports the running download of manifest; false if none
// runs.
func (s *Swarm) DownloadState(manifest cid.Cid) (DownloadState, bool) {
	s.mu.Lock()
	d := s.downloads[manifest]
	s.mu.Unlock()
	if d == nil {
		return DownloadState{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return DownloadState{Done: d.doneBytes, Total: d.totalBytes, WaitingOriginSince: d.originDownSince}, true
}

// originName names the origin in logs and errors: its URL if it has one.
func (s *Swarm) originName() string {
	if u, ok := s.cfg.Origin.(interface{ URL() string }); ok {
		return u.URL()
	}
	return "the origin"
}

// noteOrigin records whether the origin answered a request sent at sent
// (err nil) or could not be reached, logging the start of an outage once
// at WARN and its end once at INFO. Only an answer to a request sent after
// the outage began ends it.
func (s *Swarm) noteOrigin(err error, sent, now time.Time) {
	s.originMu.Lock()
	defer s.originMu.Unlock()
	switch {
	case err != nil && s.originDown.IsZero():
		s.originDown = now
		close(s.outageLocked())
		s.log.Warn("origin unreachable: downloads take what peers have and wait for the rest", "origin", s.originName(), "err", err, "deadline", s.cfg.OriginDeadline)
	case err == nil && !s.originDown.IsZero() && sent.After(s.originDown):
		s.log.Info("origin reachable again: downloads resume", "origin", s.originName(), "down_for", now.Sub(s.originDown).Round(time.Millisecond))
		s.originDown = time.Time{}
		s.outage = make(chan struct{})
	}
}

// outageLocked returns s.outage, made if it was not yet (originMu held).
func (s *Swarm) outageLocked() chan struct{} {
	if s.outage == nil {
		s.outage = make(chan struct{})
	}
	return s.outage
}

// originState reports whether this host's origin is known unreachable
// (an origin request failed as an outage, and none sent since was
// answered), and returns the channel closed once it is.
func (s *Swarm) originState() (down bool, outage <-chan struct{}) {
	s.originMu.Lock()
	defer s.originMu.Unlock()
	return !s.originDown.IsZero(), s.outageLocked()
}

// ActiveDownload is a running Download as Active reports it.
type ActiveDownload struct {
	Manifest   cid.Cid
	Done       int64 // bytes delivered (this run)
	Total      int64 // bytes the download had to fetch
	FromPeers  int64 // by source, as Stats counts them
	FromOrigin int64
	Peers      int // peers traded with now
	// WaitingOriginSince is when the origin became unreachable for this
	// download; zero while it answers (or was not needed).
	WaitingOriginSince time.Time
}

// Active reports the running downloads.
func (s *Swarm) Active() []ActiveDownload {
	s.mu.Lock()
	ds := make([]*download, 0, len(s.downloads))
	for _, d := range s.downloads {
		ds = append(ds, d)
	}
	s.mu.Unlock()
	out := make([]ActiveDownload, 0, len(ds))
	for _, d := range ds {
		d.mu.Lock()
		out = append(out, ActiveDownload{Manifest: d.c, Done: d.doneBytes, Total: d.totalBytes,
			FromPeers: d.fromPeers, FromOrigin: d.fromOrigin, Peers: len(d.peers), WaitingOriginSince: d.originDownSince})
		d.mu.Unlock()
	}
	return out
}

// Stats returns a snapshot of the Swarm's counters.
func (s *Swarm) Stats() Stats {
	st := Stats{
		BytesFromPeers:  s.bytesFromPeers.Load(),
		BytesFromOrigin: s.bytesFromOrigin.Load(),
		BytesUploaded:   s.bytesUploaded.Load(),
		Peers:           make(map[PeerID]PeerStats),

		ChunksVerifiedPeers:  s.chunks[fromPeers][verified].Load(),
		ChunksVerifiedOrigin: s.chunks[fromOrigin][verified].Load(),
		ChunksFailedPeers:    s.chunks[fromPeers][failed].Load(),
		ChunksFailedOrigin:   s.chunks[fromOrigin][failed].Load(),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.sessions {
		st.Sessions += len(m)
	}
	for p, ps := range s.peerStats {
		st.Peers[p] = *ps
	}
	return st
}

// waitUpload waits until peer p may send n more bytes under the upload
// rate limit (at once without one). Turns at the limiter go to the peers
// waiting for it fairly by bytes (fairShare), so a peer with many streams
// or deep queues takes no more than its share while others wait.
func (s *Swarm) waitUpload(ctx context.Context, p PeerID, n int) error {
	if s.up == nil {
		return nil
	}
	if err := s.upFair.acquire(ctx, p, n); err != nil {
		return err
	}
	defer s.upFair.release()
	return s.up.WaitN(ctx, n)
}

func (s *Swarm) countPeer(p PeerID, down, up int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.peerStats[p]
	if ps == nil {
		ps = &PeerStats{}
		s.peerStats[p] = ps
	}
	ps.Downloaded += down
	ps.Uploaded += up
}

// pkg returns what is known of manifest c: a running download's package,
// or one the store holds.
func (s *Swarm) pkg(c cid.Cid) (*pkgInfo, *download, error) {
	s.mu.Lock()
	if d := s.downloads[c]; d != nil {
		s.mu.Unlock()
		return d.pkg, d, nil
	}
	if pi := s.pkgs[c]; pi != nil {
		s.mu.Unlock()
		return pi, nil, nil
	}
	s.mu.Unlock()
	m, err := s.cfg.Store.Manifest(c)
	if err != nil {
		return nil, nil, err
	}
	if got, err := m.CID(); err != nil || !got.Equals(c) {
		return nil, nil, fmt.Errorf("store manifest %s: %w", c, metadata.ErrHashMismatch)
	}
	pi := newPkgInfo(m)
	s.mu.Lock()
	if len(s.pkgs) > 256 {
		clear(s.pkgs)
	}
	s.pkgs[c] = pi
	s.mu.Unlock()
	return pi, nil, nil
}

// HandleStream serves an inbound swarm stream from p: it reads the Hello,
// answers with this host's have-map of that package, serves p's requests
// from the Store (at most UploadRate), and, if this host is downloading
// the package too, uses p as a source. It returns when the stream ends;
// call it from the network's stream-handler goroutine.
func (s *Swarm) HandleStream(p PeerID, st Stream) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		st.Reset()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	ss := newSession(s, p, st, false)
	ss.run(cid.Undef)
}
