package simulations

// Sessions between two hosts done with a package (workload.go).
//
// A host done with a package keeps its sessions: its peers still fetching
// the package ask it for chunks. A session between two hosts that both
// have the package carries nothing more once the messages they sent each
// other before they were done have arrived and its upload queues and
// flows are empty: neither host asks for a chunk again (a done host has
// no Picker), and every message between hosts takes one latency, at
// most the larger of Latency.Site and Latency.WAN. Such a session is
// dropped at both ends, so that a workload, whose packages stay until
// their last host finishes, holds per done host only its sessions with
// hosts still fetching. The run is the same: a dropped session would
// never have been read again. With head-of-line blocking a message may
// leave after its sender is done (flushHeld), and with churn a host's
// sessions are walked when it leaves: neither drops sessions.

// prunable says whether s drops the sessions of its done hosts (a
// workload's package, without head-of-line blocking or churn).
func (s *sim) prunable() bool {
	return s.starts != nil && s.swarm && !s.sc.HeadOfLine && s.sc.Churn.Fraction == 0
}

// pruneLag is how long after two hosts are done with a package their
// session may still carry a message: one latency.
func (s *sim) pruneLag() float64 { return max(s.latSite, s.latWAN) }

// pruneDue says whether the earliest done host not yet pruned has been
// done for longer than pruneLag.
func (s *sim) pruneDue() bool {
	return s.pruneHead < len(s.pruneQ) && s.now > s.hosts[s.pruneQ[s.pruneHead]].done+s.pruneLag()
}

// prune drops the idle sessions between done hosts of every host that
// has been done for longer than pruneLag, in the order they finished
// (hostDone queues them). A session whose other end is not done yet, or
// not long enough, is dropped when that end's turn comes.
func (s *sim) prune() {
	lag := s.pruneLag()
	for s.pruneDue() {
		h := s.pruneQ[s.pruneHead]
		s.pruneHead++
		hs := &s.hosts[h]
		for k := 0; k < len(hs.sess); {
			se := &hs.sess[k]
			q, j := se.peer, int(se.rev)
			qs := &s.hosts[q]
			if qs.state != stDone || !(s.now > qs.done+lag) || !idleSession(se) || !idleSession(&qs.sess[j]) {
				k++
				continue
			}
			s.dropSession(h, k) // the last session moves to k
			s.dropSession(q, j)
		}
		if len(hs.watch) == 0 {
			hs.watch = nil
		}
	}
	if s.pruneHead == len(s.pruneQ) {
		s.pruneQ, s.pruneHead = s.pruneQ[:0], 0
	}
}

// idleSession: nothing waits to be sent on se, nothing is being sent.
func idleSession(se *session) bool {
	return se.flow < 0 && len(se.queue) == 0 && se.held == 0 && !se.discard && !se.known
}

// dropSession removes host h's session k, moving h's last session into
// its place (its peer's reverse index and its upload flow follow).
func (s *sim) dropSession(h int32, k int) {
	ss := s.hosts[h].sess
	last := len(ss) - 1
	if k != last {
		m := ss[last]
		ss[k] = m
		s.hosts[m.peer].sess[m.rev].rev = int32(k)
		if m.flow >= 0 {
			s.flows[m.flow].vm = int32(k)
		}
	}
	ss[last] = session{}
	s.hosts[h].sess = shrink(ss[:last])
}

// shrink copies ss into an array of its length once it uses less than a
// quarter of its capacity.
func shrink(ss []session) []session {
	if len(ss) == 0 {
		return nil
	}
	if len(ss) >= cap(ss)/4 {
		return ss
	}
	return append([]session(nil), ss...)
}
