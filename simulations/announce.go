package simulations

import (
	"container/heap"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"
)

// Announcement spread: how fast a group change reaches every host when
// hosts announce newer signed timestamps to their gossipsub mesh (the
// daemon's node/pubsub.go), and what it costs the origin, against polling
// alone. The model is separate from the swarm simulation: it moves no
// chunks, only the announcement, the metadata files and each host's
// convergence time.
//
// One host is told of the change at time 0 (stork group set --notify). It
// fetches the changed metadata files from the origin, converges, and
// announces. A host announces to its mesh peers (eager push, one one-way
// latency) and, for AnnounceConfig.GossipRounds heartbeats after, to
// GossipFanout random other hosts (gossipsub's IHAVE/IWANT: three one-way
// latencies); each transmission is lost with probability Loss. A host that
// receives a newer timestamp fetches the files from that peer (one round
// trip per file), converges, and announces in turn. Every host also polls
// the origin every Poll from a random phase; a poll that finds the change
// not yet applied applies it from the origin. Origin metadata requests per
// update count the files fetched from the origin for this update (the
// first host's, and any host's that learnt it by polling): the polls'
// timestamp requests happen whether or not anything changed and are
// reported apart, per second.

// ErrAnnounceConfig: an AnnounceConfig that cannot run.
var ErrAnnounceConfig = errors.New("bad announcement model config")

// AnnounceConfig is one run of the announcement model.
type AnnounceConfig struct {
	Hosts int
	// MeshDegree is each host's mesh peers (gossipsub D, 6).
	MeshDegree int
	// GossipFanout and GossipRounds: lazy gossip to this many random
	// hosts at each of this many heartbeats after a host applied.
	GossipFanout, GossipRounds int
	Heartbeat                  time.Duration
	// Latency: one-way latency between two hosts, uniform in [Min, Max];
	// OriginLatency the same to the origin.
	LatencyMin, LatencyMax time.Duration
	OriginLatency          time.Duration
	// Files is how many metadata files an update changes (snapshot and a
	// group role or targets: 2), plus the first host's next-root probe.
	Files int
	// Converge is how long a host takes from applied metadata to its VMs
	// converged (it announces then): uniform in [Min, Max].
	ConvergeMin, ConvergeMax time.Duration
	// Poll is the interval of the origin polls; 0: none.
	Poll time.Duration
	// Push off: polling alone (the baseline).
	Push bool
	Loss float64
	Seed uint64
}

// DefaultAnnounceConfig is a world-wide repository: 10-150 ms between
// hosts, 50 ms to the origin, a 60 s poll.
func DefaultAnnounceConfig(hosts int) AnnounceConfig {
	return AnnounceConfig{
		Hosts: hosts, MeshDegree: 6, GossipFanout: 6, GossipRounds: 3, Heartbeat: time.Second,
		LatencyMin: 10 * time.Millisecond, LatencyMax: 150 * time.Millisecond, OriginLatency: 50 * time.Millisecond,
		Files: 2, ConvergeMin: 100 * time.Millisecond, ConvergeMax: 500 * time.Millisecond,
		Poll: time.Minute, Push: true, Loss: 0.01, Seed: 1,
	}
}

// AnnounceResult is what one run measured.
type AnnounceResult struct {
	Hosts int
	Push  bool
	// P50, P99 and Max of the time at which each host converged.
	P50, P99, Max time.Duration
	// OriginRequests are the origin's metadata requests for the update;
	// PollRequestsPerSec the timestamp polls' steady load.
	OriginRequests     int
	PollRequestsPerSec float64
	// ByPoll counts the hosts that learnt of the update by polling.
	ByPoll int
	// Messages per host (announcements and gossip sent).
	MessagesPerHost float64
}

// announce event kinds.
const (
	evReceive  = iota // a peer's announcement arrives
	evPoll            // a host polls the origin
	evApplied         // a host has the metadata files
	evAnnounce        // a host converged: it announces
	evGossip          // a heartbeat's lazy gossip
)

type annEvent struct {
	at   time.Duration
	kind int
	host int
	from int // evReceive: the announcer; evGossip: rounds left
	seq  int
}

type annQueue []annEvent

func (q annQueue) Len() int { return len(q) }
func (q annQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q annQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *annQueue) Push(x any)   { *q = append(*q, x.(annEvent)) }
func (q *annQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// annRun is the state of one run.
type annRun struct {
	cfg       AnnounceConfig
	rng       *rand.Rand
	q         annQueue
	seq       int
	mesh      [][]int
	state     []int // 0 nothing, 1 fetching, 2 applied
	converged []time.Duration
	res       AnnounceResult
	messages  int
}

// RunAnnounce runs the model once.
func RunAnnounce(cfg AnnounceConfig) (AnnounceResult, error) {
	if cfg.Hosts < 1 || cfg.MeshDegree < 1 || cfg.LatencyMax < cfg.LatencyMin || cfg.ConvergeMax < cfg.ConvergeMin {
		return AnnounceResult{}, fmt.Errorf("announce model: %w: want hosts, a mesh degree and ordered ranges", ErrAnnounceConfig)
	}
	if !cfg.Push && cfg.Poll <= 0 {
		return AnnounceResult{}, fmt.Errorf("announce model: %w: without push, a poll interval is needed", ErrAnnounceConfig)
	}
	r := &annRun{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0xa11)), state: make([]int, cfg.Hosts), converged: make([]time.Duration, cfg.Hosts)}
	r.res = AnnounceResult{Hosts: cfg.Hosts, Push: cfg.Push}
	r.buildMesh()
	if cfg.Poll > 0 {
		r.res.PollRequestsPerSec = float64(cfg.Hosts) / cfg.Poll.Seconds()
		for h := range cfg.Hosts {
			r.push(annEvent{at: time.Duration(r.rng.Int64N(int64(cfg.Poll))), kind: evPoll, host: h})
		}
	}
	if cfg.Push {
		// The told host: next-root probe and files from the origin.
		r.state[0] = 1
		r.res.OriginRequests += cfg.Files + 1
		r.push(annEvent{at: time.Duration(cfg.Files+1) * 2 * cfg.OriginLatency, kind: evApplied, host: 0})
	}
	for r.q.Len() > 0 {
		r.step(heap.Pop(&r.q).(annEvent))
	}
	r.summarise()
	return r.res, nil
}

