package simulations

// Head-of-line blocking of control messages (Scenario.HeadOfLine).
//
// The daemon sends everything it says to one peer on one stream, written
// by one loop: control messages (requests, cancels, rejects, HaveUpdates,
// Fetching) go out between chunks, so a message waits for the end of the
// chunk being written to that peer. With fast links that wait is a
// millisecond; with a capped upload shared by several sessions it is a
// large part of a chunk's transfer time, and a Fetching that arrives late
// lets two hosts ask the origin for the same chunk. With HeadOfLine on,
// a message from h to q is held while h's upload flow to q is open and
// sent (one latency later) when that flow ends, before h's next chunk to
// q starts: the daemon's writeLoop order. HaveUpdates and Fetching then
// go out per watcher (one event each) instead of one event per latency
// class, which costs O(peers) events per message; off (the default), the
// simulator is unchanged.

// Per-watcher HaveUpdate and Fetching (HeadOfLine): a = receiver, b =
// sender, c = chunk.
const (
	evHaveOne = evSample + 1 + iota
	evFetchingOne
)

// handleHeadOfLine handles the event kinds of this file.
func (s *sim) handleHeadOfLine(ev event) {
	switch ev.kind {
	case evHaveOne:
		s.haveOne(ev.a, ev.b, ev.c)
	case evFetchingOne:
		s.fetchingOne(ev.a, ev.b, ev.c)
	}
}

// sendOn sends a message from h on h's session k (to its peer): at once
// (one latency) unless HeadOfLine holds it behind h's open upload flow on
// that session. k < 0: no session, sent at once.
func (s *sim) sendOn(h int32, k int, q int32, kind uint8, a, b, c int32) {
	if s.sc.HeadOfLine && k >= 0 {
		if se := &s.hosts[h].sess[k]; se.flow >= 0 {
			s.hold(se, event{kind: kind, a: a, b: b, c: c})
			return
		}
	}
	s.schedule(s.now+s.lat(h, q), kind, a, b, c)
}

// sendTo is sendOn for h's session with q, whichever it is.
func (s *sim) sendTo(h, q int32, kind uint8, a, b, c int32) {
	k := -1
	if s.sc.HeadOfLine {
		k = s.sessionOf(h, q)
	}
	s.sendOn(h, k, q, kind, a, b, c)
}

// flushHeld sends what h held on session k: its upload flow just ended.
func (s *sim) flushHeld(h int32, k int) {
	se := &s.hosts[h].sess[k]
	if se.held == 0 {
		return
	}
	q := se.peer
	x := se.held - 1
	held := s.heldQ[x]
	s.heldQ[x] = nil
	s.heldFree = append(s.heldFree, x)
	se.held = 0
	for _, m := range held {
		s.schedule(s.now+s.lat(h, q), m.kind, m.a, m.b, m.c)
	}
}

// hold appends m to the messages session se holds back.
func (s *sim) hold(se *session, m event) {
	if se.held == 0 {
		if n := len(s.heldFree); n > 0 {
			se.held = s.heldFree[n-1] + 1
			s.heldFree = s.heldFree[:n-1]
		} else {
			s.heldQ = append(s.heldQ, nil)
			se.held = int32(len(s.heldQ))
		}
	}
	s.heldQ[se.held-1] = append(s.heldQ[se.held-1], m)
}

// broadcastHeadOfLine sends a HaveUpdate or Fetching about chunk i to each
// watcher of h on its own session.
func (s *sim) broadcastHeadOfLine(h int32, kind uint8, i int32) {
	one := uint8(evHaveOne)
	if kind == evFetching {
		one = evFetchingOne
	}
	for _, w := range s.hosts[h].watch {
		k := int(s.hosts[w.q].sess[w.k].rev)
		if k >= len(s.hosts[h].sess) || s.hosts[h].sess[k].peer != w.q {
			k = s.sessionOf(h, w.q)
		}
		s.sendOn(h, k, w.q, one, w.q, h, i)
	}
}

// haveOne: q hears h's HaveUpdate for chunk i.
func (s *sim) haveOne(q, h, i int32) {
	qs := &s.hosts[q]
	if s.hosts[h].state == stGone || qs.state != stActive || qs.picker == nil || qs.have.Has(int(i)) {
		return
	}
	k := s.sessionOf(q, h)
	if k < 0 || !qs.sess[k].known {
		return
	}
	s.waitFree(q)
	qs.picker.PeerHave(s.ids[h], int(i))
	s.fillPeer(q, k)
}

// fetchingOne: q hears h's Fetching for chunk i.
func (s *sim) fetchingOne(q, h, i int32) {
	qs := &s.hosts[q]
	if s.hosts[h].state == stGone || qs.state != stActive || qs.picker == nil || qs.have.Has(int(i)) {
		return
	}
	if k := s.sessionOf(q, h); k < 0 || !qs.sess[k].known {
		return
	}
	s.waitFree(q)
	qs.picker.PeerPending(s.ids[h], int(i), s.at(s.now))
}
