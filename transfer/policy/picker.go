package policy

import (
	"math/rand/v2"
	"time"
)

// PeerID names a peer: the string form of its libp2p peer ID.
type PeerID string

// OriginPeer is the pseudo-peer that names the HTTP origin in Requested,
// Received and Failed. It is never a real peer (libp2p peer IDs are
// multihashes), and PeerJoined refuses it.
const OriginPeer PeerID = "origin"

// Defaults for PickerConfig.
const (
	DefaultEndgameThreshold    = 4
	DefaultEndgameDuplicates   = 2
	DefaultEndgameDelay        = 100 * time.Millisecond
	DefaultMaxInflightPerPeer  = 512
	DefaultMaxInflightBytes    = 4 << 20
	DefaultDownloadInflight    = 32 << 20
	DefaultOriginParallel      = 8
	DefaultOriginInitialWindow = 1
	DefaultRequestTimeout      = 10 * time.Second
	DefaultOriginJitter        = 50 * time.Millisecond
	DefaultInitialBDP          = 1 << 20 // bytes assumed in flight before a peer is measured
	scoreAlpha                 = 0.25    // EWMA weight of a new sample
)

// PickerConfig configures a Picker. Zero fields take the defaults.
type PickerConfig struct {
	// NumChunks is the number of chunks to download: the package's unique
	// chunks, indexed 0..NumChunks-1 in metadata.Manifest.UniqueChunks
	// order. Required.
	NumChunks int
	// ChunkLen returns chunk i's length; only its mean is used (to size
	// pipelines). Nil: every chunk is metadata.DefaultChunkSize long.
	ChunkLen func(i int) int64
	// Rand drives every random choice: tie-breaks and this host's private
	// origin order. Required for determinism; nil uses a fixed seed.
	Rand *rand.Rand
	// EndgameThreshold: once at most this many chunks are missing, a chunk
	// already requested from one peer may also be requested from another.
	// Default 4; negative disables the end game.
	EndgameThreshold int
	// EndgameDuplicates caps the outstanding requests of one chunk in the
	// end game (origin included). Default 2.
	EndgameDuplicates int
	// EndgameDelay: the end game asks another peer for a chunk only once
	// every open request of it is older than this: a request answered in
	// time is not duplicated. A package of a few chunks is in the end game
	// from its first request, and duplicating every request on the spot
	// moved many of its chunks twice. Default 100ms; negative: at once.
	EndgameDelay time.Duration
	// MaxInflightPerPeer caps PipelineDepth. Default 512: the byte caps
	// below bind first for chunks of 64 KiB and more; tiny chunks need
	// the count, since a request stays in flight until its chunk is
	// stored, and the store commits them in groups.
	MaxInflightPerPeer int
	// MaxInflightBytes and DownloadInflight cap PipelineDepth too, at the
	// larger of MaxInflightBytes and DownloadInflight/peers bytes of mean
	// chunk length (at least 2 chunks). A peer serves each session one
	// chunk at a time and all its sessions at once, so its share for us
	// shrinks as others ask it too, while the throughput we measured of it
	// does not yet: a deeper pipeline only queues our requests there, and
	// a chunk that became easier to get elsewhere (the end of a flash
	// crowd: everyone waits for the last chunks the origin sent) waits
	// behind them. With few peers each may take more: a request stays in
	// flight until the chunk is stored, so a lone peer needs the depth to
	// cover the store's commits too. Defaults 4 MiB and 32 MiB (4 MiB keeps
	// a peer's 1 Gbit/s full over a 32 ms round trip).
	MaxInflightBytes int64
	DownloadInflight int64
	// Order is the members' global chunk order (NewChunkOrder(NumChunks)),
	// to share among Pickers of one package; nil or of another length:
	// computed by SetMembers for this Picker.
	Order *ChunkOrder
	// InitialBDP is the bandwidth-delay product (bytes) assumed for a peer
	// not yet measured. Default 1 MiB.
	InitialBDP int64
	// OriginParallel caps concurrent origin requests. Default 8.
	OriginParallel int
	// OriginInitialWindow is the origin window while no peer is known; it
	// grows by one per chunk the origin delivers, up to OriginParallel
	// (slow start: hosts starting together do not all fire OriginParallel
	// requests before they know of each other). Default 1.
	OriginInitialWindow int
	// OriginJitter: with peers known, after each origin request starts or
	// ends the next may start only after a random delay, uniform in
	// [0, J*(peers+1)/k] (at most RequestTimeout/4) for k chunks left for
	// the origin, where J is the larger of OriginJitter and the mean time
	// peers take to answer a request (messages, PeerPending among them,
	// queue behind chunks): hosts whose requests end together do not all
	// pick at once, and hear each other's Fetching first; the first of
	// peers+1 hosts takes a chunk after about J/k. Default 50ms.
	OriginJitter time.Duration
	// RequestTimeout: a peer request is returned by Timeouts and forgotten
	// once it is this old AND the peer delivered nothing for this long (a
	// peer busy with the rest of a pipeline is slow, not stalled). Default
	// 10s.
	RequestTimeout time.Duration
	// StallTimeout: a peer request this old, from a peer that delivered
	// nothing for this long, makes its chunk eligible for the origin as
	// well (the request stays open). Default RequestTimeout/2.
	StallTimeout time.Duration
	// PendingTimeout: a peer's claim that it is fetching a chunk from the
	// origin (PeerPending) keeps us off the origin for that chunk at most
	// this long. Default RequestTimeout.
	PendingTimeout time.Duration
	// OriginSwarmWindow (K): with members known (SetMembers), a chunk may
	// be asked of the origin only once it is among the first K chunks of
	// the global order that neither we nor a known peer has, so that the
	// whole swarm keeps about K origin requests open. Default
	// 8*OriginParallel.
	OriginSwarmWindow int
	// OriginFallbackDelay: with members known, a chunk we do not own is
	// asked of the origin only some delay per rank (at most 8) after it
	// entered the window, if nobody we know has it or fetches it by then
	// (its owner is gone, silent, or sees other members). The delay is
	// twice the measured mean time from entering the window to being
	// seen, at least OriginFallbackDelay (at least RequestTimeout before
	// the first measurement). Default 2s.
	OriginFallbackDelay time.Duration
}

