package swarm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/storkpm/stork/transfer/policy"
	"golang.org/x/time/rate"
)

// maxUnsolicited chunks a peer may send that we did not ask it for (late
// answers to cancelled or timed-out requests) before it is cut off.
const maxUnsolicited = 64

var errDuplicateSession = errors.New("duplicate session")

// session is one swarm stream with a peer about one package. Its reader
// runs in the goroutine that called run (the stream handler, or a
// connector owned by the Swarm); its writer is a goroutine owned by the
// Swarm. It serves the peer's requests whatever happens to our download,
// and feeds our download (dl) while one runs and it is attached.
type session struct {
	s        *Swarm
	peer     PeerID
	st       Stream
	outbound bool
	manifest cid.Cid
	pkg      *pkgInfo
	dl       atomic.Pointer[download]

	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	chunks chan *Message // received chunks, verified and stored by the deliverLoops
	upWake chan struct{} // uploads queued: wakes the readLoops
	ready  chan upload   // uploads read from the Store, for the writeLoop

	mu       sync.Mutex
	closed   bool
	closeErr error
	ctrl     []*Message
	uploads  []uint32
	reading  int // uploads taken by a readUploads, not yet written
	// pending: the chunks queued in uploads, being read or being sent. A
	// Request of one of them again is a duplicate and dropped.
	pending   map[uint32]bool
	cancelled map[uint32]bool // pending, cancelled while being read or sent: not to be sent (further)
	// sent: chunks sent whole, when, and in that order (bounded by
	// recentSent). A Request of one of them within RequestTimeout, with no
	// Cancel of it since, is a duplicate and dropped.
	sentAt map[uint32]time.Time
	sent   []sentChunk
	// cancels: chunks we cancelled, so that a late answer (already on its
	// way) is not held against the peer (unsolicited). Bounded.
	cancels     map[uint32]bool
	remoteHave  policy.Bitfield
	remoteCount int
	gotHave     bool
	ourFull     bool
	unsolicited int
}

func newSession(s *Swarm, p PeerID, st Stream, outbound bool) *session {
	ss := &session{s: s, peer: p, st: st, outbound: outbound, wake: make(chan struct{}, 1), upWake: make(chan struct{}, 1), pending: make(map[uint32]bool)}
	ss.ctx, ss.cancel = context.WithCancel(s.ctx)
	return ss
}

// send queues a control message.
func (ss *session) send(m *Message) {
	ss.mu.Lock()
	if !ss.closed {
		ss.ctrl = append(ss.ctrl, m)
	}
	ss.mu.Unlock()
	ss.poke()
}

// cancelChunk queues a Cancel of chunk i and remembers it (see cancels).
func (ss *session) cancelChunk(i int) {
	ss.mu.Lock()
	if !ss.closed {
		if ss.cancels == nil {
			ss.cancels = make(map[uint32]bool)
		}
		if len(ss.cancels) < maxUploadQueue {
			ss.cancels[uint32(i)] = true
		}
		ss.ctrl = append(ss.ctrl, &Message{Type: MsgCancel, Indices: []uint32{uint32(i)}})
	}
	ss.mu.Unlock()
	ss.poke()
}

// answered records that chunk i arrived or was rejected, and reports
// whether it was cancelled (a late answer to a Cancel of ours).
func (ss *session) answered(i uint32) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !ss.cancels[i] {
		return false
	}
	delete(ss.cancels, i)
	return true
}

func (ss *session) poke() {
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

// close ends the session: gracefully (err nil) or with a reset.
func (ss *session) close(err error) {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return
	}
	ss.closed = true
	ss.closeErr = err
	ss.mu.Unlock()
	ss.cancel()
	if err == nil {
		ss.st.Close()
	} else {
		ss.st.Reset()
	}
}

