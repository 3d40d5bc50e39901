package simulations

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/storkpm/stork/transfer/policy"
)

// Strategy is how hosts get the package.
type Strategy string

// The strategies.
const (
	// OriginPerVM: every VM downloads the whole package from the origin.
	OriginPerVM Strategy = "origin-per-vm"
	// OriginPerHost: one HTTP download per host (a per-host cache) of the
	// chunks the host's store lacks; the VMs share it.
	OriginPerHost Strategy = "origin-per-host"
	// Swarm: the Stork swarm, policy.Picker choosing chunks and
	// sources, random peers, the origin as last resort.
	Swarm Strategy = "swarm"
	// SwarmLocality: the swarm with every host knowing its site: peers
	// chosen in the host's site first (at most Policy.CrossSitePeers
	// elsewhere), requests sent to same-site peers first, and the
	// policy's site rule in every Picker (policy.Picker.SetSites): a chunk
	// a same-site peer holds is not asked across, one none holds is asked
	// across by one host of the site.
	SwarmLocality Strategy = "swarm-locality"
	// SwarmCoop: the swarm with cooperative origin fetching (coop.go):
	// each origin request goes to the chunk's first-ranked member
	// (policy.Fetchers), which fetches the chunk from the origin once and
	// serves every host asking.
	SwarmCoop Strategy = "swarm-coop"
	// SwarmSites: the swarm as a daemon given --site runs it, every host
	// knowing its site: swarm-locality's site rule and peer choice, and
	// cooperative origin fetching in two levels (coop.go): each origin
	// request goes to the chunk's first-ranked member in the host's site,
	// which asks the chunk's global fetcher (policy.Fetchers.Upstream)
	// once for its whole site; only the global fetcher asks the origin.
	SwarmSites Strategy = "swarm-sites"
)

// Strategies returns the strategies a sweep runs by default, baselines
// first.
func Strategies() []Strategy { return []Strategy{OriginPerVM, OriginPerHost, Swarm, SwarmLocality} }

// AllStrategies returns every strategy: Strategies, then SwarmCoop and
// SwarmSites.
func AllStrategies() []Strategy { return append(Strategies(), SwarmCoop, SwarmSites) }

// ParseStrategy checks a strategy name.
func ParseStrategy(s string) (Strategy, error) {
	for _, x := range AllStrategies() {
		if string(x) == s {
			return x, nil
		}
	}
	return "", fmt.Errorf("unknown strategy %q (origin-per-vm, origin-per-host, swarm, swarm-locality, swarm-coop, swarm-sites)", s)
}

// ErrUnfinished: the simulation hit its time or event limit before every
// host finished.
var ErrUnfinished = errors.New("simulation did not finish")

// event kinds
const (
	evArrive uint8 = iota
	evDiscover
	evHello
	evRequest
	evChunk
	evReject
	evCancel
	evHave
	evFetching
	evOriginReq
	evBaseDone
	evTick
	evLeave
	evRejoin
	evPeerGone
	evSample
)

// host states
const (
	stIdle uint8 = iota // not arrived yet
	stActive
	stDone
	stGone
)

// session is one end of a connection between two hosts in one package;
// a run holds one per host and peer (and a workload per package), so it
// is kept small: what HeadOfLine holds back is in a side table.
type session struct {
	peer    int32
	rev     int32 // index of the reverse session in the peer's list
	flow    int32 // our upload flow to the peer, -1 none
	wpos    int32 // known: our place in the peer's watchers
	held    int32 // HeadOfLine: our messages waiting for flow to end, at sim.heldQ[held-1]; 0 none
	known   bool  // the peer is in this host's Picker
	dropped bool  // dropped for strikes: never known again
	local   bool  // same site
	discard bool  // WriteAhead: flow was cancelled, the receiver discards it
	ref     policy.PeerRef
	queue   []int32
}

// watcher is a peer whose Picker knows this host: it hears our
// HaveUpdates and Fetching messages. k is its session with us; p and ref
// are its Picker and its handle on us there (its session's, kept here so
// that the fan-out of a HaveUpdate touches little else of the watcher).
type watcher struct {
	q     int32
	k     int32
	local bool
	ref   policy.PeerRef
	p     *policy.Picker
}

// host is one host's state in one package. What a tick reads comes
// first, in its first two cache lines: a tick of a download that waits
// reads little else, and most events are ticks.
type host struct {
	site  int32
	vms   int32
	state uint8
	// committing: its commit work runs (CPU.PerCommit, cpu.go finish);
	// working: its work beside its download runs (CPU.PerDownload), and
	// waitWork: its chunks are in, it waits for that work.
	committing, working, waitWork bool
	lastFind                      float64
	lastFull                      float64
	picker                        *policy.Picker
	have                          policy.Bitfield
	oreq                          policy.Bitfield // open origin requests
	sess                          []session
	watch                         []watcher
	up, down                      float64
	arrival                       float64
	done                          float64
	membVer                       uint64 // presVer when the Picker last got SetMembers
	membSet                       bool
	membN                         int     // visible members when the Picker last got SetMembers
	pub                           float64 // when other hosts' lookups find this host (ProviderDelay)
	rejoin                        bool
	left                          bool // left for good

	// baselines: bytes left per download (per VM or one)
	baseLeft []float64

	fromOrigin, fromSite, fromWAN, dup, uploaded float64
}

// HostResult is one host's outcome.
type HostResult struct {
	Host    int
	Site    int
	VMs     int
	Upload  float64 // bytes/s
	Down    float64 // bytes/s
	Arrival float64 // seconds
	// Done: when the host had the whole package; NaN if it never did
	// (left for good).
	Done float64
	// Bytes received from the origin, from peers of the same site, from
	// peers of other sites; duplicates (received but already held, or
	// sent whole after a Cancel and discarded: Scenario.WriteAhead);
	// bytes uploaded to peers (aborted flows count what was sent).
	FromOrigin, FromSite, FromWAN, Duplicate, Uploaded float64
}

// Sample is the origin's cumulative bytes at a time.
type Sample struct {
	T     float64
	Bytes float64
}

// Result is what one run measured.
type Result struct {
	Scenario string
	Strategy Strategy
	Hosts    int
	VMs      int
	// PackageBytes is the package's size S.
	PackageBytes float64
	// OriginBytes: bytes the origin sent (aborted transfers count what
	// was sent).
	OriginBytes float64
	// MetadataBytes: the origin's bytes of the repository's other files
	// (Scenario.Metadata), counted, not simulated: in no other figure
	// (Offload, Origin samples); OriginTotal adds them up.
	MetadataBytes float64 `json:",omitempty"`
	// Delivered = S × the VMs of the hosts that finished: what the VMs
	// received, and what origin-per-vm pulls from the origin.
	Delivered float64
	// HostDelivered = S × the hosts that finished.
	HostDelivered float64
	// Offload = 1 - OriginBytes/Delivered; HostOffload = 1 -
	// OriginBytes/HostDelivered (what sharing between hosts saves,
	// without the per-host cache's share).
	Offload, HostOffload float64
	// Peer bytes: same site, across sites; duplicates.
	SiteBytes, WANBytes, DuplicateBytes float64
	// Completion times (seconds from arrival) of the hosts that finished.
	P50, P95, Max float64
	// Makespan: when the last host finished (seconds from time 0).
	Makespan float64
	// Bound: FluidBound(scenario); Ratio = Makespan / Bound (meaningful
	// for flash crowds).
	Bound, Ratio float64
	// Finished and Departed hosts (left for good).
	Finished, Departed int
	Events             int64
	PerHost            []HostResult `json:"-"`
	Origin             []Sample     `json:"-"`
	// Wall and PeakHeap measure the simulator (RunMeasured only).
	Wall     time.Duration `json:"-"`
	PeakHeap uint64        `json:"-"`
}