// Picker decides, for one download, which chunk to ask next and from whom:
// rarest first among peers, the origin only for what no known peer has or
// fetches, partitioned and paced among the swarm's members, and an end
// game. See the package documentation for the algorithm and the rules of
// its use.
type Picker struct {
	// The fields a HaveUpdate and the pick that follows it read come
	// first, together (a simulation runs thousands of Pickers: each
	// cache line is a miss).
	n            int
	lastT        int64 // the latest time given
	remaining    int
	numPeers     int
	peerInflight int // open peer requests, all peers
	slots        []peerSlot
	ck           []chunkState // per chunk, packed: one cache line per lookup
	have         Bitfield
	levels       []levelSet
	lvBuf        []uint64 // the levels' words (see initLevel)
	pickU        Bitfield // the union of the levels: the pickable chunks
	rng          *rand.Rand
	tpSum        float64 // sum of the measured peers' throughputs
	tpN          int     // measured peers
	lat          float64 // EWMA of peer request-to-arrival times, ns
	avgLen       float64
	elig         int       // chunks no peer has, fetches or is asked for
	withdrawn    []Request // see Withdrawn

	mem  memberState // SetMembers; see window.go and ring.go
	pull bool        // SetPullThrough
	site siteState   // SetSites; see sites.go

	cfg     PickerConfig
	epoch   time.Time
	started bool

	missing indexSet // chunks we lack, for the end game
	origReq Bitfield

	// origin order: rank[i] is chunk i's place in this host's permutation;
	// heap holds candidates by rank (lazy deletion; inHeap avoids copies).
	rank           []int32
	heap           []int32
	inHeap         Bitfield
	stalled        []int32
	originInflight int
	originDone     int
	originGate     int64 // no origin start before (with peers)

	peers map[PeerID]int32
	free  []int32

	recs     []reqRec
	freeRecs []int32
	stallQ   fifo
	timeQ    fifo
	pendQ    []pendEntry
	pendHead int

	cancelBuf []PeerID
}

// chunkState is what a Picker keeps per chunk, in one array so that the
// fields an update touches together share a cache line (a simulation
// runs thousands of Pickers, and each update is a cache miss).
type chunkState struct {
	avail    int32 // known peers holding the chunk
	pend     int32 // peers fetching it from the origin
	reqHead  int32 // first request record, -1 none
	reqCount uint8 // outstanding requests
	inDue    uint8 // member policy: our rank r+1 while filed in due[r]
}

