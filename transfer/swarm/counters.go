package swarm

import (
	"errors"
	"sync/atomic"
	"time"
)

// Counters counts what a Swarm did on the wire since it started: the
// streams it opened and accepted, and what became of its pull-through
// requests. Benchmarks and tests read them to tell where an upgrade's
// streams and duplicate origin fetches come from.
type Counters struct {
	// SessionStreams: swarm streams this host opened (outbound sessions)
	// and accepted (inbound).
	SessionStreamsOpened, SessionStreamsAccepted int64
	// PullStreams: pull-through streams this host opened as an asker.
	PullStreams int64
	// SessionsDeferred: sessions a download of one chunk did not open,
	// its chunk brought by pull-through first (sessionDeferral).
	SessionsDeferred int64
	// PullsSilent: pull-through requests given up because the fetcher
	// was unreachable or said nothing for pullIdle; PullsClaimed: because
	// it kept working past pullClaim without sending the chunk;
	// PullsRefused: refused by the fetcher.
	PullsSilent, PullsClaimed, PullsRefused int64
	// OriginFallbacks: chunks this host asked the origin for itself
	// although another member ranked before it (every fetcher before it
	// refused, failed or stayed silent): the duplicates cooperative
	// fetching exists to avoid.
	OriginFallbacks int64
	// OriginFetches: chunk requests this host sent the origin.
	OriginFetches int64
	// OriginDownWaited: pull-through requests this host served that
	// waited on an origin request that failed (or on one still hanging
	// when another failed) before it answered that the origin cannot be
	// reached; OriginDownAtOnce: those it answered so at once, its origin
	// known unreachable then (originFetchFor).
	OriginDownWaited, OriginDownAtOnce int64
	// EndWait, EndWaitMax: the time downloads took, in all and at most,
	// from their last chunk (or failure) until Download returned (their
	// origin fetches and provider search ended).
	EndWait, EndWaitMax time.Duration

	// What this host received and threw away, in bytes, by how the copy
	// came. DupSession: whole chunks from session peers not kept (held
	// or being stored already, or no longer asked of that peer: their
	// request was closed before they arrived); of those,
	// DupSessionEndgame: chunks asked of a session peer while another
	// request of them was open (the end game); DupSessionLate: chunks
	// that arrived after their request was closed; DupSessionBehindOrigin:
	// chunks whose kept copy came through an origin request (a
	// pull-through answer or the origin): the pull and session race.
	// DupPull: pull-through answers not kept; DupOrigin: origin answers
	// not kept (no peer sent them, but they were read and hashed).
	// CutSession, CutPull: bytes of chunks cancelled part way.
	DupSession, DupSessionEndgame, DupSessionLate, DupSessionBehindOrigin int64
	// DupSessionNoDownload: whole chunks from session peers that arrived
	// once our download of their package had ended.
	DupSessionNoDownload int64
	// UpSession, UpPull: bytes this host sent peers in sessions and in
	// answers to pull-through requests; KeptSession, KeptPull: bytes it
	// kept from them (what the two routes moved for nothing is the
	// difference, summed over the hosts).
	UpSession, UpPull, KeptSession, KeptPull int64
	DupPull, DupOrigin                       int64
	CutSession, CutPull                      int64
}

// counters are a Swarm's Counters, updated as things happen.
type counters struct {
	sessionsOpened, sessionsAccepted atomic.Int64
	pullStreams                      atomic.Int64
	sessionsDeferred                 atomic.Int64
	pullsSilent, pullsClaimed        atomic.Int64
	pullsRefused                     atomic.Int64
	originFallbacks                  atomic.Int64
	originFetches                    atomic.Int64
	originDownWaited                 atomic.Int64
	originDownAtOnce                 atomic.Int64
	endWait, endWaitMax              atomic.Int64
	dupSession, dupSessionEndgame    atomic.Int64
	dupSessionLate, dupSessionBehind atomic.Int64
	dupPull, dupOrigin               atomic.Int64
	cutSession, cutPull              atomic.Int64
	dupNoDownload                    atomic.Int64
	upSession, upPull                atomic.Int64
	keptSession, keptPull            atomic.Int64
}