type sim struct {
	*engine  // shared by the packages of a workload (workload.go)
	sc       Scenario
	strat    Strategy
	rng      *rand.Rand
	n        int32
	nChunks  int
	chunkLen []int32
	inParts  bool // some chunk is sent in parts (longer than policy.PartSize)
	pkgBytes float64
	origin   int32 // origin server id
	hosts    []host
	ids      []policy.PeerID
	present  []int32 // hosts active or done
	presPos  []int32
	siteHost [][]int32 // present hosts by site
	sitePos  []int32
	pending  int // hosts that still have to finish
	old      policy.Bitfield
	nw       int      // words per have-map
	haveM    []uint64 // every host's have-map, host h's at [h*nw:(h+1)*nw]
	epoch    time.Time
	tmo      []policy.Request
	wdr      []policy.Request // Picker.Withdrawn
	ask      []int32          // fillRef's
	fan      fanOut           // haveUpdate's, on the event loop
	helper   *fanHelper       // haveUpdate's second goroutine, nil none
	fanPar   bool             // run with a helper (fanParallelHosts)
	pipe     *pipe            // the fan-out pipeline (pipe.go), nil none
	// tests: a pipeline without its helper (the event loop runs every job)
	pipeNoHelper bool
	pipeBehind   uint64 // tests: the pipe's behind, 0 pipeBehind
	onStart      func() // tests: called once the run started
	samples      []Sample
	pcfg         policy.PickerConfig
	latSite      float64
	latWAN       float64
	latOrig      float64
	locality     bool
	swarm        bool
	finished     bool
	maxT         float64
	sampleDt     float64
	onMany       func(now float64, events int64) // called every memSampleEveryEvts events
	memb         []policy.PeerID
	presVer      uint64             // changes whenever present does
	presMoved    bool               // a host left from the middle of present (visible)
	ring         *policy.MemberRing // of present at ringVer
	ringVer      uint64
	ringN        int // visible members in ring
	ringsMade    int // rings made (tests)
	coop         coopState
	starts       []float64     // each host's arrival, nil: sc.Arrival (workload.go)
	onDone       func(h int32) // called when host h has the package (workload.go)
	onJob        func(h int32) // called when host h's start-up work is done (workload.go); nil: it arrives
	res          *Result       // the result, once released (workloadRun.release), without PerHost
	resBytes     []hostBytes   // the hosts' bytes in res
	// pruneQ: done hosts whose sessions with other done hosts are not
	// dropped yet, from pruneHead on (prune.go); pruneOn: s drops them.
	pruneQ    []int32
	pruneHead int
	pruneOn   bool
	// heldQ: the messages sessions hold back (HeadOfLine, session.held);
	// heldFree: its free entries.
	heldQ    [][]event
	heldFree []int32
}

// Run simulates strategy st on scenario sc.
func Run(sc Scenario, st Strategy) (*Result, error) { return runSampled(sc, st, nil) }

// runSampled is Run calling onMany (if not nil) every memSampleEveryEvts
// events of each run of the event loop.
func runSampled(sc Scenario, st Strategy, onMany func(now float64, events int64)) (*Result, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	if _, err := ParseStrategy(string(st)); err != nil {
		return nil, err
	}
	sc = sc.withDefaults()
	if sc.Packages.Count > 0 {
		return runWorkload(sc, st, onMany)
	}
	if (st == SwarmCoop || st == SwarmSites) && sc.Churn.Fraction > 0 {
		return nil, fmt.Errorf("scenario %s: %s: %w", sc.Name, st, ErrCoopChurn)
	}
	s := newSim(sc, st)
	s.onMany = onMany
	if err := s.run(); err != nil {
		return nil, err
	}
	return s.result(), nil
}

func newSim(sc Scenario, st Strategy) *sim { return newSimAt(sc, st, nil, nil) }

// newSimAt is newSim with host h arriving at starts[h] (nil: as
// sc.Arrival says; +Inf: when the caller schedules it), on engine e
// (nil: an engine of its own) whose servers and site links, if it has
// them, are the same scenario's hosts' (a workload's packages share them).
func newSimAt(sc Scenario, st Strategy, starts []float64, e *engine) *sim {
	n := int32(sc.Hosts)
	if e == nil {
		e = &engine{}
	}
	s := &sim{
		engine: e,
		sc:     sc, strat: st, n: n,
		rng:      rand.New(rand.NewPCG(sc.Seed, 0x5715)),
		nChunks:  sc.NumChunks(),
		pkgBytes: float64(sc.PackageSize),
		epoch:    time.Unix(0, 0),
		latSite:  sc.Latency.Site.Seconds(),
		latWAN:   sc.Latency.WAN.Seconds(),
		latOrig:  sc.Latency.Origin.Seconds(),
		locality: st == SwarmLocality || st == SwarmSites,
		fanPar:   n >= fanParallelHosts,
		swarm:    st == Swarm || st == SwarmLocality || st == SwarmCoop || st == SwarmSites,
		starts:   starts,
	}
	s.coop.on, s.coop.all = st == SwarmCoop || st == SwarmSites, starts != nil
	s.coop.two = st == SwarmSites
	if s.coop.on {
		s.coop.pullSrc = make([]int32, int(n)*sc.NumChunks())
	}
	s.pruneOn = s.prunable()
	if s.recvShare == nil {
		// A workload's first package's hosts: every package draws the
		// same links from the same seed, and the first one is never
		// released (its origin samples run to the end).
		s.recvShare = func(dst int32) float64 {
			return s.hosts[dst].down / float64(max(len(s.rin[dst].in), 1))
		}
	}
	// The delays of most messages: a tick's, the latencies' (eventQueue).
	for _, d := range []float64{sc.Policy.Tick.Seconds(), s.latSite, s.latWAN, s.latOrig} {
		e.events.addLane(d)
	}
	s.initChunks()
	s.initHosts()
	if s.coop.on && s.jobs() {
		// A host is in the overlay while its start-up work runs (the
		// daemons meet before they fetch): the members are every host of
		// the run from the start, not those whose start-up ended first,
		// which would rank themselves fetchers among a few and each ask
		// the origin (coop.go).
		s.coop.all = true
	}
	s.scheduleStart()
	s.setLimits()
	return s
}

// initChunks sets the chunks' lengths, those the old version already has,
// and the PickerConfig every host's Picker shares.
func (s *sim) initChunks() {
	sc, n := s.sc, s.n
	s.chunkLen = make([]int32, s.nChunks)
	for i := range s.nChunks {
		s.chunkLen[i] = int32(min(int64(sc.ChunkSize), int64(sc.PackageSize)-int64(i)*int64(sc.ChunkSize)))
		s.inParts = s.inParts || s.chunkLen[i] > policy.PartSize
	}
	// Which chunks version 1 already has: the same on every host.
	s.old = policy.NewBitfield(s.nChunks)
	s.nw = len(s.old)
	s.haveM = make([]uint64, int(n)*s.nw)
	if sc.NewVersion.Reuse > 0 {
		vr := rand.New(rand.NewPCG(sc.Seed, 0x01d))
		for i := range s.nChunks {
			if vr.Float64() < sc.NewVersion.Reuse {
				s.old.Set(i)
			}
		}
	}
	s.pcfg = policy.PickerConfig{
		NumChunks:          s.nChunks,
		ChunkLen:           func(i int) int64 { return int64(s.chunkLen[i]) },
		OriginParallel:     sc.Policy.OriginParallel,
		RequestTimeout:     time.Duration(sc.Policy.RequestTimeout),
		MaxInflightPerPeer: sc.Policy.MaxInflightPerPeer,
		MaxInflightBytes:   int64(sc.Policy.MaxInflightBytes),
		EndgameThreshold:   sc.Policy.EndgameThreshold,
		OriginSwarmWindow:  sc.Policy.OriginSwarmWindow,
		Order:              policy.NewChunkOrder(s.nChunks), // shared by every host's Picker
	}
	s.pcfg.OriginFallbackDelay = time.Duration(sc.Policy.OriginFallbackDelay)
}