// buildMesh links each host to MeshDegree random others (both ways).
func (r *annRun) buildMesh() {
	n := r.cfg.Hosts
	r.mesh = make([][]int, n)
	for h := range n {
		for len(r.mesh[h]) < min(r.cfg.MeshDegree, n-1) {
			p := r.rng.IntN(n)
			if p == h || slices.Contains(r.mesh[h], p) {
				continue
			}
			r.mesh[h] = append(r.mesh[h], p)
			r.mesh[p] = append(r.mesh[p], h)
		}
	}
}

func (r *annRun) push(e annEvent) {
	r.seq++
	e.seq = r.seq
	heap.Push(&r.q, e)
}

func (r *annRun) latency() time.Duration {
	return r.cfg.LatencyMin + time.Duration(r.rng.Int64N(int64(r.cfg.LatencyMax-r.cfg.LatencyMin)+1))
}

func (r *annRun) step(e annEvent) {
	switch e.kind {
	case evPoll:
		if r.state[e.host] == 0 {
			r.state[e.host] = 1
			r.res.ByPoll++
			r.res.OriginRequests += r.cfg.Files
			r.push(annEvent{at: e.at + time.Duration(1+r.cfg.Files)*2*r.cfg.OriginLatency, kind: evApplied, host: e.host})
		}
	case evReceive:
		if r.state[e.host] == 0 {
			r.state[e.host] = 1
			r.push(annEvent{at: e.at + time.Duration(r.cfg.Files)*2*r.latency(), kind: evApplied, host: e.host})
		}
	case evApplied:
		r.state[e.host] = 2
		c := r.cfg.ConvergeMin + time.Duration(r.rng.Int64N(int64(r.cfg.ConvergeMax-r.cfg.ConvergeMin)+1))
		r.push(annEvent{at: e.at + c, kind: evAnnounce, host: e.host})
	case evAnnounce:
		r.converged[e.host] = e.at
		if r.cfg.Push {
			for _, p := range r.mesh[e.host] {
				r.send(e.at+r.latency(), p, e.host)
			}
			if r.cfg.GossipRounds > 0 {
				r.push(annEvent{at: e.at + r.cfg.Heartbeat, kind: evGossip, host: e.host, from: r.cfg.GossipRounds})
			}
		}
	case evGossip:
		for range r.cfg.GossipFanout {
			p := r.rng.IntN(r.cfg.Hosts)
			if p != e.host && !slices.Contains(r.mesh[e.host], p) {
				r.send(e.at+3*r.latency(), p, e.host) // IHAVE, IWANT, message
			}
		}
		if e.from > 1 {
			r.push(annEvent{at: e.at + r.cfg.Heartbeat, kind: evGossip, host: e.host, from: e.from - 1})
		}
	}
}

// send transmits an announcement to p, unless lost.
func (r *annRun) send(at time.Duration, p, from int) {
	r.messages++
	if r.rng.Float64() < r.cfg.Loss {
		return
	}
	r.push(annEvent{at: at, kind: evReceive, host: p, from: from})
}

func (r *annRun) summarise() {
	ts := slices.Clone(r.converged)
	slices.Sort(ts)
	n := len(ts)
	r.res.P50, r.res.P99, r.res.Max = ts[n/2], ts[min(n-1, n*99/100)], ts[n-1]
	r.res.MessagesPerHost = float64(r.messages) / float64(n)
}

// WriteAnnounceTable writes results as a table.
func WriteAnnounceTable(w io.Writer, rs []AnnounceResult) error {
	if _, err := fmt.Fprintf(w, "%-7s %-10s %9s %9s %9s %16s %9s %13s %12s\n", "hosts", "mode", "p50", "p99", "max",
		"origin-meta-reqs", "by-poll", "polls/s", "msgs/host"); err != nil {
		return err
	}
	for _, r := range rs {
		mode := "poll-only"
		if r.Push {
			mode = "push+poll"
		}
		if _, err := fmt.Fprintf(w, "%-7d %-10s %9s %9s %9s %16d %9d %13.1f %12.1f\n", r.Hosts, mode,
			r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.Max.Round(time.Millisecond),
			r.OriginRequests, r.ByPoll, r.PollRequestsPerSec, r.MessagesPerHost); err != nil {
			return err
		}
	}
	return nil
}
