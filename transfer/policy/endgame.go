package policy

import "time"

// The end game: with the last few chunks missing, an idle peer may be
// asked for a chunk already asked of another, and the loser is cancelled.

// Endgame reports whether the end game is on.
func (p *Picker) Endgame() bool {
	return p.cfg.EndgameThreshold >= 0 && p.remaining > 0 && p.remaining <= p.cfg.EndgameThreshold
}

// nextEndgame is the end game's pick for peer s at t: the least-requested
// missing chunk the peer has and was not asked for (at most
// EndgameDuplicates requests open, all of them late: endgameLate),
// starting at a random place.
func (p *Picker) nextEndgame(sl *peerSlot, s int32, t int64) (int, bool) {
	best, bestN := -1, p.cfg.EndgameDuplicates
	m := len(p.missing.items)
	start := p.rng.IntN(m)
	for k := range m {
		i := int(p.missing.items[(start+k)%m])
		if !sl.have.Has(i) || int(p.ck[i].reqCount) >= bestN || p.askedFrom(i, s) || !p.endgameLate(i, t) {
			continue
		}
		best, bestN = i, int(p.ck[i].reqCount)
	}
	return best, best >= 0
}

// endgameLate reports whether every open request of chunk i is older at t
// than EndgameDelay, or streamingPatience times that for a request whose
// chunk is on its way (Streaming).
func (p *Picker) endgameLate(i int, t int64) bool {
	if p.cfg.EndgameDelay < 0 {
		return true
	}
	wait := float64(p.cfg.EndgameDelay)
	for id := p.ck[i].reqHead; id >= 0; id = p.recs[id].next {
		w := wait
		if p.recs[id].streaming {
			w *= streamingPatience
		}
		if float64(t-p.recs[id].at) < w {
			return false
		}
	}
	return true
}

// streamingPatience: a request whose chunk is on its way is duplicated
// in the end game only once it is this many times EndgameDelay old. Its
// chunk is most often about to arrive, and a second copy would follow it
// for nothing; a peer that sends it at a trickle is still passed by.
const streamingPatience = 4

// Streaming records that the chunk i asked of from (OriginPeer: the
// origin request, answered through a pull-through fetcher or the origin)
// is on its way: its first bytes arrived. The end game asks nobody else
// for it until the request is streamingPatience times EndgameDelay old:
// a second copy would most often arrive behind the first for nothing. A
// stream that stops ends its request (Failed, Cancelled, or a timeout),
// and the chunk is asked again at once.
func (p *Picker) Streaming(i int, from PeerID) {
	s, ok := p.slotOf(from)
	p.streaming(i, s, ok)
}

// streaming marks the request for chunk i to slot s (if ok) as streaming.
func (p *Picker) streaming(i int, s int32, ok bool) {
	if !ok || !p.valid(i) {
		return
	}
	if id := p.findReq(i, s); id >= 0 {
		p.recs[id].streaming = true
	}
}

// SetEndgameDelay sets EndgameDelay from now on (negative: at once): the
// caller adapts it to how long its host's requests take
// (ResponseTimes.EndgameDelay).
func (p *Picker) SetEndgameDelay(d time.Duration) {
	if d == 0 {
		d = DefaultEndgameDelay
	}
	p.cfg.EndgameDelay = d
}

// RequestAge returns how long ago chunk i was asked of from (OriginPeer:
// the origin), false if no such request is open.
func (p *Picker) RequestAge(i int, from PeerID, now time.Time) (time.Duration, bool) {
	s, ok := p.slotOf(from)
	if !ok || !p.valid(i) {
		return 0, false
	}
	id := p.findReq(i, s)
	if id < 0 {
		return 0, false
	}
	return time.Duration(p.t(now) - p.recs[id].at), true
}

// responseAlpha is the weight of a new sample in ResponseTimes: a host's
// requests answer in a stream, many a second under load, so one slow
// answer moves the mean little.
const responseAlpha = 1.0 / 16

// ResponseTimes measures how long a host's requests take, from the
// request to its chunk, over all its downloads (peers, pull-through and
// the origin alike): an EWMA. It is not safe for concurrent use.
type ResponseTimes struct {
	mean float64 // nanoseconds; 0: no sample yet
}

// Note adds the response time of one request.
func (r *ResponseTimes) Note(d time.Duration) {
	if d < 0 {
		return
	}
	if r.mean == 0 {
		r.mean = float64(max(d, 1))
		return
	}
	r.mean += responseAlpha * (float64(d) - r.mean)
}

// Mean returns the mean response time (0 before any sample).
func (r *ResponseTimes) Mean() time.Duration { return time.Duration(r.mean) }

// EndgameDelay returns the end game's delay for a host whose requests
// take Mean: twice the mean, at least floor (the delay of an idle host,
// whose requests answer in far less) and at most ceil. A request is
// duplicated once it is late for this host, not for an idle one: on a
// saturated host every answer takes many times a fixed delay, and a
// duplicate asked on a fixed delay is most often a second copy on its
// way for nothing, which loads the host further. floor < 0 (no delay)
// is kept as it is.
func (r *ResponseTimes) EndgameDelay(floor, ceil time.Duration) time.Duration {
	if floor < 0 {
		return floor
	}
	return min(max(2*time.Duration(r.mean), floor), max(ceil, floor))
}