// initHosts draws every host's links, then makes the origin and the site
// links.
func (s *sim) initHosts() {
	sc, n := s.sc, s.n
	s.hosts = make([]host, n)
	s.ids = s.engine.ids
	if len(s.ids) != int(n) {
		s.ids = make([]policy.PeerID, n)
	}
	if len(s.engine.resp) != int(n) {
		s.engine.resp = make([]policy.ResponseTimes, n)
	}
	s.presPos = make([]int32, n)
	s.sitePos = make([]int32, n)
	s.siteHost = make([][]int32, sc.Sites)
	for h := range n {
		hs := &s.hosts[h]
		hs.site = h % int32(sc.Sites)
		hs.vms = int32(sc.VMsPerHost)
		hs.up = sc.HostUpload.draw(s.rng.Float64())
		hs.down = sc.HostDownload.draw(s.rng.Float64())
		hs.done = math.NaN()
		if s.ids[h] == "" {
			s.ids[h] = policy.PeerID("h" + strconv.Itoa(int(h)))
		}
		s.presPos[h] = -1
		s.sitePos[h] = -1
	}
	if s.srvs != nil {
		// A workload's later package: the first one's servers and links.
		s.origin = n
		s.addPullServers()
		return
	}
	for h := range n {
		s.addUploadServer(s.hosts[h].up)
	}
	s.rin = make([]recvList, n)
	s.origin = s.addServer(float64(sc.OriginUpload))
	s.addPullServers()
	s.links = make([]link, 2*sc.Sites)
	for k := range sc.Sites {
		s.links[2*k].capacity = float64(sc.SiteUplink)
		s.links[2*k+1].capacity = float64(sc.SiteDownlink)
	}
	for k := range s.links {
		s.relevel(int32(k))
	}
	s.initCPU()
}

// scheduleStart schedules the arrivals, the departures (churn) and the
// first sample.
func (s *sim) scheduleStart() {
	sc, n := s.sc, s.n
	s.pending = int(n)
	// Arrivals.
	for h := range n {
		t := 0.0
		if s.starts != nil {
			t = s.starts[h]
		} else if sc.Arrival.Pattern == ArrivalStaggered {
			t = s.rng.Float64() * sc.Arrival.Over.Seconds()
		}
		s.hosts[h].arrival = t
		switch {
		case math.IsInf(t, 1):
		case s.jobs():
			s.schedule(t, evJob, h, 0, 0)
		default:
			s.schedule(t, evArrive, h, 0, 0)
		}
	}
	// Churn.
	if sc.Churn.Fraction > 0 {
		for h := range n {
			if s.rng.Float64() >= sc.Churn.Fraction {
				continue
			}
			t := sc.Churn.From.Seconds() + s.rng.Float64()*(sc.Churn.To.Seconds()-sc.Churn.From.Seconds())
			s.schedule(max(t, s.hosts[h].arrival), evLeave, h, 0, 0)
		}
	}
	if s.tag > 0 {
		return // a workload's later package: the first one samples the origin
	}
	t0 := 0.0
	if s.starts != nil {
		t0 = math.Inf(1)
		for _, t := range s.starts {
			t0 = min(t0, t)
		}
	}
	s.schedule(t0, evSample, 0, 0, 0)
}

// setLimits sets the sampling interval and the time limit of the run.
func (s *sim) setLimits() {
	sc, st := s.sc, s.strat
	// A generous limit: a hundred times the slowest plausible run.
	b := FluidBound(sc)
	perVM := float64(sc.Hosts*sc.VMsPerHost) * s.pkgBytes / float64(sc.OriginUpload)
	// Samples: SampleInterval, or about 500 over the expected run.
	s.sampleDt = sc.SampleInterval.Seconds()
	if sc.SampleInterval == 0 {
		est := 5 * b
		switch st {
		case OriginPerVM:
			est = perVM
		case OriginPerHost:
			est = perVM / float64(sc.VMsPerHost)
		}
		s.sampleDt = max(0.05, est/500)
	}
	last := 0.0
	for _, t := range s.starts {
		last = max(last, t)
	}
	s.maxT = last + 100*max(b, perVM, cpuBound(sc, s.pkgBytes, 1)) + sc.Arrival.Over.Seconds() + sc.Churn.To.Seconds() + sc.Churn.RejoinAfter.Seconds() + 600
}

func (s *sim) at(t float64) time.Time { return s.epoch.Add(time.Duration(t * 1e9)) }

// lat is the one-way delay between two hosts.
func (s *sim) lat(a, b int32) float64 {
	if s.hosts[a].site == s.hosts[b].site {
		return s.latSite
	}
	return s.latWAN
}

// A run of hugeAdviceHosts hosts or more asks for huge pages for its heap
// (adviseHugePages) at the start and every hugeAdviceEvery events.
const (
	hugeAdviceHosts   = 1000
	hugeAdviceEvery   = 1 << 18
	hugeCollapseEvery = 1 << 22
)

func (s *sim) run() error {
	if s.n >= hugeAdviceHosts {
		adviseHugePages(true)
	}
	if s.pipeOK() {
		s.startPipe()
		defer s.stopPipe()
	} else {
		s.startHelper()
		defer s.stopHelper()
	}
	if s.onStart != nil {
		s.onStart()
	}
	for !s.finished {
		sid, ts := s.nextServer()
		if s.pipe != nil {
			next := min(ts, s.events.nextT())
			if s.pipeDue(next) {
				s.emitOldest() // its messages may come first
				continue
			}
		}
		if s.events.empty() && math.IsInf(ts, 1) {
			return fmt.Errorf("%w: %s, %d hosts: nothing left to happen with %d hosts unfinished", ErrUnfinished, s.strat, s.n, s.pending)
		}
		if !s.events.empty() && s.events.nextT() <= ts {
			ev := s.events.pop()
			s.now = max(s.now, ev.t)
			s.handle(ev)
		} else {
			s.now = max(s.now, ts)
			if id := s.finishing(sid); !s.pieceNext(id) {
				s.flowDone(id) // not a piece of a flow with more to send
			}
		}
		s.nEv++
		if s.afterEvent != nil {
			s.afterEvent()
		}
		if s.nEv%hugeAdviceEvery == 0 && s.n >= hugeAdviceHosts {
			adviseHugePages(s.nEv%hugeCollapseEvery == 0)
		}
		if s.onMany != nil && s.nEv%memSampleEveryEvts == 0 {
			s.onMany(s.now, s.nEv)
		}
		if s.now > s.maxT {
			return fmt.Errorf("%w: %s, %d hosts: %d unfinished at t=%.0fs", ErrUnfinished, s.strat, s.n, s.pending, s.now)
		}
	}
	s.countInFlight()
	return nil
}

// countInFlight counts the chunks still on their way when the last host
// finished (sent whole, their arrival not yet handled: a duplicate, or a
// chunk a finished host no longer wants) as received over the links they
// crossed and as duplicates, as the testbed's link counters would.
func (s *sim) countInFlight() {
	// The hosts' byte counts are whole numbers (chunk lengths), so the
	// order the queue holds the messages in does not change their sums.
	s.events.each(func(ev event) {
		if ev.pkg != s.tag || (ev.kind != evChunk && ev.kind != evPulled) || ev.b < 0 {
			return
		}
		s.discarded(flow{dst: ev.a, srv: ev.b, size: float64(s.chunkLen[ev.c])})
	})
}

func (s *sim) handle(ev event) {
	switch ev.kind {
	case evArrive:
		s.arrive(ev.a, false)
	case evRejoin:
		s.arrive(ev.a, true)
	case evDiscover:
		s.discover(ev.a)
	case evHello:
		s.hello(ev.a, ev.b)
	case evRequest:
		s.request(ev.a, ev.b, ev.c)
	case evChunk:
		s.chunk(ev.a, ev.b, ev.c)
	case evReject:
		s.reject(ev.a, ev.b, ev.c)
	case evCancel:
		s.cancel(ev.a, ev.b, ev.c)
	case evHave:
		s.haveUpdate(ev.a, ev.b, ev.c)
	case evFetching:
		s.fetching(ev.a, ev.b, ev.c)
	case evOriginReq:
		s.originReq(ev.a, ev.b, ev.c)
	case evBaseDone:
		s.baseDone(ev.a, ev.b)
	case evTick:
		s.tick(ev.a)
	case evLeave:
		s.leave(ev.a)
	case evPeerGone:
		s.peerGone(ev.a, ev.b)
	case evPull:
		s.pull(ev.a, ev.b, ev.c)
	case evPulled:
		s.pulled(ev.a, ev.b, ev.c)
	case evPullFetch:
		s.pullFetch(ev.a, ev.c)
	case evJob:
		s.startJob(ev.a)
	case evWork:
		s.startWork(ev.a)
	case evSample:
		s.samples = append(s.samples, Sample{T: s.now, Bytes: s.sentNow(s.origin)})
		s.schedule(s.now+s.sampleDt, evSample, 0, 0, 0)
	default:
		s.handleHeadOfLine(ev)
	}
}

