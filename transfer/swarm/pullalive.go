package swarm

import (
	"sync"
	"time"
)

// A fetcher's liveness, across its streams. An asker gives up on a
// pull-through request whose fetcher says nothing for pullIdle; but a
// fetcher serving an upgrade of hundreds of packages to many hosts may
// take a while to answer one request (its stream waits to be handled,
// its first status byte waits behind others) while it answers the rest,
// and every request given up on goes to the next in rank or to the
// origin: one more copy of the chunk from the origin. So silence is
// counted per fetcher, not per stream: a request's idle timer ends it
// only once nothing at all has come from the fetcher for pullIdle (no
// byte on any pull-through stream, no message on any session), or
// nothing on its own stream for pullClaim. A request that the fetcher
// keeps without sending the chunk is still bounded by pullClaim too, and
// a fetcher that is gone or hangs is silent everywhere and found so
// after one pullIdle.

// A host too loaded to run its own goroutines on time (a saturated CPU,
// hundreds of downloads at once) reads what its fetchers send late, and
// would take its own lateness for their silence: every asker of a
// starved flash crowd gives up on the chunk's fetcher and asks the next
// in rank, which fetches a second copy from the origin. So silence is
// counted in time this host could listen: the idle timeout is lengthened
// by how late this host's download ticks have run lately (schedLag,
// within pullClaim: a loaded host's lateness comes in bursts), up to one
// more idle timeout. A host that runs on time is not affected.

// schedLag is the longest lateness of this host's download ticks (a tick
// read that long after it was due) within the last window.
type schedLag struct {
	mu  sync.Mutex
	max time.Duration
	at  time.Time // when max was seen
}

// note records a tick read late by lag, now; a lateness older than
// window is forgotten.
func (l *schedLag) note(lag, window time.Duration) {
	now := time.Now()
	l.mu.Lock()
	if lag >= l.max || now.Sub(l.at) > window {
		l.max, l.at = lag, now
	}
	l.mu.Unlock()
}

// recent returns the longest lateness seen within window (0 if none).
func (l *schedLag) recent(window time.Duration) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at.IsZero() || time.Since(l.at) > window {
		return 0
	}
	return l.max
}

// fetcherAlive records when each peer last sent this host anything.
type fetcherAlive struct {
	mu sync.Mutex
	at map[PeerID]time.Time
}

// note records that p sent something now.
func (a *fetcherAlive) note(p PeerID) {
	now := time.Now()
	a.mu.Lock()
	if a.at == nil {
		a.at = make(map[PeerID]time.Time)
	}
	a.at[p] = now
	a.mu.Unlock()
}

// last is when p last sent something (zero: never).
func (a *fetcherAlive) last(p PeerID) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.at[p]
}

// silentFor reports whether nothing came from p for d, or ever.
func (a *fetcherAlive) silentFor(p PeerID, d time.Duration) bool {
	t := a.last(p)
	return t.IsZero() || time.Since(t) >= d
}

// pullWatch ends a pull-through request (resets its stream) once its
// fetcher has been silent everywhere for idle; Alive restarts the count
// for this stream.
type pullWatch struct {
	s     *Swarm
	f     PeerID
	idle  time.Duration
	mu    sync.Mutex
	since time.Time // when this stream last heard from f, or was opened
	t     *time.Timer
	st    Stream
}

// watchPull starts the watch of a request to f on st.
func (s *Swarm) watchPull(f PeerID, idle time.Duration, st Stream) *pullWatch {
	w := &pullWatch{s: s, f: f, idle: idle, since: time.Now(), st: st}
	w.mu.Lock()
	w.t = time.AfterFunc(idle, w.fire)
	w.mu.Unlock()
	return w
}

// fire resets the stream, unless the fetcher was heard from within idle
// (on this stream or another; lengthened by this host's own lateness
// lately, schedLag) and this stream within pullClaim: then it waits for
// the rest of either from then. A stream that carries nothing for
// pullClaim ends however lively its fetcher is elsewhere (a chunk whose
// bytes stopped midway, a request the fetcher never took).
func (w *pullWatch) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	last := w.since
	if t := w.s.alive.last(w.f); t.After(last) {
		last = t
	}
	idle := w.idle + min(w.s.lag.recent(w.s.pullClaim()), w.idle)
	wait := min(idle-time.Since(last), w.s.pullClaim()-time.Since(w.since))
	if wait > 0 {
		w.t.Reset(wait)
		return
	}
	w.st.Reset()
}

// Alive records a sign of life from f on this stream.
func (w *pullWatch) Alive() {
	w.s.alive.note(w.f)
	w.mu.Lock()
	w.since = time.Now()
	w.mu.Unlock()
}

// Stop ends the watch.
func (w *pullWatch) Stop() {
	w.mu.Lock()
	w.t.Stop()
	w.mu.Unlock()
}