// run drives the session until the stream ends. manifest is the package
// for an outbound session (cid.Undef: read the peer's Hello).
func (ss *session) run(manifest cid.Cid) {
	s := ss.s
	var br *bufio.Reader
	var r io.Reader = ss.st
	if s.down != nil {
		r = &limitedReader{r: ss.st, lim: s.down, ctx: ss.ctx}
	}
	br = bufio.NewReaderSize(r, 64<<10)
	var d *download
	if manifest.Defined() {
		ss.manifest = manifest
		var err error
		if ss.pkg, d, err = s.pkg(manifest); err != nil {
			ss.close(err)
			return
		}
	} else {
		s.ctr.sessionsAccepted.Add(1)
		t := time.AfterFunc(s.cfg.RequestTimeout, func() { ss.st.Reset() })
		m, err := ReadMessage(br, WireLimits{MaxChunk: 1})
		t.Stop()
		if err != nil || m.Type != MsgHello {
			if err == nil {
				err = fmt.Errorf("%w: %s message before hello", ErrProtocol, m.Type)
			}
			s.log.Debug("inbound stream refused", "peer", ss.peer, "err", err)
			ss.close(err)
			return
		}
		ss.manifest = m.Manifest
		if ss.pkg, d, err = s.pkg(m.Manifest); err != nil {
			s.log.Debug("inbound stream for an unknown package", "peer", ss.peer, "manifest", m.Manifest, "err", err)
			ss.close(err)
			return
		}
	}
	if !s.register(ss, d) {
		ss.close(errDuplicateSession)
		ss.teardown()
		return
	}
	workers, readers := ss.pkg.sessionWorkers()
	ss.chunks = make(chan *Message, workers)
	ss.ready = make(chan upload, uploadAhead(ss.pkg.maxChunk))
	ok := s.goroutine(ss.writeLoop)
	for k := 0; ok && k < workers; k++ {
		ok = s.goroutine(ss.deliverLoop)
	}
	for k := 0; ok && k < readers; k++ {
		ok = s.goroutine(ss.readUploads)
	}
	if !ok {
		ss.close(ErrClosed)
	}
	err := ss.readLoop(br)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil && ss.ctx.Err() == nil {
		s.log.Debug("swarm stream ended", "peer", ss.peer, "manifest", ss.manifest, "err", err)
	}
	ss.close(err)
	ss.teardown()
}

// teardown unregisters the session and detaches it from our download.
func (ss *session) teardown() {
	s := ss.s
	s.mu.Lock()
	if m := s.sessions[ss.manifest]; m != nil && m[ss.peer] == ss {
		delete(m, ss.peer)
		if len(m) == 0 {
			delete(s.sessions, ss.manifest)
		}
	}
	s.mu.Unlock()
	if d := ss.dl.Load(); d != nil {
		d.detach(ss)
	}
}