// noteEnd counts a download's wait from its end to Download's return.
func (c *counters) noteEnd(d time.Duration) {
	c.endWait.Add(int64(d))
	for {
		m := c.endWaitMax.Load()
		if int64(d) <= m || c.endWaitMax.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Counters returns a snapshot of the Swarm's counters.
func (s *Swarm) Counters() Counters {
	c := &s.ctr
	return Counters{
		SessionStreamsOpened:   c.sessionsOpened.Load(),
		SessionStreamsAccepted: c.sessionsAccepted.Load(),
		PullStreams:            c.pullStreams.Load(),
		SessionsDeferred:       c.sessionsDeferred.Load(),
		PullsSilent:            c.pullsSilent.Load(),
		PullsClaimed:           c.pullsClaimed.Load(),
		PullsRefused:           c.pullsRefused.Load(),
		OriginFallbacks:        c.originFallbacks.Load(),
		OriginFetches:          c.originFetches.Load(),
		OriginDownWaited:       c.originDownWaited.Load(),
		OriginDownAtOnce:       c.originDownAtOnce.Load(),
		EndWait:                time.Duration(c.endWait.Load()),
		EndWaitMax:             time.Duration(c.endWaitMax.Load()),
		DupSession:             c.dupSession.Load(),
		DupSessionEndgame:      c.dupSessionEndgame.Load(),
		DupSessionLate:         c.dupSessionLate.Load(),
		DupSessionBehindOrigin: c.dupSessionBehind.Load(),
		DupPull:                c.dupPull.Load(),
		DupOrigin:              c.dupOrigin.Load(),
		CutSession:             c.cutSession.Load(),
		CutPull:                c.cutPull.Load(),
		DupSessionNoDownload:   c.dupNoDownload.Load(),
		UpSession:              c.upSession.Load(),
		UpPull:                 c.upPull.Load(),
		KeptSession:            c.keptSession.Load(),
		KeptPull:               c.keptPull.Load(),
	}
}

// Add returns the sum of c and o.
func (c Counters) Add(o Counters) Counters {
	return Counters{
		SessionStreamsOpened:   c.SessionStreamsOpened + o.SessionStreamsOpened,
		SessionStreamsAccepted: c.SessionStreamsAccepted + o.SessionStreamsAccepted,
		PullStreams:            c.PullStreams + o.PullStreams,
		SessionsDeferred:       c.SessionsDeferred + o.SessionsDeferred,
		PullsSilent:            c.PullsSilent + o.PullsSilent,
		PullsClaimed:           c.PullsClaimed + o.PullsClaimed,
		PullsRefused:           c.PullsRefused + o.PullsRefused,
		OriginFallbacks:        c.OriginFallbacks + o.OriginFallbacks,
		OriginFetches:          c.OriginFetches + o.OriginFetches,
		OriginDownWaited:       c.OriginDownWaited + o.OriginDownWaited,
		OriginDownAtOnce:       c.OriginDownAtOnce + o.OriginDownAtOnce,
		EndWait:                c.EndWait + o.EndWait,
		EndWaitMax:             max(c.EndWaitMax, o.EndWaitMax),
		DupSession:             c.DupSession + o.DupSession,
		DupSessionEndgame:      c.DupSessionEndgame + o.DupSessionEndgame,
		DupSessionLate:         c.DupSessionLate + o.DupSessionLate,
		DupSessionBehindOrigin: c.DupSessionBehindOrigin + o.DupSessionBehindOrigin,
		DupPull:                c.DupPull + o.DupPull,
		DupOrigin:              c.DupOrigin + o.DupOrigin,
		CutSession:             c.CutSession + o.CutSession,
		CutPull:                c.CutPull + o.CutPull,
		DupSessionNoDownload:   c.DupSessionNoDownload + o.DupSessionNoDownload,
		UpSession:              c.UpSession + o.UpSession,
		UpPull:                 c.UpPull + o.UpPull,
		KeptSession:            c.KeptSession + o.KeptSession,
		KeptPull:               c.KeptPull + o.KeptPull,
	}
}

// countPullErr counts how a pull-through request failed.
func countPullErr(c *counters, err error, claimed bool) {
	switch {
	case claimed:
		c.pullsClaimed.Add(1)
	case errors.Is(err, errPullSilent):
		c.pullsSilent.Add(1)
	case errors.Is(err, errPullRefused):
		c.pullsRefused.Add(1)
	}
}
