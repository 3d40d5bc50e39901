package simulations

// This file is a host's upload sent in pieces (Scenario.UploadPiece): the
// daemon's upload limiter hands out one turn at a time, of one piece
// (transfer/swarm waitUpload, fairShare, ratePiece), to the peers waiting
// for it in start-time fair order by bytes. So a host's answers of one
// piece each end one after another, a turn apart, where fluid sharing
// ends them all together at the end of the last one's turn. See doc.go,
// "Uploads in pieces".
//
// A server sent in pieces (server.pq set) has at most one flow in its
// sharing sets with a positive cap: the one holding the turn, sending its
// current piece. Every other flow of the server is parked: in the
// server's capped set with cap 0 (so it moves no bytes and never ends),
// taking nothing of the links it crosses (relevel, capWith). When the
// turn's piece is sent (the engine's next completion at the server), the
// flow asks for its next piece, if it has bytes left (pieceNext), and the
// turn passes to the waiter with the smallest start tag.

// pieceState is a server's limiter: the turn and the waiters for it.
type pieceState struct {
	piece float64 // bytes per turn
	turn  int32   // the flow holding the turn, -1 none
	// vt and fin: start-time fair queueing's virtual time and each
	// receiver's finish tag (bytes), as fairShare's vtime and finish.
	vt      float64
	fin     map[int32]float64
	pruneAt int
	waiters []int32 // parked flows, in the order they asked
}

// pieceFlow is a flow's part in its server's turns (engine.pc, by flow
// id; zero at a server not sent in pieces): left, the bytes beyond the
// piece it is sending (holding the turn); start, its piece's start tag;
// parked, waiting for the turn.
type pieceFlow struct {
	left   float64
	start  float64
	parked bool
}

// addUploadServer adds a host's upload of capacity bytes/s: shared per
// peer, as the daemon's fairShare (engine.go server), and sent in
// Scenario.UploadPiece pieces when set.
func (s *sim) addUploadServer(capacity float64) int32 {
	id := s.addServer(capacity)
	s.srvs[id].perPeer = true
	if s.sc.UploadPiece > 0 {
		s.setPiece(id, float64(s.sc.UploadPiece))
	}
	return id
}

// setPiece makes server sid send in pieces of piece bytes.
func (e *engine) setPiece(sid int32, piece float64) {
	e.srvs[sid].pq = &pieceState{piece: piece, turn: -1, fin: map[int32]float64{}, pruneAt: 64}
	e.pieceOn = true
}

// parked reports whether flow id waits for its server's turn.
func (e *engine) parked(id int32) bool { return e.pieceOn && e.pc[id].parked }

// pieceJoin enters flow id, new at server s (advanced to now), into the
// turns with its size bytes, and returns the bytes to put in the server's
// sets and whether it is parked. At a server not sent in pieces: size,
// not parked.
func (e *engine) pieceJoin(s *server, id int32, size float64) (float64, bool) {
	if !e.pieceOn {
		return size, false
	}
	for len(e.pc) < len(e.flows) {
		e.pc = append(e.pc, pieceFlow{})
	}
	e.pc[id] = pieceFlow{}
	if s.pq == nil || e.isJob(id) {
		return size, false
	}
	e.ask(s.pq, id, size)
	if s.pq.turn >= 0 {
		e.pc[id].parked = true
		s.pq.waiters = append(s.pq.waiters, id)
		return size, true
	}
	s.pq.turn, s.pq.vt = id, e.pc[id].start
	n := min(s.pq.piece, size)
	e.pc[id].left = size - n
	return n, false
}

// ask tags flow id's next piece of its total bytes left, as fairShare's
// acquire: start = max(V, F[receiver]), and F[receiver] moves past it.
func (e *engine) ask(q *pieceState, id int32, total float64) {
	dst := e.flows[id].dst
	start := max(q.vt, q.fin[dst])
	q.fin[dst] = start + min(q.piece, total)
	e.pc[id].start = start
	if len(q.fin) >= q.pruneAt {
		for d, f := range q.fin {
			if f <= q.vt {
				delete(q.fin, d)
			}
		}
		q.pruneAt = max(64, 2*len(q.fin))
	}
}

// pieceNext: flow id, ending now at its server, has sent its turn's
// piece. If it has bytes left, it parks and asks for its next piece, the
// turn passes on, and pieceNext reports true (the flow goes on); else
// false (the flow ends: the caller ends it, which passes the turn).
func (e *engine) pieceNext(id int32) bool {
	if !e.pieceOn || !(e.pc[id].left > 0) {
		return false
	}
	f := &e.flows[id]
	sid := f.srv
	s := &e.srvs[sid]
	e.advance(s)
	e.detach(s, id)
	total := e.pc[id].left
	e.pc[id].left = 0
	e.pc[id].parked = true
	e.flows[id].cap = 0
	e.insertB(s, id, total)
	e.ask(s.pq, id, total)
	s.pq.waiters = append(s.pq.waiters, id)
	s.pq.turn = -1
	next := e.passTurn(s)
	e.rebalance(s)
	e.reschedule(sid)
	e.touchLinks(id)
	if next >= 0 && next != id {
		e.touchLinks(next)
	}
	return true
}

// pieceLeave takes flow id (detached from server s) out of the turns as
// it ends, passes the turn on if it held it, and returns its bytes
// beyond its piece and the new holder of the turn (-1: none). The caller
// rebalances s, then refreshes the new holder's links (touchLinks).
func (e *engine) pieceLeave(s *server, id int32) (float64, int32) {
	if !e.pieceOn || s.pq == nil || e.isJob(id) {
		return 0, -1
	}
	q := s.pq
	left := e.pc[id].left
	e.pc[id].left = 0
	if e.pc[id].parked {
		e.pc[id].parked = false
		for k, w := range q.waiters {
			if w == id {
				q.waiters = append(q.waiters[:k], q.waiters[k+1:]...)
				break
			}
		}
		return left, -1
	}
	next := int32(-1)
	if q.turn == id {
		q.turn = -1
		next = e.passTurn(s)
	}
	return left, next
}

// passTurn gives server s's free turn to the waiter with the smallest
// start tag (ties: the first to ask), unparked with its next piece, and
// returns it (-1: none waits). The caller rebalances s.
func (e *engine) passTurn(s *server) int32 {
	q := s.pq
	if len(q.waiters) == 0 {
		return -1
	}
	k := 0
	for j, w := range q.waiters {
		if e.pc[w].start < e.pc[q.waiters[k]].start {
			k = j
		}
	}
	id := q.waiters[k]
	q.waiters = append(q.waiters[:k], q.waiters[k+1:]...)
	q.turn, q.vt = id, e.pc[id].start
	total := e.detach(s, id)
	n := min(q.piece, total)
	e.pc[id].parked = false
	e.pc[id].left = total - n
	e.flows[id].cap = e.flowCap(id)
	e.insertA(s, id, n)
	return id
}

// touchLinks levels the links flow id crosses again (its bound on them
// changed: parked or given the turn) and refreshes their flows' caps.
func (e *engine) touchLinks(id int32) {
	f := &e.flows[id]
	for _, l := range []int32{f.su, f.sd} {
		if l >= 0 {
			e.relevel(l)
			e.refreshCaps(l)
		}
	}
	if e.onCPU(id) != nil {
		e.relevel(e.cpu.link)
		e.refreshCaps(e.cpu.link)
	}
}

// refreshCaps sets the caps of link lid's flows from its share.
func (e *engine) refreshCaps(lid int32) {
	for k := 0; k < len(e.links[lid].flows); k++ {
		e.setCap(e.links[lid].flows[k], -1)
	}
}
