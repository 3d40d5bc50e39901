package transfer

import (
	"errors"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"time"
)

// This file is the swarm's piece-selection and origin policy. It is pure
// code: no I/O, no goroutines, no clock (every call that needs the time is
// given it), and deterministic for a given *rand.Rand, so that the
// discrete-event simulator in package simulations drives exactly the code
// the daemon runs. A Picker is not safe for concurrent use; the swarm engine
// guards each one with its download's lock.

// OriginPeer is the pseudo-peer that names the HTTP origin in Requested,
// Received and Failed. It is never a real peer (libp2p peer IDs are
// multihashes), and PeerJoined refuses it.
const OriginPeer PeerID = "origin"

// Defaults for PickerConfig.
const (
	DefaultEndgameThreshold    = 4
	DefaultEndgameDuplicates   = 2
	DefaultMaxInflightPerPeer  = 512
	DefaultMaxInflightBytes    = 4 << 20
	DefaultDownloadInflight    = 32 << 20
	DefaultOriginParallel      = DefaultParallel
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

// Request is one outstanding request, as Timeouts reports it.
type Request struct {
	Chunk int
	Peer  PeerID
	At    time.Time
}

// PeerScore is what a Picker knows of a peer's service.
type PeerScore struct {
	// Throughput is an EWMA of bytes/s, each sample a chunk's bytes over
	// the time the peer spent on it (since it was asked or since the
	// previous chunk from the peer arrived, whichever is later).
	Throughput float64
	// RTT is an EWMA of request-to-arrival times of requests made while
	// nothing else was in flight to the peer (latency plus one chunk).
	RTT time.Duration
	// Chunks and Bytes received from the peer.
	Chunks int64
	Bytes  int64
	// Failures (Failed) and Timeouts in all; Strikes counts consecutive
	// ones and is reset by a received chunk.
	Failures int
	Timeouts int
	Strikes  int
}

// Value orders peers: throughput, halved for each strike.
func (s PeerScore) Value() float64 {
	return s.Throughput / float64(int(1)<<min(s.Strikes, 30))
}

// Picker decides, for one download, which chunk to ask next and from whom.
//
// Piece selection is rarest first: among the chunks a peer has, that we
// lack and that nobody is being asked for, it takes one of those held by
// the fewest known peers, breaking ties at random. Chunks are kept in one
// bitset per availability level (with a summary word per 64 words), so a
// pick scans only the non-empty words of the lowest levels, ANDed with the
// peer's have-map, and availability changes are O(1).
//
// The origin is asked only for chunks that no known peer has and that no
// peer said it is fetching (PeerPending), or whose peer request stalled
// (older than StallTimeout), in an order private to this host (a random
// permutation drawn at NewPicker), so that hosts starting together ask the
// origin for different chunks and then trade them. Its window is
// OriginParallel shared among the known peers, OriginParallel/(peers+1)
// but at least one, and never more than a slow-start window that opens at
// OriginInitialWindow and grows by one per chunk the origin delivers (so
// that hosts starting together do not flood the origin before they know
// of each other).
//
// With the swarm's members known (SetMembers), the origin policy
// partitions and paces instead: each chunk has one origin owner by
// consistent hashing over the members (others fall back only after a
// delay that grows with their rank), and a chunk may be asked of the
// origin only while it is among the first OriginSwarmWindow chunks of one
// global order that no known host has, so the swarm as a whole keeps about
// that many origin requests open (see policy_members.go and the package
// documentation).
//
// End game: once at most EndgameThreshold chunks are missing, a peer with
// nothing new to offer may be asked for a chunk already requested
// elsewhere (the least requested first, at most EndgameDuplicates
// outstanding); Received returns the other requests to cancel.
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

	mem memberState // SetMembers; see policy_members.go

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

type peerSlot struct {
	// What a HaveUpdate and the pick that follows read first, together.
	have      Bitfield
	gen       uint32
	npend     int32 // chunks set in pending
	live      bool
	inflight  int
	busySince int64 // when inflight last went from 0 to 1
	lastRecv  int64
	score     PeerScore
	pending   Bitfield
	id        PeerID
	lastByte  int64 // last Progress: part of a chunk arrived
}

type reqRec struct {
	chunk   int32
	peer    int32 // slot, or -1 for the origin
	next    int32
	gen     uint32
	live    bool
	stalled bool
	alone   bool // nothing else was in flight to the peer when asked
	at      int64
}

type fifoEntry struct {
	id  int32
	gen uint32
	due int64 // when to look at the request again
}

type fifo struct {
	q    []fifoEntry
	head int
}

func (f *fifo) push(e fifoEntry) { f.q = append(f.q, e) }
func (f *fifo) peek() (fifoEntry, bool) {
	if f.head >= len(f.q) {
		return fifoEntry{}, false
	}
	return f.q[f.head], true
}
func (f *fifo) pop() {
	f.head++
	if f.head == len(f.q) {
		f.q, f.head = f.q[:0], 0
	} else if f.head > 1024 && f.head*2 > len(f.q) {
		f.q = f.q[:copy(f.q, f.q[f.head:])]
		f.head = 0
	}
}

type pendEntry struct {
	slot  int32
	gen   uint32
	chunk int32
	ext   uint8 // first-hop deferral: times extended (slowHolderExtends)
	at    int64
}

// NewPicker returns a Picker for cfg.NumChunks chunks, none of which we
// have yet (see SetHave) and no peer is known to have.
func NewPicker(cfg PickerConfig) *Picker {
	n := max(cfg.NumChunks, 0)
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(1, 2))
	}
	if cfg.EndgameThreshold == 0 {
		cfg.EndgameThreshold = DefaultEndgameThreshold
	}
	if cfg.EndgameDuplicates <= 0 {
		cfg.EndgameDuplicates = DefaultEndgameDuplicates
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

// OriginInflight returns the open origin requests.
func (p *Picker) OriginInflight() int { return p.originInflight }

func (p *Picker) valid(i int) bool { return i >= 0 && i < p.n }

func (p *Picker) pickable(i int) bool { return !p.have.Has(i) && p.ck[i].reqCount == 0 }

// originEligible: no peer has it or is fetching it, nobody is asked for it.
func (p *Picker) originEligible(i int) bool {
	return p.pickable(i) && p.ck[i].avail == 0 && p.ck[i].pend == 0
}

// addPend changes the PeerPending claims on chunk i.
func (p *Picker) addPend(i int, delta int32) {
	was := p.originEligible(i)
	p.ck[i].pend += delta
	p.updElig(i, was)
}

// updElig keeps elig (the number of origin-eligible chunks) after a change
// to chunk i, which was eligible before it or not.
func (p *Picker) updElig(i int, was bool) {
	switch now := p.originEligible(i); {
	case now && !was:
		p.elig++
	case was && !now:
		p.elig--
	}
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

func (p *Picker) maybeOrigin(i int) {
	if !p.originEligible(i) {
		return
	}
	if !p.inHeap.Has(i) {
		p.heapPush(int32(i))
	}
	p.memberEligible(i)
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
	}
}

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

// PeerJoined records a peer and its have-map (copied; nil: nothing). For
// a known peer the have-map is replaced in place: its open requests and
// PeerPending claims stay.
func (p *Picker) PeerJoined(peer PeerID, have Bitfield) {
	if peer == OriginPeer {
		return
	}
	if s, ok := p.peers[peer]; ok {
		hb := p.slots[s].have
		for w := range hb {
			var x uint64
			if w < len(have) {
				x = have[w] & hb.mask(w, p.n)
			}
			for d := x ^ hb[w]; d != 0; d &= d - 1 {
				i := w*64 + bits.TrailingZeros64(d)
				if x&(1<<(i&63)) != 0 {
					p.PeerHave(peer, i)
				} else {
					p.PeerLacks(peer, i)
				}
			}
		}
		return
	}
	var s int32
	if k := len(p.free); k > 0 {
		s = p.free[k-1]
		p.free = p.free[:k-1]
	} else {
		p.slots = append(p.slots, peerSlot{})
		s = int32(len(p.slots) - 1)
	}
	sl := &p.slots[s]
	gen := sl.gen + 1
	hb, pb := sl.have, sl.pending
	if hb == nil {
		hb, pb = NewBitfield(p.n), NewBitfield(p.n)
	} else {
		clear(hb)
		clear(pb)
	}
	*sl = peerSlot{id: peer, have: hb, pending: pb, gen: gen, live: true}
	p.peers[peer] = s
	p.numPeers++
	for w, x := range have {
		if w >= len(hb) {
			break
		}
		x &= hb.mask(w, p.n)
		for x != 0 {
			b := bits.TrailingZeros64(x)
			x &= x - 1
			i := w*64 + b
			hb.Set(i)
			p.setAvail(i, p.ck[i].avail+1)
		}
	}
}

// PeerHave records that peer has chunk i (a HaveUpdate). It also ends the
// peer's PeerPending claim on i.
func (p *Picker) PeerHave(peer PeerID, i int) {
	if s, ok := p.peers[peer]; ok {
		p.peerHave(s, i)
	}
}

func (p *Picker) peerHave(s int32, i int) {
	if !p.valid(i) {
		return
	}
	sl := &p.slots[s]
	if sl.npend > 0 && sl.pending.Has(i) {
		sl.pending.Clear(i)
		sl.npend--
		p.addPend(i, -1)
	}
	if sl.have.Has(i) {
		return
	}
	sl.have.Set(i)
	p.setAvail(i, p.ck[i].avail+1)
	if p.ck[i].avail == 1 {
		p.deferFirst(i, s)
	} else if p.ck[i].reqCount > 0 && p.mem.on {
		p.reroute(i, sl)
	}
}

// reroute withdraws the requests for chunk i when every one of them is
// open at a slow peer (slowPeer) and sl, which now has i too, is not slow:
// the chunk becomes pickable again (sl is asked next), and the slow peers'
// uploads go to the chunks only they hold. A request asked of a slow peer
// while it was the chunk's only holder otherwise waits behind everything
// else that peer's upload is split among (seconds) while the chunk
// spreads around it.
func (p *Picker) reroute(i int, sl *peerSlot) {
	if p.slowPeer(sl, p.lastT) || p.tpN < 4 {
		return // (with under 4 peers measured, none is measuredSlow)
	}
	for id := p.ck[i].reqHead; id >= 0; id = p.recs[id].next {
		if r := &p.recs[id]; r.peer < 0 || !p.measuredSlow(&p.slots[r.peer]) {
			return
		}
	}
	for id := p.ck[i].reqHead; id >= 0; {
		r := &p.recs[id]
		next := r.next
		p.withdrawn = append(p.withdrawn, Request{Chunk: i, Peer: p.slots[r.peer].id, At: p.epoch.Add(time.Duration(r.at))})
		p.endRequest(id)
		id = next
	}
}

// Withdrawn appends to dst, and forgets, the peer requests the Picker
// closed by itself since the last call (without blame: see reroute): the
// caller should cancel them. Call it after PeerHave.
func (p *Picker) Withdrawn(dst []Request) []Request {
	dst = append(dst, p.withdrawn...)
	p.withdrawn = p.withdrawn[:0]
	return dst
}

// HasWithdrawn reports whether Withdrawn has anything to return.
func (p *Picker) HasWithdrawn() bool { return len(p.withdrawn) > 0 }

// PeerLacks records that peer does not have chunk i after all (it rejected
// a request for it).
func (p *Picker) PeerLacks(peer PeerID, i int) {
	s, ok := p.peers[peer]
	if !ok || !p.valid(i) || !p.slots[s].have.Has(i) {
		return
	}
	p.slots[s].have.Clear(i)
	p.setAvail(i, p.ck[i].avail-1)
}

// PeerPending records that peer said it is fetching chunk i from the
// origin: we leave i to it (and fetch it from the peer once it has it)
// unless the claim is older than PendingTimeout.
func (p *Picker) PeerPending(peer PeerID, i int, now time.Time) {
	if s, ok := p.peers[peer]; ok {
		p.peerPending(s, i, now)
	}
}

func (p *Picker) peerPending(s int32, i int, now time.Time) {
	if !p.valid(i) {
		return
	}
	sl := &p.slots[s]
	if sl.have.Has(i) || sl.pending.Has(i) {
		return
	}
	sl.pending.Set(i)
	sl.npend++
	p.addPend(i, 1)
	p.pendQ = append(p.pendQ, pendEntry{slot: s, gen: sl.gen, chunk: int32(i), at: p.t(now)})
}

// DropRequests closes every open request to peer without blame (the
// stream carrying them was replaced); the peer's have-map and claims stay.
// It returns how many it closed.
func (p *Picker) DropRequests(peer PeerID) int {
	s, ok := p.peers[peer]
	if !ok {
		return 0
	}
	n := 0
	for k := 0; k < len(p.missing.items) && p.slots[s].inflight > 0; k++ {
		i := p.missing.items[k]
		for id := p.ck[i].reqHead; id >= 0; {
			next := p.recs[id].next
			if p.recs[id].peer == s {
				p.endRequest(id)
				n++
			}
			id = next
		}
	}
	return n
}

// PeerLeft forgets a peer (gone, dropped or banned): its chunks no longer
// count, and its open requests are dropped (their chunks become pickable).
func (p *Picker) PeerLeft(peer PeerID) {
	s, ok := p.peers[peer]
	if !ok {
		return
	}
	sl := &p.slots[s]
	// Open requests first, so their chunks return at the right level.
	p.DropRequests(peer)
	for w, x := range sl.have {
		for x != 0 {
			b := bits.TrailingZeros64(x)
			x &= x - 1
			i := w*64 + b
			p.setAvail(i, p.ck[i].avail-1)
		}
	}
	for w, x := range sl.pending {
		for x != 0 {
			b := bits.TrailingZeros64(x)
			x &= x - 1
			i := w*64 + b
			p.addPend(i, -1)
			p.maybeOrigin(i)
		}
	}
	if tp := sl.score.Throughput; tp > 0 {
		p.tpSum -= tp
		p.tpN--
	}
	sl.live = false
	sl.gen++
	sl.id = ""
	delete(p.peers, peer)
	p.free = append(p.free, s)
	p.numPeers--
}

// PeerHas reports whether peer is known to have chunk i.
func (p *Picker) PeerHas(peer PeerID, i int) bool {
	s, ok := p.peers[peer]
	return ok && p.valid(i) && p.slots[s].have.Has(i)
}

// Asked reports whether a request for chunk i to from (a peer or
// OriginPeer) is open.
func (p *Picker) Asked(i int, from PeerID) bool {
	if !p.valid(i) {
		return false
	}
	s, ok := p.slotOf(from)
	return ok && p.findReq(i, s) >= 0
}

// HaveMap appends a copy of our have-map to dst[:0].
func (p *Picker) HaveMap(dst Bitfield) Bitfield { return append(dst[:0], p.have...) }

// Score returns what the Picker knows of peer.
func (p *Picker) Score(peer PeerID) PeerScore {
	if s, ok := p.peers[peer]; ok {
		return p.slots[s].score
	}
	return PeerScore{}
}

// Inflight returns the open requests to peer (OriginPeer: the origin).
func (p *Picker) Inflight(peer PeerID) int {
	if peer == OriginPeer {
		return p.originInflight
	}
	if s, ok := p.peers[peer]; ok {
		return p.slots[s].inflight
	}
	return 0
}

// PipelineDepth is how many requests to keep open to peer so that its link
// stays busy: one bandwidth-delay product of chunks plus one,
// clamp(ceil(throughput*rtt/chunkLen)+1, 2, MaxInflightPerPeer), where
// chunkLen is the mean chunk length. An unmeasured peer is assumed to have
// a bandwidth-delay product of InitialBDP.
func (p *Picker) PipelineDepth(peer PeerID) int {
	s, ok := p.peers[peer]
	if !ok {
		return 0
	}
	return p.pipelineDepth(s)
}

func (p *Picker) pipelineDepth(s int32) int {
	sc := &p.slots[s].score
	bdp := float64(p.cfg.InitialBDP)
	if sc.Throughput > 0 && sc.RTT > 0 {
		bdp = sc.Throughput * sc.RTT.Seconds()
	}
	d := math.Ceil(bdp/p.avgLen) + 1
	capB := max(p.cfg.MaxInflightBytes, p.cfg.DownloadInflight/int64(max(p.numPeers, 1)))
	d = min(d, float64(p.cfg.MaxInflightPerPeer), math.Floor(float64(capB)/p.avgLen))
	return max(int(d), 2)
}

// RankPeers sorts peers (known ones only are kept) best first by
// PeerScore.Value, and returns the slice.
func (p *Picker) RankPeers(peers []PeerID) []PeerID {
	out := peers[:0]
	for _, id := range peers {
		if _, ok := p.peers[id]; ok {
			out = append(out, id)
		}
	}
	slices.SortStableFunc(out, func(a, b PeerID) int {
		va, vb := p.slots[p.peers[a]].score.Value(), p.slots[p.peers[b]].score.Value()
		switch {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return 0
	})
	return out
}

// Endgame reports whether the end game is on.
func (p *Picker) Endgame() bool {
	return p.cfg.EndgameThreshold >= 0 && p.remaining > 0 && p.remaining <= p.cfg.EndgameThreshold
}

// NextForPeer returns the chunk to request next from peer, or false if the
// peer has nothing we need that is not requested already, or its pipeline
// is full (Inflight >= PipelineDepth). It changes nothing: call Requested
// for the chunk actually asked for.
func (p *Picker) NextForPeer(peer PeerID, now time.Time) (int, bool) {
	s, ok := p.peers[peer]
	if !ok {
		return 0, false
	}
	return p.nextForPeer(s, p.t(now))
}

func (p *Picker) nextForPeer(s int32, t int64) (int, bool) {
	if p.remaining == 0 {
		return 0, false
	}
	sl := &p.slots[s]
	if sl.inflight >= p.pipelineDepth(s) {
		return 0, false
	}
	top := len(p.levels)
	if p.slowPeer(sl, t) && (sl.inflight > 0 || p.peerInflight > 0) && !p.Endgame() {
		// Only what no other known peer has: its upload is for those.
		// Unless nothing else is on its way to us (starving) or the end
		// game is on: then anything, one request at a time (measured again).
		top = min(top, 2)
	}
	// With no level holding a chunk the peer has, each pick below would
	// only draw its random start and fail: draw the same, skip the scans.
	none := !p.anyPickable(sl.have)
	for a := 1; a < top; a++ {
		if p.levels[a].count == 0 {
			continue
		}
		if none {
			if nw := len(p.levels[a].words); nw != 0 {
				p.rng.IntN(nw)
			}
			continue
		}
		var skip Bitfield
		if a == 1 && p.mem.on {
			skip = p.mem.deferred
		}
		if i, ok := p.levels[a].pick(sl.have, skip, p.rng); ok {
			return i, true
		}
	}
	if !p.Endgame() || top < len(p.levels) {
		return 0, false
	}
	// End game: the least-requested missing chunk this peer has and was
	// not asked for, starting at a random place.
	best, bestN := -1, p.cfg.EndgameDuplicates
	m := len(p.missing.items)
	start := p.rng.IntN(m)
	for k := range m {
		i := int(p.missing.items[(start+k)%m])
		if !sl.have.Has(i) || int(p.ck[i].reqCount) >= bestN || p.askedFrom(i, s) {
			continue
		}
		best, bestN = i, int(p.ck[i].reqCount)
	}
	return best, best >= 0
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

func (p *Picker) askedFrom(i int, s int32) bool {
	for id := p.ck[i].reqHead; id >= 0; id = p.recs[id].next {
		if p.recs[id].peer == s {
			return true
		}
	}
	return false
}

// originWindow is how many origin requests may be open now.
func (p *Picker) originWindow() int {
	w := min(p.cfg.OriginParallel, p.cfg.OriginInitialWindow+p.originDone)
	if p.numPeers > 0 && !p.mem.on {
		w = min(w, max(1, p.cfg.OriginParallel/(p.numPeers+1)))
	}
	return w
}

// jitterOrigin closes the origin gate for a random while (OriginJitter).
func (p *Picker) jitterOrigin(t int64) {
	if p.numPeers == 0 || p.mem.on {
		return
	}
	j := max(float64(p.cfg.OriginJitter), p.lat) * float64(p.numPeers+1) / float64(max(p.elig, 1))
	j = min(j, float64(p.cfg.RequestTimeout/4))
	p.originGate = t + int64(p.rng.Float64()*j)
}

// OriginWindow returns how many origin requests may be open at once now.
func (p *Picker) OriginWindow() int { return p.originWindow() }

// NextForOrigin returns the chunk to request next from the origin, or
// false if none qualifies or the origin window is full. Stalled chunks come
// first, then chunks no known peer has or fetches, in this host's private
// random order. It changes nothing but expiring stalls and PeerPending
// claims: call Requested(i, OriginPeer, now).
func (p *Picker) NextForOrigin(now time.Time) (int, bool) {
	t := p.t(now)
	p.advance(t)
	if p.remaining == 0 || p.originInflight >= p.originWindow() {
		return 0, false
	}
	for len(p.stalled) > 0 {
		i := int(p.stalled[0])
		if !p.have.Has(i) && !p.origReq.Has(i) && p.ck[i].reqCount > 0 {
			return i, true
		}
		p.stalled = p.stalled[1:]
	}
	if p.mem.on {
		return p.nextMember(t)
	}
	// Hosts that pick at the same moment (before hearing each other's
	// Fetching) collide at random, and hosts whose origin requests end
	// together pick together. With peers around, each start is delayed by
	// a random jitter (see OriginJitter), so starts spread out in time.
	if p.numPeers > 0 && t < p.originGate {
		return 0, false
	}
	for len(p.heap) > 0 {
		i := int(p.heap[0])
		if p.originEligible(i) {
			return i, true
		}
		p.heapPop()
		p.inHeap.Clear(i)
	}
	return 0, false
}

// advance expires PeerPending claims and first-hop deferrals, and marks
// stalled peer requests.
func (p *Picker) advance(t int64) {
	p.expireDeferred(t)
	for p.pendHead < len(p.pendQ) {
		e := p.pendQ[p.pendHead]
		if t-e.at < int64(p.cfg.PendingTimeout) {
			break
		}
		p.pendHead++
		sl := &p.slots[e.slot]
		if sl.live && sl.gen == e.gen && sl.pending.Has(int(e.chunk)) {
			sl.pending.Clear(int(e.chunk))
			sl.npend--
			p.addPend(int(e.chunk), -1)
			p.maybeOrigin(int(e.chunk))
		}
	}
	if p.pendHead == len(p.pendQ) {
		p.pendQ, p.pendHead = p.pendQ[:0], 0
	}
	for {
		e, ok := p.stallQ.peek()
		if !ok {
			break
		}
		if e.due > t {
			break
		}
		p.stallQ.pop()
		r := &p.recs[e.id]
		if !r.live || r.gen != e.gen || r.stalled {
			continue
		}
		if quiet := max(r.at, p.slots[r.peer].lastRecv, p.slots[r.peer].lastByte); t-quiet < int64(p.cfg.StallTimeout) {
			p.stallQ.push(fifoEntry{e.id, e.gen, quiet + int64(p.cfg.StallTimeout)})
			continue
		}
		r.stalled = true
		p.stalled = append(p.stalled, r.chunk)
	}
}

// Requested records a request for chunk i sent to from (OriginPeer for the
// origin) at now.
func (p *Picker) Requested(i int, from PeerID, now time.Time) {
	s := int32(-1)
	if from != OriginPeer {
		var ok bool
		if s, ok = p.peers[from]; !ok {
			return
		}
	}
	p.requested(i, s, now)
}

// requested is Requested for slot s (-1: the origin).
func (p *Picker) requested(i int, s int32, now time.Time) {
	if !p.valid(i) || p.have.Has(i) {
		return
	}
	t := p.t(now)
	if s < 0 {
		if p.origReq.Has(i) {
			return
		}
		p.origReq.Set(i)
		p.originInflight++
		p.jitterOrigin(t)
	} else if p.askedFrom(i, s) {
		return
	}
	if p.ck[i].reqCount == 0 {
		p.levels[p.ck[i].avail].remove(i)
		p.pickU.Clear(i)
	}
	was := p.originEligible(i)
	if p.ck[i].reqCount < math.MaxUint8 {
		p.ck[i].reqCount++
	}
	p.updElig(i, was)
	var id int32
	if k := len(p.freeRecs); k > 0 {
		id = p.freeRecs[k-1]
		p.freeRecs = p.freeRecs[:k-1]
	} else {
		p.recs = append(p.recs, reqRec{})
		id = int32(len(p.recs) - 1)
	}
	r := &p.recs[id]
	*r = reqRec{chunk: int32(i), peer: s, next: p.ck[i].reqHead, gen: r.gen + 1, live: true, at: t}
	p.ck[i].reqHead = id
	if s >= 0 {
		sl := &p.slots[s]
		r.alone = sl.inflight == 0
		if r.alone {
			sl.busySince = t
		}
		sl.inflight++
		p.peerInflight++
		p.stallQ.push(fifoEntry{id, r.gen, t + int64(p.cfg.StallTimeout)})
		p.timeQ.push(fifoEntry{id, r.gen, t + int64(p.cfg.RequestTimeout)})
	}
}

// findReq returns the open request of chunk i to slot s (-1: origin).
func (p *Picker) findReq(i int, s int32) int32 {
	for id := p.ck[i].reqHead; id >= 0; id = p.recs[id].next {
		if p.recs[id].peer == s {
			return id
		}
	}
	return -1
}

// endRequest closes request id; its chunk becomes pickable again if it was
// the last one and we still lack the chunk.
func (p *Picker) endRequest(id int32) {
	r := &p.recs[id]
	i := int(r.chunk)
	// unlink
	if p.ck[i].reqHead == id {
		p.ck[i].reqHead = r.next
	} else {
		for q := p.ck[i].reqHead; q >= 0; q = p.recs[q].next {
			if p.recs[q].next == id {
				p.recs[q].next = r.next
				break
			}
		}
	}
	if r.peer < 0 {
		p.origReq.Clear(i)
		p.originInflight--
		p.jitterOrigin(p.lastT)
	} else {
		p.slots[r.peer].inflight--
		p.peerInflight--
	}
	r.live = false
	r.gen++
	p.freeRecs = append(p.freeRecs, id)
	was := p.originEligible(i)
	p.ck[i].reqCount--
	p.updElig(i, was)
	if p.ck[i].reqCount == 0 && !p.have.Has(i) {
		p.makePickable(i)
	}
}

func (p *Picker) slotOf(from PeerID) (int32, bool) {
	if from == OriginPeer {
		return -1, true
	}
	s, ok := p.peers[from]
	return s, ok
}

// Progress records that part of a chunk we asked from for has arrived
// (a ChunkPart): a peer sending a large chunk slowly, as one serving many
// hosts on a busy machine does, is slow but not stalled, and its requests
// neither stall nor time out while bytes flow.
func (p *Picker) Progress(from PeerID, now time.Time) {
	if s, ok := p.peers[from]; ok {
		p.slots[s].lastByte = p.t(now)
	}
}

// Received records that chunk i arrived from from (verified, bytes long)
// and marks it had. It returns the other peers (OriginPeer included) still
// asked for i, whose requests it closed: the caller should cancel them. The
// slice is reused by the next call. A chunk we did not ask from for is
// still taken (SetHave) and counted.
func (p *Picker) Received(i int, from PeerID, now time.Time, bytes int64) []PeerID {
	s, ok := p.slotOf(from)
	return p.received(i, s, ok, now, bytes)
}

// ReceivedRef is Received for a handle (a peer, never the origin); a
// handle on a peer that left is a peer Received does not know.
func (p *Picker) ReceivedRef(i int, r PeerRef, now time.Time, bytes int64) []PeerID {
	s, ok := p.refSlot(r)
	return p.received(i, s, ok, now, bytes)
}

// received is Received from slot s (-1: the origin), ok false for a
// sender we do not know.
func (p *Picker) received(i int, s int32, ok bool, now time.Time, bytes int64) []PeerID {
	p.cancelBuf = p.cancelBuf[:0]
	if !p.valid(i) {
		return nil
	}
	t := p.t(now)
	if ok {
		if id := p.findReq(i, s); id >= 0 {
			r := p.recs[id]
			if s >= 0 {
				sl := &p.slots[s]
				start := max(r.at, sl.lastRecv)
				if dt := t - start; dt > 0 {
					tp := float64(bytes) / (float64(dt) / 1e9)
					old := sl.score.Throughput
					sl.score.Throughput = ewma(old, tp)
					if old == 0 {
						p.tpN++
					}
					p.tpSum += sl.score.Throughput - old
				}
				p.lat = ewma(p.lat, float64(t-r.at))
				if r.alone {
					rtt := time.Duration(t - r.at)
					if sl.score.RTT == 0 {
						sl.score.RTT = rtt
					} else {
						sl.score.RTT = time.Duration(ewma(float64(sl.score.RTT), float64(rtt)))
					}
				}
			} else {
				p.originDone++
			}
			p.endRequest(id)
		}
		if s >= 0 {
			sl := &p.slots[s]
			sl.lastRecv = t
			sl.score.Chunks++
			sl.score.Bytes += bytes
			sl.score.Strikes = 0
		}
	}
	p.SetHave(i)
	for id := p.ck[i].reqHead; id >= 0; {
		r := &p.recs[id]
		next := r.next
		if r.peer < 0 {
			p.cancelBuf = append(p.cancelBuf, OriginPeer)
		} else {
			p.cancelBuf = append(p.cancelBuf, p.slots[r.peer].id)
		}
		p.endRequest(id)
		id = next
	}
	return p.cancelBuf
}

func ewma(old, sample float64) float64 {
	if old == 0 {
		return sample
	}
	return old + scoreAlpha*(sample-old)
}

// Failed records that the request of chunk i to from failed (an error, a
// Reject, a chunk that failed its hash, a cancelled origin request): the
// chunk becomes pickable again and the peer takes a strike. It returns the
// peer's consecutive strikes.
func (p *Picker) Failed(i int, from PeerID) int {
	if !p.valid(i) {
		return 0
	}
	s, ok := p.slotOf(from)
	if !ok {
		return 0
	}
	if id := p.findReq(i, s); id >= 0 {
		p.endRequest(id)
	}
	if s < 0 {
		return 0
	}
	sc := &p.slots[s].score
	sc.Failures++
	sc.Strikes++
	return sc.Strikes
}

// Cancelled closes the request of chunk i to from without blame (we
// cancelled it ourselves).
func (p *Picker) Cancelled(i int, from PeerID) {
	if !p.valid(i) {
		return
	}
	if s, ok := p.slotOf(from); ok {
		if id := p.findReq(i, s); id >= 0 {
			p.endRequest(id)
		}
	}
}

// Timeouts closes every peer request older than RequestTimeout, gives each
// peer a strike (PeerScore.Timeouts), and appends the closed requests to
// dst: the caller should cancel them and may drop a peer with many
// strikes. Origin requests never time out here (the origin has its own
// stall and rate limits).
func (p *Picker) Timeouts(now time.Time, dst []Request) []Request {
	t := p.t(now)
	p.advance(t)
	for {
		e, ok := p.timeQ.peek()
		if !ok {
			break
		}
		if e.due > t {
			break
		}
		p.timeQ.pop()
		r := &p.recs[e.id]
		if !r.live || r.gen != e.gen {
			continue
		}
		sl := &p.slots[r.peer]
		if quiet := max(r.at, sl.lastRecv, sl.lastByte); t-quiet < int64(p.cfg.RequestTimeout) {
			// The peer is delivering (other chunks of the pipeline, or
			// parts of one): not timed out, look again later.
			p.timeQ.push(fifoEntry{e.id, e.gen, quiet + int64(p.cfg.RequestTimeout)})
			continue
		}
		dst = append(dst, Request{Chunk: int(r.chunk), Peer: sl.id, At: p.epoch.Add(time.Duration(r.at))})
		sl.score.Timeouts++
		sl.score.Strikes++
		p.endRequest(e.id)
	}
	return dst
}

// heap of chunk indices ordered by rank.

func (p *Picker) heapPush(i int32) {
	p.inHeap.Set(int(i))
	h := append(p.heap, i)
	k := len(h) - 1
	for k > 0 {
		parent := (k - 1) / 2
		if p.rank[h[parent]] <= p.rank[h[k]] {
			break
		}
		h[parent], h[k] = h[k], h[parent]
		k = parent
	}
	p.heap = h
}

func (p *Picker) heapPop() {
	h := p.heap
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	k := 0
	for {
		l := 2*k + 1
		if l >= len(h) {
			break
		}
		c := l
		if r := l + 1; r < len(h) && p.rank[h[r]] < p.rank[h[l]] {
			c = r
		}
		if p.rank[h[k]] <= p.rank[h[c]] {
			break
		}
		h[k], h[c] = h[c], h[k]
		k = c
	}
	p.heap = h
}

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

// Bitfield is a set of chunk indices, bit i of word i/64. Its wire form
// (Bytes) is one bit per chunk, bit i in byte i/8 at bit i%8 (LSB first),
// with zero padding.
type Bitfield []uint64

// NewBitfield returns an empty Bitfield for n chunks.
func NewBitfield(n int) Bitfield { return make(Bitfield, (max(n, 0)+63)/64) }

// Set adds i.
func (b Bitfield) Set(i int) { b[i>>6] |= 1 << (i & 63) }

// Clear removes i.
func (b Bitfield) Clear(i int) { b[i>>6] &^= 1 << (i & 63) }

// Has reports whether i is in b (false when out of range).
func (b Bitfield) Has(i int) bool {
	return i >= 0 && i>>6 < len(b) && b[i>>6]&(1<<(i&63)) != 0
}

// Count returns the number of members.
func (b Bitfield) Count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// mask returns the valid bits of word w for n chunks.
func (b Bitfield) mask(w, n int) uint64 {
	if rem := n - w*64; rem < 64 {
		if rem <= 0 {
			return 0
		}
		return (1 << rem) - 1
	}
	return ^uint64(0)
}

// AppendBytes appends the wire form of b for n chunks to dst.
func (b Bitfield) AppendBytes(dst []byte, n int) []byte {
	for k := range (n + 7) / 8 {
		var x byte
		if w := k / 8; w < len(b) {
			x = byte(b[w] >> (8 * (k % 8)))
		}
		if rem := n - 8*k; rem < 8 {
			x &= byte(1<<rem) - 1
		}
		dst = append(dst, x)
	}
	return dst
}

// BitfieldFromBytes decodes the wire form of a Bitfield of n chunks. data
// must be exactly (n+7)/8 bytes long with zero padding bits.
func BitfieldFromBytes(data []byte, n int) (Bitfield, error) {
	if n < 0 || len(data) != (n+7)/8 {
		return nil, errBitfieldLen
	}
	if n%8 != 0 && data[len(data)-1]>>(n%8) != 0 {
		return nil, errBitfieldPad
	}
	b := NewBitfield(n)
	for k, x := range data {
		b[k/8] |= uint64(x) << (8 * (k % 8))
	}
	return b, nil
}

var (
	errBitfieldLen = errors.New("bitfield length does not match the chunk count")
	errBitfieldPad = errors.New("bitfield padding bits set")
)

// PeerRef is a handle on a known peer for the *Ref methods, which skip
// looking the peer up by ID (the simulator calls them millions of times).
// It is valid until the peer leaves; a stale or zero PeerRef is ignored.
type PeerRef struct {
	slot int32
	gen  uint32
}

// Ref returns a handle on peer, false if the peer is not known.
func (p *Picker) Ref(peer PeerID) (PeerRef, bool) {
	s, ok := p.peers[peer]
	if !ok {
		return PeerRef{}, false
	}
	return PeerRef{s, p.slots[s].gen}, true
}

func (p *Picker) refSlot(r PeerRef) (int32, bool) {
	if r.slot < 0 || int(r.slot) >= len(p.slots) {
		return 0, false
	}
	sl := &p.slots[r.slot]
	return r.slot, sl.live && sl.gen == r.gen
}

// PeerHaveRef is PeerHave for a handle.
func (p *Picker) PeerHaveRef(r PeerRef, i int) {
	if s, ok := p.refSlot(r); ok {
		p.peerHave(s, i)
	}
}

// PeerPendingRef is PeerPending for a handle.
func (p *Picker) PeerPendingRef(r PeerRef, i int, now time.Time) {
	if s, ok := p.refSlot(r); ok {
		p.peerPending(s, i, now)
	}
}

// NextForPeerRef is NextForPeer for a handle.
func (p *Picker) NextForPeerRef(r PeerRef, now time.Time) (int, bool) {
	if s, ok := p.refSlot(r); ok {
		return p.nextForPeer(s, p.t(now))
	}
	return 0, false
}

// RequestedRef is Requested for a handle (a peer, never the origin).
func (p *Picker) RequestedRef(i int, r PeerRef, now time.Time) {
	if s, ok := p.refSlot(r); ok {
		p.requested(i, s, now)
	}
}

// slowFactor: with the members known, a peer serving us more than this
// many times slower than the mean of our measured peers is asked, while a
// request to it is open, only for chunks no other known peer has (see
// slowPeer).
const slowFactor = 4

// slowPeer: with the members known, a measured peer much slower than the
// others (overloaded, or on a thin uplink). Asking it for a chunk others
// also have wastes its upload, which the chunks only it holds need (often
// the ones it owns at the origin), and makes us wait on it.
//
// A peer is slow if it has been asked and delivered nothing for
// slowFactor times the mean time our peer requests take, or if its
// measured throughput is slowFactor times below the mean of the others'.
func (p *Picker) slowPeer(sl *peerSlot, t int64) bool {
	if !p.mem.on {
		return false
	}
	if sl.inflight > 0 && p.lat > 0 && float64(t-max(sl.busySince, sl.lastRecv)) > slowFactor*p.lat {
		return true
	}
	return p.measuredSlow(sl)
}

// measuredSlow: slowPeer's throughput test alone (the peer's measured
// throughput slowFactor times below the mean of our measured peers').
func (p *Picker) measuredSlow(sl *peerSlot) bool {
	return p.mem.on && p.tpN >= 4 && sl.score.Throughput > 0 &&
		sl.score.Throughput*slowFactor*float64(p.tpN) < p.tpSum
}