// presence lists

func (s *sim) setPresent(h int32, on bool) {
	site := s.hosts[h].site
	if on {
		if s.presPos[h] >= 0 {
			return
		}
		s.presVer++
		s.presPos[h] = int32(len(s.present))
		s.present = append(s.present, h)
		s.sitePos[h] = int32(len(s.siteHost[site]))
		s.siteHost[site] = append(s.siteHost[site], h)
		return
	}
	if s.presPos[h] < 0 {
		return
	}
	s.presVer++
	if s.present[len(s.present)-1] != h {
		s.presMoved = true // present is no longer in the order of arrival (visible)
	}
	rm := func(list []int32, pos []int32, h int32) []int32 {
		k := pos[h]
		last := list[len(list)-1]
		list[k] = last
		pos[last] = k
		pos[h] = -1
		return list[:len(list)-1]
	}
	s.present = rm(s.present, s.presPos, h)
	s.siteHost[site] = rm(s.siteHost[site], s.sitePos, h)
}

func (s *sim) arrive(h int32, rejoin bool) {
	hs := &s.hosts[h]
	if !rejoin && hs.state != stIdle {
		return
	}
	if rejoin {
		hs.rejoin = true
	}
	done := hs.state == stDone || (rejoin && !math.IsNaN(hs.done))
	s.setPresent(h, true)
	hs.pub = s.now + s.sc.Policy.ProviderDelay.Seconds()
	if k := s.presPos[h]; int(k) != len(s.present)-1 || (k > 0 && s.hosts[s.present[k-1]].pub > hs.pub) {
		s.presMoved = true // not the latest record last (visible)
	}
	if done {
		hs.state = stDone
		return
	}
	hs.state = stActive
	hs.committing = false
	if !rejoin && s.cpu.perDownload > 0 && s.cpu.jobBase > 0 {
		// Once per package: after the start-up, beside the download.
		s.schedule(s.now+s.sc.Policy.DiscoveryDelay.Seconds(), evWork, h, 0, 0)
	}
	if !s.swarm {
		s.baseStart(h)
		return
	}
	if hs.have == nil {
		hs.have = policy.Bitfield(s.haveM[int(h)*s.nw : int(h+1)*s.nw : int(h+1)*s.nw])
		copy(hs.have, s.old)
	}
	cfg := s.pcfg
	cfg.Rand = rand.New(rand.NewPCG(s.sc.Seed^0x9e3779b97f4a7c15, uint64(h)<<1|b2u(rejoin)))
	cfg.EndgameDelay = s.endgameDelay(h)
	p := policy.NewPicker(cfg)
	if s.locality {
		p.SetSites(s.ids[h])
	}
	for w, x := range hs.have {
		for b := range 64 {
			if x&(1<<b) != 0 {
				p.SetHave(w*64 + b)
			}
		}
	}
	hs.picker = p
	hs.membSet = false // a new Picker knows no members yet
	hs.oreq = policy.NewBitfield(s.nChunks)
	if p.Done() {
		s.hostDone(h)
		return
	}
	s.schedule(s.now+s.sc.Policy.DiscoveryDelay.Seconds(), evDiscover, h, 0, 0)
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// ---- baselines ----

func (s *sim) baseStart(h int32) {
	hs := &s.hosts[h]
	if hs.baseLeft == nil {
		k := 1
		if s.strat == OriginPerVM {
			k = int(hs.vms)
		}
		hs.baseLeft = make([]float64, k)
		for v := range hs.baseLeft {
			hs.baseLeft[v] = s.pkgBytes
			if s.strat == OriginPerHost {
				// the store already holds version 1's chunks
				var missing float64
				for i := range s.nChunks {
					if !s.old.Has(i) {
						missing += float64(s.chunkLen[i])
					}
				}
				hs.baseLeft[v] = missing
			}
		}
	}
	for v, left := range hs.baseLeft {
		if left > 0 {
			s.schedule(s.now+s.latOrig, evOriginReq, h, int32(v), -1)
		}
	}
	s.checkBaseDone(h)
}

func (s *sim) checkBaseDone(h int32) {
	hs := &s.hosts[h]
	for _, left := range hs.baseLeft {
		if left > 0 {
			return
		}
	}
	s.finish(h)
}

func (s *sim) baseDone(h, vm int32) {
	hs := &s.hosts[h]
	if hs.state != stActive {
		return
	}
	hs.baseLeft[vm] = 0
	s.checkBaseDone(h)
}

// ---- flows ----

func (s *sim) siteLinks(from, to int32) (su, sd int32) {
	su, sd = -1, -1
	if from < 0 {
		return -1, 2*s.hosts[to].site + 1
	}
	a, b := s.hosts[from].site, s.hosts[to].site
	if a != b {
		su, sd = 2*a, 2*b+1
	}
	return su, sd
}

// open starts a flow to host dst from host src (-1: the origin).
func (s *sim) open(src, dst, chunk, vm int32, size float64) int32 {
	su, sd := s.siteLinks(src, dst)
	sid := s.origin
	if src >= 0 {
		sid = src
		if vm == pullFlow && s.coop.pullBase > 0 {
			sid = s.coop.pullBase + src
		}
	}
	cls := uint32(s.tag) << clsShift
	switch {
	case src < 0:
		cls |= clsOrigin
	case vm == pullFlow:
		cls |= clsPull
	}
	if src >= 0 && chunk >= 0 && size > policy.PartSize {
		cls |= clsParts
	}
	var from policy.PeerRef
	if p := s.hosts[dst].picker; cls&clsParts != 0 && p != nil {
		from, _ = p.Ref(s.ids[src])
	}
	r := &s.rin[dst]
	r.in = append(r.in, -1) // counted before the cap is computed
	r.cls = append(r.cls, cls)
	r.from = append(r.from, from)
	id := s.startFlow(sid, dst, chunk, vm, size, su, sd)
	r.in[len(r.in)-1] = id
	s.flows[id].inPos = int32(len(r.in) - 1)
	s.recap(dst)
	return id
}

// close ends flow id and returns the bytes it moved.
func (s *sim) close(id int32) float64 {
	f := s.flows[id]
	rem := s.endFlow(id)
	r := &s.rin[f.dst]
	last := r.in[len(r.in)-1]
	r.in[f.inPos] = last
	r.cls[f.inPos] = r.cls[len(r.cls)-1]
	r.from[f.inPos] = r.from[len(r.from)-1]
	s.flows[last].inPos = f.inPos
	r.in = r.in[:len(r.in)-1]
	r.cls = r.cls[:len(r.cls)-1]
	r.from = r.from[:len(r.from)-1]
	s.recap(f.dst)
	moved := f.size - rem
	if f.srv == s.origin {
		s.hosts[f.dst].fromOrigin += moved
	} else {
		s.hosts[s.srvHost(f.srv)].uploaded += moved
	}
	return moved
}

// recap refreshes the caps of host h's incoming flows once their count
// has drifted by more than recvDrift (at least one flow) from the count at
// the last refresh. In between, a new flow gets the current share and the
// others keep theirs, as on site links: the downlink may be over- or
// under-committed by up to recvDrift, and a start or end of a flow costs
// a re-cap of the receiver's flows only every few times.
func (s *sim) recap(h int32) {
	r := &s.rin[h]
	n := len(r.in)
	if tol := int(recvDrift * float64(r.ref)); n >= r.ref-tol && n <= r.ref+tol {
		return
	}
	r.ref = n
	rs := s.hosts[h].down / float64(max(n, 1))
	for k := 0; k < len(r.in); k++ {
		id := r.in[k]
		s.setCap(id, s.capWith(id, rs))
	}
}

// recvDrift: see recap.
const recvDrift = 0.1

func (s *sim) flowDone(id int32) {
	f := s.flows[id]
	if s.isJob(id) {
		s.jobDone(id)
		return
	}
	s.close(id)
	switch {
	case f.chunk < 0: // baseline download
		s.hosts[f.dst].baseLeft[f.vm] = 0
		s.schedule(s.now+s.latOrig, evBaseDone, f.dst, f.vm, 0)
	case f.srv == s.origin:
		s.schedule(s.now+s.latOrig, evChunk, f.dst, -1, f.chunk)
	case f.vm == pullFlow:
		src := s.srvHost(f.srv)
		s.schedule(s.now+s.lat(src, f.dst), evPulled, f.dst, src, f.chunk)
	default:
		src := f.srv
		se := &s.hosts[src].sess[f.vm]
		se.flow = -1
		if se.discard {
			se.discard = false
			s.discarded(f)
		} else {
			s.schedule(s.now+s.lat(src, f.dst), evChunk, f.dst, src, f.chunk)
		}
		s.flushHeld(src, int(f.vm))
		s.startUpload(src, int(f.vm))
	}
}

// ---- the swarm ----

func (s *sim) sessionOf(h, peer int32) int {
	for k := range s.hosts[h].sess {
		if s.hosts[h].sess[k].peer == peer {
			return k
		}
	}
	return -1
}

// connect opens a session between h and q (if none) and returns h's index.
func (s *sim) connect(h, q int32) int {
	if k := s.sessionOf(h, q); k >= 0 {
		return k
	}
	hs, qs := &s.hosts[h], &s.hosts[q]
	local := hs.site == qs.site
	kh, kq := len(hs.sess), len(qs.sess)
	hs.sess = append(hs.sess, session{peer: q, rev: int32(kq), flow: -1, local: local})
	qs.sess = append(qs.sess, session{peer: h, rev: int32(kh), flow: -1, local: local})
	return kh
}

func (s *sim) knowPeer(h int32, k int) {
	hs := &s.hosts[h]
	se := &hs.sess[k]
	if se.known || se.dropped || hs.picker == nil {
		return
	}
	se.known = true
	ps := &s.hosts[se.peer]
	se.wpos = int32(len(ps.watch))
	s.waitFree(h)
	hs.picker.PeerJoined(s.ids[se.peer], ps.have)
	if s.locality {
		hs.picker.SetPeerLocal(s.ids[se.peer], se.local)
	}
	se.ref, _ = hs.picker.Ref(s.ids[se.peer])
	ps.watch = append(ps.watch, watcher{q: h, k: int32(k), local: se.local, ref: se.ref, p: hs.picker})
	// Its flows in parts into h, if any, get h's handle on it (progress).
	r := &s.rin[h]
	for j, c := range r.cls {
		if c>>clsShift == uint32(s.tag) && c&clsParts != 0 && r.in[j] >= 0 && s.srvHost(s.flows[r.in[j]].srv) == se.peer {
			r.from[j] = se.ref
		}
	}
}

// unknow takes h's session k out of its peer's watchers.
func (s *sim) unknow(h int32, k int) {
	se := &s.hosts[h].sess[k]
	if !se.known {
		return
	}
	se.known = false
	ps := &s.hosts[se.peer]
	w := int(se.wpos)
	if w >= len(ps.watch) || ps.watch[w].q != h {
		return // the peer left and forgot its watchers
	}
	last := ps.watch[len(ps.watch)-1]
	ps.watch[w] = last
	s.hosts[last.q].sess[last.k].wpos = int32(w)
	ps.watch = dropLastWatcher(ps.watch)
}

// dropLastWatcher shortens ws by one, clearing the entry it drops: the
// array keeps its capacity, and a watcher left past the end would keep
// the watcher's Picker (every host's, once done) from being collected.
func dropLastWatcher(ws []watcher) []watcher {
	ws[len(ws)-1] = watcher{}
	return ws[:len(ws)-1]
}

func (s *sim) discover(h int32) {
	s.waitFree(h)
	hs := &s.hosts[h]
	if hs.state != stActive || hs.picker == nil {
		return
	}
	hs.lastFind = s.now
	// The DHT's providers: every host present whose record is out, not
	// only the peers we connect to (again only if they changed since:
	// the same members give the same ranks). With swarm-coop, every
	// present host: the overlay's members (coop.go).
	visible := s.visible()
	members := visible
	if s.coop.on {
		members = s.coopMembers()
	}
	// Present unchanged, the visible hosts only grow: presVer and their
	// count name the set. A workload's cooperative members are every host
	// of the run, whoever has started the package: one set, one version,
	// so that hosts starting a package one by one do not remake its ring
	// each time (its cost grew with the square of the hosts).
	ver := s.presVer
	if s.coop.on && s.coop.all {
		ver = 0
	}
	if hs.membVer != ver || !hs.membSet || hs.membN != len(members) {
		hs.membVer, hs.membSet, hs.membN = ver, true, len(members)
		if s.ring == nil || s.ringVer != ver || s.ringN != len(members) {
			// One ring for every host that looks while the members are
			// unchanged (SetMemberRing decides what SetMembers would).
			s.memb = s.memb[:0]
			for _, q := range members {
				s.memb = append(s.memb, s.ids[q])
			}
			s.ring, s.ringVer, s.ringN = policy.NewMemberRing(s.memb), ver, len(members)
			s.ringsMade++
		}
		hs.picker.SetMemberRing(s.ids[h], s.ring)
		if s.coop.on {
			hs.picker.SetPullThrough(len(members) > 1)
		}
	}
	if s.coop.on && hs.picker.Peers() == 0 {
		// The daemon's download schedules once before its first session
		// is open (transfer/swarm download.run: findPeers runs beside
		// it): its first origin requests go to their fetchers before it
		// knows who holds what, and a pull-through request whose fetcher
		// holds the chunk is not overtaken by a peer's have-map
		// (download.overtake).
		s.fillOrigin(h)
	}
	want := s.peerLimit() - hs.picker.Peers()
	if want > 0 {
		var cand []int32
		if s.locality {
			cand = policy.ChooseSitePeers(s.siteHost[hs.site], visible, want, s.sc.Policy.CrossSitePeers, s.fresh(h), s.rng, nil)
		} else {
			cand = s.sample(visible, h, want, nil)
		}
		for _, q := range cand {
			k := s.connect(h, q)
			s.knowPeer(h, k)
			s.schedule(s.now+s.lat(h, q), evHello, q, h, 0)
		}
	}
	hs.lastFull = s.now
	s.fillAll(h)
	s.schedule(s.now+s.sc.Policy.Tick.Seconds(), evTick, h, 0, 0)
}

// minSessionPeers is the fewest peers a download opens sessions to
// however few chunks its package has (transfer/swarm minSessionPeers).
const minSessionPeers = 2

// peerLimit is how many peers a host's download opens sessions to, as
// the daemon's download.peerLimit: Policy.MaxPeers, but no more than the
// package has chunks (at least minSessionPeers), since a package of k
// chunks keeps at most k peers busy at once. Sessions other hosts open
// are accepted up to MaxPeers (hello), as the daemon does not refuse
// them.
func (s *sim) peerLimit() int {
	return min(s.sc.Policy.MaxPeers, max(minSessionPeers, s.nChunks))
}

// sample appends up to k random hosts of list to dst (policy.SamplePeers),
// excluding h, the hosts already in dst, and h's known or dropped peers.
func (s *sim) sample(list []int32, h int32, k int, dst []int32) []int32 {
	return policy.SamplePeers(list, k, s.fresh(h), s.rng, dst)
}

// fresh says which hosts h may connect to: not itself, nor a known or
// dropped peer.
func (s *sim) fresh(h int32) func(q int32) bool {
	return func(q int32) bool {
		if q == h {
			return false
		}
		j := s.sessionOf(h, q)
		return j < 0 || !(s.hosts[h].sess[j].known || s.hosts[h].sess[j].dropped)
	}
}

func (s *sim) hello(q, h int32) {
	s.waitFree(q)
	qs := &s.hosts[q]
	if qs.state == stGone || s.hosts[h].state == stGone {
		return
	}
	k := s.sessionOf(q, h)
	if k < 0 || qs.picker == nil || qs.picker.Peers() >= s.sc.Policy.MaxPeers {
		return
	}
	if s.locality && !policy.AcceptSitePeer(qs.sess[k].local, s.crossKnown(q), s.sc.Policy.CrossSitePeers) {
		return
	}
	s.knowPeer(q, k)
	s.fillPeer(q, k)
	s.fillOrigin(q)
}

func (s *sim) crossKnown(h int32) int {
	n := 0
	for _, se := range s.hosts[h].sess {
		if se.known && !se.local {
			n++
		}
	}
	return n
}

// fillAll asks every known peer (same-site ones first with locality) and
// the origin for what the Picker says.
func (s *sim) fillAll(h int32) {
	if s.hosts[h].picker == nil {
		return
	}
	if s.locality {
		for k := range s.hosts[h].sess {
			if s.hosts[h].sess[k].local {
				s.fillPeer(h, k)
			}
		}
		for k := range s.hosts[h].sess {
			if !s.hosts[h].sess[k].local {
				s.fillPeer(h, k)
			}
		}
	} else {
		for k := range s.hosts[h].sess {
			s.fillPeer(h, k)
		}
	}
	s.fillOrigin(h)
}

func (s *sim) fillPeer(h int32, k int) {
	hs := &s.hosts[h]
	if hs.picker == nil || k < 0 || !hs.sess[k].known {
		return
	}
	se := &hs.sess[k]
	s.fillRef(h, k, hs.picker, se.ref, se.peer)
}

// fillRef is fillPeer for h's Picker p, session k with q, and p's handle
// ref on q.
func (s *sim) fillRef(h int32, k int, p *policy.Picker, ref policy.PeerRef, q int32) {
	s.waitFree(h)
	s.ask = s.askRef(h, q, p, ref, s.at(s.now), s.ask[:0])
	for _, i := range s.ask {
		s.sendOn(h, k, q, evRequest, q, h, i)
	}
}

// askRef asks host h's Picker p for the chunks to request of peer q (p's
// handle on q is ref), records them as requested, and appends them to
// dst. It changes only p (see fanRange); with locality p applies the
// site rule. As the daemon's download.schedule, the end game asks q
// nothing more this round once it would ask q for a chunk q is sending
// h as the answer to h's pull-through request (pullingFrom).
func (s *sim) askRef(h, q int32, p *policy.Picker, ref policy.PeerRef, now time.Time, dst []int32) []int32 {
	for range s.nChunks + 1 {
		i, ok := p.NextForPeerRef(ref, now)
		if !ok {
			break
		}
		if s.coop.on && p.Outstanding(i) > 0 && s.pullingFrom(h, q, int32(i)) {
			break
		}
		p.RequestedRef(i, ref, now)
		dst = append(dst, int32(i))
	}
	return dst
}

func (s *sim) fillOrigin(h int32) {
	s.waitFree(h)
	hs := &s.hosts[h]
	p := hs.picker
	if p == nil {
		return
	}
	now := s.at(s.now)
	for range s.nChunks + 1 {
		i, ok := p.NextForOrigin(now)
		if !ok {
			return
		}
		p.Requested(i, policy.OriginPeer, now)
		if hs.oreq.Has(i) {
			// A stalled chunk already on its way from the origin, or, with
			// cooperative fetching, one this host is fetching for askers
			// (pull): its own download asks for it now, and the daemon
			// announces every chunk its download asks the origin for
			// itself (download.schedule: no fetcher ranks before it), even
			// one whose fetch for askers is under way (originFetch joins
			// it), so the hosts that have not asked yet wait for its Have.
			if s.coop.on && s.fetcher(h, i) == h {
				s.broadcast(h, evFetching, int32(i))
			}
			continue
		}
		hs.oreq.Set(i)
		if s.coopFetching(h, int32(i)) {
			// Fetched for askers, from the origin or upstream, since
			// before this host started the package: its request joins
			// that fetch, and is announced only if it is the origin's.
			if s.fetcher(h, i) == h {
				s.broadcast(h, evFetching, int32(i))
			}
			continue
		}
		if f := s.fetcher(h, i); f != h {
			// A chunk asked of its fetcher is the fetcher's to announce,
			// and the daemon's fetcher does not announce the chunks it
			// fetches for askers (transfer/swarm download.schedule): no
			// Fetching, so every host asks the fetcher for it.
			s.schedule(s.now+s.lat(h, f), evPull, f, h, int32(i))
			continue
		} else if s.coopCached(h, int32(i)) {
			s.schedule(s.now, evChunk, h, -1, int32(i)) // fetched for askers before
		} else if q := s.coopHeldAsk(h, int32(i)); q >= 0 {
			// Ranked first, h asks the next in rank whether it holds the
			// chunk before the origin (coop.go).
			s.schedule(s.now+s.lat(h, q), evPull, q, h, int32(i))
		} else {
			s.schedule(s.now+s.latOrig, evOriginReq, h, 0, int32(i))
		}
		s.broadcast(h, evFetching, int32(i))
	}
}

// broadcast sends a HaveUpdate or Fetching about chunk i to every session
// of h: one event per latency class.
func (s *sim) broadcast(h int32, kind uint8, i int32) {
	if s.sc.HeadOfLine {
		s.broadcastHeadOfLine(h, kind, i)
		return
	}
	var local, remote bool
	for _, se := range s.hosts[h].watch {
		if se.local {
			local = true
		} else {
			remote = true
		}
	}
	if local {
		s.schedule(s.now+s.latSite, kind, h, 0, i)
	}
	if remote {
		s.schedule(s.now+s.latWAN, kind, h, 1, i)
	}
}

func (s *sim) originReq(h, vm, i int32) {
	hs := &s.hosts[h]
	if hs.state != stActive {
		return
	}
	if i < 0 { // baseline
		if left := hs.baseLeft[vm]; left > 0 {
			s.open(-1, h, -1, vm, left)
		}
		return
	}
	if hs.oreq == nil || !hs.oreq.Has(int(i)) {
		return // cancelled meanwhile
	}
	s.open(-1, h, i, 0, float64(s.chunkLen[i]))
}

// cancelOrigin aborts h's origin request for chunk i.
func (s *sim) cancelOrigin(h, i int32) {
	hs := &s.hosts[h]
	if hs.oreq != nil {
		hs.oreq.Clear(int(i))
	}
	if s.coopWaiting(h, i) {
		return // hosts wait for this fetch (from the origin, or upstream): it runs on
	}
	s.cancelPull(h, i)
	r := &s.rin[h]
	for k, c := range r.cls {
		if c == uint32(s.tag)<<clsShift|clsOrigin && s.flows[r.in[k]].chunk == i {
			s.close(r.in[k])
			return
		}
	}
}

func (s *sim) request(src, dst, i int32) {
	ss := &s.hosts[src]
	if ss.state == stGone || s.hosts[dst].state == stGone {
		return
	}
	k := s.sessionOf(src, dst)
	if k < 0 {
		return
	}
	if !ss.have.Has(int(i)) {
		s.sendOn(src, k, dst, evReject, dst, src, i)
		return
	}
	ss.sess[k].queue = append(ss.sess[k].queue, i)
	if ss.sess[k].flow < 0 {
		s.startUpload(src, k)
	}
}

func (s *sim) startUpload(src int32, k int) {
	se := &s.hosts[src].sess[k]
	if se.flow >= 0 || len(se.queue) == 0 {
		return
	}
	i := se.queue[0]
	se.queue = se.queue[1:]
	if len(se.queue) == 0 {
		se.queue = nil
	}
	dst := se.peer
	id := s.open(src, dst, i, int32(k), float64(s.chunkLen[i]))
	s.hosts[src].sess[k].flow = id
}

func (s *sim) cancel(src, dst, i int32) {
	k := s.sessionOf(src, dst)
	if k < 0 {
		return
	}
	q := s.hosts[src].sess[k].queue
	for j, c := range q {
		if c == i {
			s.hosts[src].sess[k].queue = append(q[:j], q[j+1:]...)
			return
		}
	}
	// Being sent: stopped where it is (the daemon sends a large chunk in
	// parts and stops at the next part, the swarm's uploadParts).
	if se := &s.hosts[src].sess[k]; se.flow >= 0 && s.flows[se.flow].chunk == i {
		if s.sc.WriteAhead {
			se.discard = true
			return
		}
		s.close(se.flow)
		se.flow = -1
		s.flushHeld(src, k)
		s.startUpload(src, k)
	}
}

func (s *sim) reject(h, src, i int32) {
	s.waitFree(h)
	hs := &s.hosts[h]
	if hs.picker == nil {
		return
	}
	pid := s.ids[src]
	hs.picker.PeerLacks(pid, int(i))
	if hs.picker.Failed(int(i), pid) >= s.sc.Policy.MaxStrikes {
		s.drop(h, s.sessionOf(h, src))
	}
	s.fillAll(h)
}

// drop forgets peer session k of h for this download (strikes).
func (s *sim) drop(h int32, k int) {
	s.waitFree(h)
	hs := &s.hosts[h]
	if k < 0 || !hs.sess[k].known {
		return
	}
	s.unknow(h, k)
	hs.sess[k].dropped = true
	hs.picker.PeerLeft(s.ids[hs.sess[k].peer])
}

func (s *sim) peerOf(id policy.PeerID) int32 {
	n, err := strconv.Atoi(string(id[1:]))
	if err != nil {
		panic(fmt.Sprintf("simulations: bad peer id %q", id))
	}
	return int32(n)
}

func (s *sim) chunk(h, src, i int32) {
	s.waitFree(h)
	hs := &s.hosts[h]
	size := float64(s.chunkLen[i])
	if hs.state == stGone {
		return
	}
	s.servePulls(h, i)
	if s.coopKeep(h, i) {
		return // fetched for askers: its own download takes it later
	}
	if src >= 0 {
		if hs.site == s.hosts[src].site {
			hs.fromSite += size
		} else {
			hs.fromWAN += size
		}
	}
	p := hs.picker
	if p == nil || hs.have.Has(int(i)) {
		hs.dup += size
		if p != nil {
			s.closeRequest(h, src, i)
		}
		return
	}
	// The sender's session, if h knows it: its handle saves Received a
	// lookup by peer ID.
	k := -1
	var cancels []policy.PeerID
	asked := policy.OriginPeer // a pull-through answer's too
	if src >= 0 {
		asked = s.ids[src]
	}
	if age, ok := p.RequestAge(int(i), asked, s.at(s.now)); ok {
		s.engine.resp[h].Note(age)
	}
	if src >= 0 {
		if k = s.sessionOf(h, src); k >= 0 && hs.sess[k].known {
			cancels = p.ReceivedRef(int(i), hs.sess[k].ref, s.at(s.now), int64(size))
		} else {
			cancels = p.Received(int(i), s.ids[src], s.at(s.now), int64(size))
		}
	} else {
		hs.oreq.Clear(int(i))
		cancels = p.Received(int(i), policy.OriginPeer, s.at(s.now), int64(size))
	}
	for _, c := range cancels {
		if c == policy.OriginPeer {
			s.cancelOrigin(h, i)
		} else {
			q := s.peerOf(c)
			s.sendTo(h, q, evCancel, q, h, i)
		}
	}
	hs.have.Set(int(i))
	s.broadcast(h, evHave, i)
	if p.Done() {
		s.finish(h)
		return
	}
	if p.Endgame() {
		s.fillAll(h) // duplicates may go to any peer with room
		return
	}
	if src >= 0 {
		s.fillPeer(h, k)
	}
	s.fillOrigin(h)
}

// closeRequest closes the request of a chunk we already had.
func (s *sim) closeRequest(h, src, i int32) {
	s.waitFree(h)
	p := s.hosts[h].picker
	if src < 0 {
		s.hosts[h].oreq.Clear(int(i))
		p.Cancelled(int(i), policy.OriginPeer)
		return
	}
	p.Cancelled(int(i), s.ids[src])
}

func (s *sim) hostDone(h int32) {
	hs := &s.hosts[h]
	hs.state = stDone
	hs.done = s.now
	hs.picker = nil
	hs.oreq = nil
	for k := range hs.sess {
		s.unknow(h, k)
	}
	s.pending--
	if s.pending == 0 {
		s.finished = true
	}
	if s.pruneOn {
		s.pruneQ = append(s.pruneQ, h)
	}
	if s.onDone != nil {
		s.onDone(h)
	}
}

func (s *sim) haveUpdate(h, class, i int32) {
	if s.hosts[h].state == stGone {
		return
	}
	// A HaveUpdate for a chunk the watcher holds changes none of its
	// Picker's decisions (availability only matters for missing chunks),
	// so it is skipped: the fan-out is most of the work.
	// Each watcher's Picker is its own, so updating and asking one watcher
	// after another decides what updating all first would.
	// A watcher's Picker and handle are its session's (see watcher), and
	// its have-map is read from haveM: hosts[w.q] is touched only to ask.
	// Large runs post the fan-out to the pipe (pipe.go) or, with
	// locality, split it over two goroutines (fanAll, fanout.go).
	if s.pipe != nil {
		s.postFan(h, class, i)
		return
	}
	s.fanAll(h, class, i)
}

// withdrawn cancels the requests h's Picker withdrew (Picker.Withdrawn).
func (s *sim) withdrawn(h int32) {
	s.waitFree(h)
	s.wdr = s.hosts[h].picker.Withdrawn(s.wdr[:0])
	for _, r := range s.wdr {
		q := s.peerOf(r.Peer)
		s.sendTo(h, q, evCancel, q, h, int32(r.Chunk))
	}
}

func (s *sim) fetching(h, class, i int32) {
	if s.hosts[h].state == stGone {
		return
	}
	now := s.at(s.now)
	off, bit := int(i)>>6, uint64(1)<<(i&63)
	for k := range s.hosts[h].watch {
		w := &s.hosts[h].watch[k]
		if w.local != (class == 0) {
			continue
		}
		if s.haveM[int(w.q)*s.nw+off]&bit == 0 {
			s.waitFree(w.q)
			w.p.PeerPendingRef(w.ref, int(i), now)
		}
	}
}

func (s *sim) tick(h int32) {
	s.waitFree(h)
	hs := &s.hosts[h]
	if hs.state != stActive || hs.picker == nil {
		return
	}
	p := hs.picker
	p.SetEndgameDelay(s.endgameDelay(h))
	s.progress(h)
	s.tmo = p.Timeouts(s.at(s.now), s.tmo[:0])
	full := len(s.tmo) > 0 || s.now >= hs.lastFull+1 || p.Thawed(s.at(s.now))
	for _, r := range s.tmo {
		q := s.peerOf(r.Peer)
		s.sendTo(h, q, evCancel, q, h, int32(r.Chunk))
		if p.Score(r.Peer).Strikes >= s.sc.Policy.MaxStrikes {
			s.drop(h, s.sessionOf(h, q))
		}
	}
	if p.Peers() < s.sc.Policy.MaxPeers && s.now-hs.lastFind >= s.sc.Policy.FindInterval.Seconds() {
		s.discover(h) // fills and schedules the next tick
		return
	}
	if full {
		hs.lastFull = s.now
		s.fillAll(h)
	} else {
		s.fillOrigin(h)
	}
	s.schedule(s.now+s.sc.Policy.Tick.Seconds(), evTick, h, 0, 0)
}

// endgameDelay is the end game's delay for host h now, as the daemon's
// Swarm.endgameDelay: twice the mean time its requests took to bring
// their chunks (peers, pull-through and the origin alike, over all its
// downloads), at least policy.DefaultEndgameDelay and at most a quarter
// of the request timeout. Every Picker of h takes it when it starts and
// on every tick: a host whose answers come slowly, its uploaders shared
// by many, does not send a second request for a chunk after a fixed
// 100 ms.
func (s *sim) endgameDelay(h int32) time.Duration {
	rt := time.Duration(s.sc.Policy.RequestTimeout)
	if rt <= 0 {
		rt = policy.DefaultRequestTimeout
	}
	return s.engine.resp[h].EndgameDelay(policy.DefaultEndgameDelay, rt/4)
}

// progress tells h's Picker of the peers sending it chunks in parts (the
// daemon's ChunkParts, policy.PartSize): their bytes flow, so their
// requests neither stall nor time out, and the chunks are on their way
// (Picker.Streaming: the end game waits longer before it asks another
// peer for them, as the daemon's download.progress). A package whose
// chunks all fit in one part has no such flow: the host's incoming
// flows, of every package of a workload, are not walked; otherwise their
// classes are (recvList.cls), and only this package's flows in parts
// from a peer the Picker knows are told of, by handle (recvList.from).
func (s *sim) progress(h int32) {
	s.waitFree(h)
	if !s.inParts {
		return
	}
	hs := &s.hosts[h]
	now := s.at(s.now)
	r := &s.rin[h]
	for k, c := range r.cls {
		// A zero handle (a sender the Picker does not know) changes
		// nothing, as Progress and Streaming by its peer ID would not.
		if c>>clsShift != uint32(s.tag) || c&clsParts == 0 || r.in[k] < 0 || r.from[k] == (policy.PeerRef{}) {
			continue
		}
		hs.picker.ProgressRef(r.from[k], now)
		if c&clsPull == 0 {
			hs.picker.StreamingRef(int(s.flows[r.in[k]].chunk), r.from[k])
		}
	}
}

// ---- churn ----

func (s *sim) leave(h int32) {
	hs := &s.hosts[h]
	if hs.state == stGone {
		return
	}
	wasIdle := hs.state == stIdle
	if hs.state == stActive {
		// the host's own download is interrupted
		if s.sc.Churn.RejoinAfter == 0 {
			s.pending--
			hs.left = true
		}
	} else if wasIdle && s.sc.Churn.RejoinAfter == 0 {
		s.pending--
		hs.left = true
	}
	hs.state = stGone
	s.setPresent(h, false)
	// abort every flow into h and out of h (churn: one package)
	for in := &s.rin[h].in; len(*in) > 0; {
		id := (*in)[len(*in)-1]
		f := s.flows[id]
		moved := s.close(id)
		if f.chunk < 0 {
			hs.baseLeft[f.vm] -= moved
		} else if f.srv != s.origin && f.vm != pullFlow {
			s.hosts[f.srv].sess[f.vm].flow = -1
		}
		hs = &s.hosts[h]
	}
	for k := range hs.sess {
		if id := hs.sess[k].flow; id >= 0 {
			s.close(id)
			hs.sess[k].flow = -1
		}
	}
	for _, se := range hs.sess {
		s.schedule(s.now+s.lat(h, se.peer), evPeerGone, se.peer, h, 0)
	}
	for k := range hs.sess {
		s.unknow(h, k)
	}
	hs.sess = nil
	hs.watch = nil
	hs.picker = nil
	hs.oreq = nil
	if s.sc.Churn.RejoinAfter > 0 {
		s.schedule(s.now+max(s.sc.Churn.RejoinAfter.Seconds(), 2*s.latWAN+s.latOrig), evRejoin, h, 0, 0)
	}
	if s.pending == 0 {
		s.finished = true
	}
}

func (s *sim) peerGone(q, h int32) {
	s.waitFree(q)
	qs := &s.hosts[q]
	k := s.sessionOf(q, h)
	if k < 0 {
		return
	}
	if qs.sess[k].known && qs.picker != nil {
		qs.picker.PeerLeft(s.ids[h])
	}
	s.unknow(q, k)
	// forget h among q's watchers too
	for j := 0; j < len(qs.watch); j++ {
		if qs.watch[j].q == h {
			last := qs.watch[len(qs.watch)-1]
			qs.watch[j] = last
			s.hosts[last.q].sess[last.k].wpos = int32(j)
			qs.watch = dropLastWatcher(qs.watch)
			break
		}
	}
	// swap-remove session k
	last := len(qs.sess) - 1
	if k != last {
		m := qs.sess[last]
		qs.sess[k] = m
		if ps := &s.hosts[m.peer]; int(m.rev) < len(ps.sess) && ps.sess[m.rev].peer == q {
			ps.sess[m.rev].rev = int32(k)
		}
		if m.flow >= 0 {
			s.flows[m.flow].vm = int32(k)
		}
		if m.known {
			if ps := &s.hosts[m.peer]; int(m.wpos) < len(ps.watch) && ps.watch[m.wpos].q == q {
				ps.watch[m.wpos].k = int32(k)
			}
		}
		// q's watchers that are m.peer point at m.peer's own session, not ours
	}
	qs.sess = qs.sess[:last]
	if qs.state == stActive {
		s.fillAll(q)
	}
}

// ---- results ----

func (s *sim) result() *Result { return s.resultWith(s.sentNow(s.origin)) }

// resultWith is result with origin as the origin's bytes: it touches
// nothing of the engine (sentNow advances the origin's clock, which
// changes the rounding of its flows' later times).
func (s *sim) resultWith(origin float64) *Result {
	r := &Result{
		Scenario:     s.sc.Name,
		Strategy:     s.strat,
		Hosts:        int(s.n),
		VMs:          int(s.n) * s.sc.VMsPerHost,
		PackageBytes: s.pkgBytes,
		OriginBytes:  origin,
		// A workload's result has the first package's (workload.go),
		// every package's files together.
		MetadataBytes: s.sc.Metadata.originBytes(s.strat, int(s.n), s.sc.VMsPerHost, s.sc.Sites),
		Bound:         FluidBound(s.sc),
		Events:        s.nEv,
		Origin:        append(s.samples, Sample{T: s.now, Bytes: origin}),
	}
	for h := range s.hosts {
		hs := &s.hosts[h]
		hr := HostResult{
			Host: h, Site: int(hs.site), VMs: int(hs.vms), Upload: hs.up, Down: hs.down,
			Arrival: hs.arrival, Done: hs.done,
			FromOrigin: hs.fromOrigin, FromSite: hs.fromSite, FromWAN: hs.fromWAN,
			Duplicate: hs.dup, Uploaded: hs.uploaded,
		}
		r.PerHost = append(r.PerHost, hr)
		r.SiteBytes += hs.fromSite
		r.WANBytes += hs.fromWAN
		r.DuplicateBytes += hs.dup
	}
	r.summarise()
	return r
}

// summarise computes r's completion figures from r.PerHost,
// r.PackageBytes, r.OriginBytes and r.Bound.
func (r *Result) summarise() {
	r.Delivered, r.HostDelivered, r.Finished, r.Departed, r.Makespan = 0, 0, 0, 0, 0
	var times []float64
	for _, hr := range r.PerHost {
		if math.IsNaN(hr.Done) {
			r.Departed++
			continue
		}
		r.Finished++
		r.Delivered += r.PackageBytes * float64(hr.VMs)
		r.HostDelivered += r.PackageBytes
		times = append(times, hr.Done-hr.Arrival)
		r.Makespan = max(r.Makespan, hr.Done)
	}
	r.Offload, r.HostOffload = 0, 0
	if r.Delivered > 0 {
		r.Offload = 1 - r.OriginBytes/r.Delivered
		r.HostOffload = 1 - r.OriginBytes/r.HostDelivered
	}
	r.P50, r.P95, r.Max = quantile(times, 0.5), quantile(times, 0.95), quantile(times, 1)
	r.Ratio = 0
	if r.Bound > 0 {
		r.Ratio = r.Makespan / r.Bound
	}
}