// withDefaults fills the zero fields of cfg with the defaults.
func (cfg PickerConfig) withDefaults() PickerConfig {
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(1, 2))
	}
	if cfg.EndgameThreshold == 0 {
		cfg.EndgameThreshold = DefaultEndgameThreshold
	}
	if cfg.EndgameDuplicates <= 0 {
		cfg.EndgameDuplicates = DefaultEndgameDuplicates
	}
	if cfg.EndgameDelay == 0 {
		cfg.EndgameDelay = DefaultEndgameDelay
	}
	if cfg.MaxInflightPerPeer <= 0 {
		cfg.MaxInflightPerPeer = DefaultMaxInflightPerPeer
	}
	cfg.MaxInflightPerPeer = max(cfg.MaxInflightPerPeer, 2)
	if cfg.MaxInflightBytes <= 0 {
		cfg.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if cfg.DownloadInflight <= 0 {
		cfg.DownloadInflight = DefaultDownloadInflight
	}
	if cfg.InitialBDP <= 0 {
		cfg.InitialBDP = DefaultInitialBDP
	}
	if cfg.OriginParallel <= 0 {
		cfg.OriginParallel = DefaultOriginParallel
	}
	if cfg.OriginFallbackDelay <= 0 {
		cfg.OriginFallbackDelay = DefaultOriginFallbackDelay
	}
	if cfg.OriginInitialWindow <= 0 {
		cfg.OriginInitialWindow = DefaultOriginInitialWindow
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.OriginJitter <= 0 {
		cfg.OriginJitter = DefaultOriginJitter
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = cfg.RequestTimeout / 2
	}
	if cfg.PendingTimeout <= 0 {
		cfg.PendingTimeout = cfg.RequestTimeout
	}
	return cfg
}

// NewPicker returns a Picker for cfg.NumChunks chunks, none of which we
// have yet (see SetHave) and no peer is known to have.
func NewPicker(cfg PickerConfig) *Picker {
	cfg = cfg.withDefaults()
	n := max(cfg.NumChunks, 0)
	p := &Picker{
		cfg:       cfg,
		rng:       cfg.Rand,
		n:         n,
		have:      NewBitfield(n),
		remaining: n,
		ck:        make([]chunkState, n),
		origReq:   NewBitfield(n),
		rank:      make([]int32, n),
		heap:      make([]int32, n),
		inHeap:    NewBitfield(n),
		peers:     make(map[PeerID]int32),
		elig:      n,
	}
	var total float64
	for i := range n {
		p.ck[i].reqHead = -1
		if cfg.ChunkLen != nil {
			total += float64(cfg.ChunkLen(i))
		}
	}
	if cfg.ChunkLen == nil || n == 0 {
		p.avgLen = float64(1 << 20)
	} else {
		p.avgLen = max(total/float64(n), 1)
	}
	p.missing.init(n)
	for i := range n {
		p.missing.add(int32(i))
	}
	// The permutation sorted by rank is already a valid min-heap.
	for k, i := range p.rng.Perm(n) {
		p.rank[i] = int32(k)
		p.heap[k] = int32(i)
		p.inHeap.Set(i)
	}
	p.levels = make([]levelSet, 1, 8)
	p.initLevel(0)
	p.pickU = NewBitfield(n)
	for i := range n {
		p.levels[0].add(i)
		p.pickU.Set(i)
	}
	return p
}

// t converts now to nanoseconds since the first time the Picker was given.
func (p *Picker) t(now time.Time) int64 {
	if !p.started {
		p.epoch, p.started = now, true
	}
	p.lastT = int64(now.Sub(p.epoch))
	return p.lastT
}

// NumChunks returns the number of chunks.
func (p *Picker) NumChunks() int { return p.n }

// Remaining returns how many chunks we still lack.
func (p *Picker) Remaining() int { return p.remaining }

// Done reports whether we have every chunk.
func (p *Picker) Done() bool { return p.remaining == 0 }

// Have reports whether we have chunk i.
func (p *Picker) Have(i int) bool { return p.valid(i) && p.have.Has(i) }

// Availability returns how many known peers have chunk i.
func (p *Picker) Availability(i int) int {
	if !p.valid(i) {
		return 0
	}
	return int(p.ck[i].avail)
}

// Outstanding returns how many requests for chunk i are open.
func (p *Picker) Outstanding(i int) int {
	if !p.valid(i) {
		return 0
	}
	return int(p.ck[i].reqCount)
}

// Peers returns how many peers are known.
func (p *Picker) Peers() int { return p.numPeers }

func (p *Picker) valid(i int) bool { return i >= 0 && i < p.n }

func (p *Picker) pickable(i int) bool { return !p.have.Has(i) && p.ck[i].reqCount == 0 }

// SetHave records that we hold a verified chunk i (already stored, or just
// received). Open requests for it stay open; Received cancels them.
func (p *Picker) SetHave(i int) {
	if !p.valid(i) || p.have.Has(i) {
		return
	}
	if p.ck[i].reqCount == 0 {
		p.levels[p.ck[i].avail].remove(i)
		p.pickU.Clear(i)
	}
	was, wasSeen := p.originEligible(i), p.seen(i)
	p.have.Set(i)
	p.updElig(i, was)
	p.seenChanged(i, wasSeen)
	p.remaining--
	p.missing.remove(int32(i))
}

// HaveMap appends a copy of our have-map to dst[:0].
func (p *Picker) HaveMap(dst Bitfield) Bitfield { return append(dst[:0], p.have...) }