// register adds ss to the Swarm's sessions, attaches it to d (our running
// download of the package, if any) and queues Hello (outbound) and our
// have-map. It returns false if ss must close instead: the peer is banned
// from d, the Swarm is closed, or another session with the peer wins (the
// one opened by the smaller peer ID, which both sides agree on).
func (s *Swarm) register(ss *session, d *download) bool {
	n := len(ss.pkg.refs)
	var have policy.Bitfield
	if d != nil {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.banned[ss.peer] || d.dropped[ss.peer] {
			return false
		}
		have = d.picker.HaveMap(nil)
	} else {
		have = policy.NewBitfield(n)
		if ps, ok := s.cfg.Store.(PackageStore); ok && ps.HasPackage(ss.manifest) {
			for i := range n {
				have.Set(i)
			}
		} else {
			for i, r := range ss.pkg.refs {
				if s.cfg.Store.HasChunk(r.CID) {
					have.Set(i)
				}
			}
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	m := s.sessions[ss.manifest]
	if m == nil {
		m = make(map[PeerID]*session)
		s.sessions[ss.manifest] = m
	}
	old := m[ss.peer]
	if old != nil && ss.outbound != (s.cfg.Self < ss.peer) {
		s.mu.Unlock()
		return false
	}
	m[ss.peer] = ss
	s.mu.Unlock()
	if old != nil {
		old.close(errDuplicateSession)
	}
	var fetching []uint32
	if d != nil && !d.finished {
		if cur := d.peers[ss.peer]; cur != nil {
			// The replaced stream's requests are lost with it; what the
			// peer has is not.
			cur.dl.CompareAndSwap(d, nil)
			d.picker.DropRequests(ss.peer)
			d.peers[ss.peer] = ss
			ss.dl.Store(d)
		} else if len(d.peers) < s.cfg.MaxPeersPerDownload {
			d.peers[ss.peer] = ss
			d.peersSeen[ss.peer] = true
			ss.dl.Store(d)
		}
		for i := range d.originCancel {
			fetching = append(fetching, uint32(i))
		}
	}
	ss.mu.Lock()
	if ss.outbound {
		ss.ctrl = append(ss.ctrl, &Message{Type: MsgHello, Manifest: ss.manifest})
	}
	ss.ctrl = append(ss.ctrl, &Message{Type: MsgHave, Manifest: ss.manifest, Count: n, Have: have, Site: s.announcedSite()})
	if len(fetching) > 0 {
		ss.ctrl = append(ss.ctrl, &Message{Type: MsgFetching, Indices: fetching})
	}
	ss.ourFull = have.Count() == n
	ss.mu.Unlock()
	ss.poke()
	return true
}

// setOurFull records that we now hold the whole package.
func (ss *session) setOurFull() {
	ss.mu.Lock()
	ss.ourFull = true
	ss.mu.Unlock()
	ss.maybeIdle()
}

// maybeIdle closes the session once neither side needs the other: both
// hold the whole package and nothing is queued.
func (ss *session) maybeIdle() {
	ss.mu.Lock()
	idle := ss.gotHave && ss.ourFull && ss.remoteCount == len(ss.pkg.refs) && len(ss.uploads) == 0 && ss.reading == 0 && !ss.closed
	ss.mu.Unlock()
	if idle {
		ss.close(nil)
	}
}

// writeLoop sends queued control messages first, then the uploads the
// readUploads have ready, flushing whenever there is nothing left to send
// at once (a full buffer is written out as it fills).
func (ss *session) writeLoop() {
	bw := bufio.NewWriterSize(ss.st, 64<<10)
	var next *upload
	for {
		select {
		case <-ss.ctx.Done():
			return
		case <-ss.wake:
		case u := <-ss.ready:
			next = &u
		}
		for {
			ctrl := ss.takeCtrl()
			if next == nil {
				select {
				case u := <-ss.ready:
					next = &u
				default:
				}
			}
			if len(ctrl) == 0 && next == nil {
				// Flush only when the queues run dry: small chunks and
				// control messages share frames instead of one write each.
				if err := bw.Flush(); err != nil {
					ss.close(fmt.Errorf("write to %s: %w", ss.peer, err))
					return
				}
				break
			}
			var err error
			for _, m := range ctrl {
				if err = WriteMessage(bw, m); err != nil {
					break
				}
			}
			if err == nil && next != nil {
				ss.mu.Lock()
				ss.reading--
				drop := ss.cancelled[uint32(next.i)]
				if drop {
					delete(ss.cancelled, uint32(next.i))
					delete(ss.pending, uint32(next.i))
				}
				ss.mu.Unlock()
				if !drop {
					err = ss.upload(bw, next)
				}
				next.release()
				next = nil
			}
			if err != nil {
				ss.close(fmt.Errorf("write to %s: %w", ss.peer, err))
				return
			}
		}
		ss.maybeIdle()
	}
}

// takeCtrl takes the queued control messages.
func (ss *session) takeCtrl() []*Message {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ctrl := ss.ctrl
	ss.ctrl = nil
	return ctrl
}

// limitedReader paces reads to a shared download rate.
type limitedReader struct {
	r   io.Reader
	lim *rate.Limiter
	ctx context.Context
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if len(p) > ratePiece {
		p = p[:ratePiece]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		if werr := l.lim.WaitN(l.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}
