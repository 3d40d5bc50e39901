package swarm

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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

// upload is a requested chunk read from the Store (or the error that
// stopped it).
type upload struct {
	i    int
	data []byte
	err  error
	buf  *[]byte // from uploadBufs, returned once data is written
}

// uploadBufs recycles the buffers of a ChunkReaderInto store: chunk-sized,
// aligned (see newPayload) so that a store may read into them directly.
var uploadBufs sync.Pool

func getUploadBuf(n int) *[]byte {
	if p, _ := uploadBufs.Get().(*[]byte); p != nil && cap(*p) >= n {
		return p
	}
	raw := make([]byte, n+alignedChunk)
	o := (alignedChunk - int(uintptr(unsafe.Pointer(&raw[0]))&(alignedChunk-1))) & (alignedChunk - 1)
	b := raw[o : o+n : o+n]
	return &b
}

func (u *upload) release() {
	if u.buf != nil {
		uploadBufs.Put(u.buf)
		u.buf = nil
	}
}

// Uploads are read from the Store (disk read and re-verification) by
// uploadReaders goroutines per session, at most uploadAhead(maxChunk)
// chunks ahead of the writer, so that the Store's latency overlaps with
// the stream instead of adding to every chunk. Four readers and 8 MiB
// ahead: a chunk read from disk (O_DIRECT, not cached) takes milliseconds,
// and a disk serves several reads at once faster than one after another.
const (
	uploadReaders   = 4
	uploadAheadSize = 8 << 20
)

func uploadAhead(maxChunk int) int {
	return min(max(uploadAheadSize/max(maxChunk, 1), 1), 64)
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
	workers := deliverWorkers(ss.pkg.maxChunk)
	ss.chunks = make(chan *Message, workers)
	ss.ready = make(chan upload, uploadAhead(ss.pkg.maxChunk))
	ok := s.goroutine(ss.writeLoop)
	for k := 0; ok && k < workers; k++ {
		ok = s.goroutine(ss.deliverLoop)
	}
	for k := 0; ok && k < uploadReaders; k++ {
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
	ss.ctrl = append(ss.ctrl, &Message{Type: MsgHave, Manifest: ss.manifest, Count: n, Have: have})
	if len(fetching) > 0 {
		ss.ctrl = append(ss.ctrl, &Message{Type: MsgFetching, Indices: fetching})
	}
	ss.ourFull = have.Count() == n
	ss.mu.Unlock()
	ss.poke()
	return true
}

// chunkBufs recycles received chunks' buffers when the sink keeps no
// reference to what it is given (VerifiedChunkSink).
var chunkBufs sync.Pool

func (ss *session) readLoop(br *bufio.Reader) error {
	limits := WireLimits{MaxChunk: max(ss.pkg.maxChunk, 1)}
	n := len(ss.pkg.refs)
	var part *Message // a chunk being assembled from ChunkParts
	filled := 0
	var progressAt time.Time // when a part last counted as progress
	defer func() {
		if part != nil {
			part.release()
		}
	}()
	// A part that continues the chunk being assembled (or starts one) is
	// read straight into its place; any other goes through the checks
	// below as a message of its own.
	newPart := func(index uint32, total int) {
		data, bp := alignedBuf(total, 0, &chunkBufs)
		part = &Message{Type: MsgChunk, Index: index, Data: data, buf: bp, pool: &chunkBufs}
	}
	dst := func(index uint32, total, offset, k int) []byte {
		if part == nil && offset == 0 {
			newPart(index, total)
		}
		if part == nil || index != part.Index || total != len(part.Data) || offset != filled {
			return nil
		}
		return part.Data[offset : offset+k]
	}
	for {
		m, err := readMessage(br, limits, &chunkBufs, dst)
		if err != nil {
			return err
		}
		switch {
		case m.Type == MsgChunkPart && part == nil:
			if m.Offset != 0 {
				return fmt.Errorf("%w: chunk %d starts with a part at %d", ErrProtocol, m.Index, m.Offset)
			}
			newPart(m.Index, m.Total)
			fallthrough
		case m.Type == MsgChunkPart:
			if m.Index != part.Index || m.Total != len(part.Data) || m.Offset != filled {
				return fmt.Errorf("%w: part of chunk %d (%d bytes at %d) while chunk %d has %d of %d bytes", ErrProtocol, m.Index, len(m.Data), m.Offset, part.Index, filled, len(part.Data))
			}
			if k := len(m.Data); k > 0 && &m.Data[0] == &part.Data[filled] {
				filled += k // read into place
			} else {
				filled += copy(part.Data[filled:], m.Data)
			}
			if filled < len(part.Data) {
				// Bytes flow: the peer's requests are not stalled. (At
				// most ten calls a second, each takes the download lock.)
				if now := time.Now(); now.Sub(progressAt) >= 100*time.Millisecond {
					progressAt = now
					if d := ss.dl.Load(); d != nil {
						d.progress(ss, int(part.Index), now)
					}
				}
				continue
			}
			m, part, filled = part, nil, 0
		case m.Type == MsgChunk && part != nil:
			return fmt.Errorf("%w: chunk %d while chunk %d has %d of %d bytes", ErrProtocol, m.Index, part.Index, filled, len(part.Data))
		case m.Type == MsgReject && m.Reason == RejectCancelled && part != nil && slices.Contains(m.Indices, part.Index):
			// The sender stopped the chunk we cancelled.
			part.release()
			part, filled = nil, 0
		}
		if err := ss.handle(m, n); err != nil {
			return err
		}
	}
}

func (ss *session) handle(m *Message, n int) error {
	checkIdx := func(idx ...uint32) error {
		for _, i := range idx {
			if int64(i) >= int64(n) {
				return fmt.Errorf("%w: %s of chunk %d, package has %d", ErrProtocol, m.Type, i, n)
			}
		}
		return nil
	}
	ss.mu.Lock()
	gotHave := ss.gotHave
	ss.mu.Unlock()
	if !gotHave && m.Type != MsgHave {
		return fmt.Errorf("%w: %s message before have", ErrProtocol, m.Type)
	}
	switch m.Type {
	case MsgHello:
		return fmt.Errorf("%w: second hello", ErrProtocol)
	case MsgHave:
		if gotHave || !m.Manifest.Equals(ss.manifest) || m.Count != n {
			return fmt.Errorf("%w: have for %s of %d chunks on a stream about %s (%d chunks)", ErrProtocol, m.Manifest, m.Count, ss.manifest, n)
		}
		ss.mu.Lock()
		ss.gotHave = true
		ss.remoteHave = m.Have
		ss.remoteCount = m.Have.Count()
		ss.mu.Unlock()
		if d := ss.dl.Load(); d != nil {
			d.peerJoined(ss, m.Have)
		}
		ss.maybeIdle()
	case MsgHaveUpdate:
		if err := checkIdx(m.Index); err != nil {
			return err
		}
		ss.mu.Lock()
		if !ss.remoteHave.Has(int(m.Index)) {
			ss.remoteHave.Set(int(m.Index))
			ss.remoteCount++
		}
		ss.mu.Unlock()
		if d := ss.dl.Load(); d != nil {
			d.peerHave(ss, int(m.Index))
		}
		ss.maybeIdle()
	case MsgFetching:
		if err := checkIdx(m.Indices...); err != nil {
			return err
		}
		if d := ss.dl.Load(); d != nil {
			d.peerPending(ss, m.Indices)
		}
	case MsgRequest:
		if err := checkIdx(m.Indices...); err != nil {
			return err
		}
		ss.queueUploads(m.Indices)
		select {
		case ss.upWake <- struct{}{}:
		default:
		}
	case MsgCancel:
		if err := checkIdx(m.Indices...); err != nil {
			return err
		}
		ss.cancelUploads(m.Indices)
	case MsgReject:
		if err := checkIdx(m.Indices...); err != nil {
			return err
		}
		for _, i := range m.Indices {
			ss.answered(i)
		}
		if d := ss.dl.Load(); d != nil {
			d.rejected(ss, m.Indices, m.Reason)
		}
	case MsgChunk:
		if err := checkIdx(m.Index); err != nil {
			return err
		}
		// Hashing and storing happen in deliverLoop, so that control
		// messages behind this chunk (Fetching, HaveUpdate) are not held up.
		select {
		case ss.chunks <- m:
		case <-ss.ctx.Done():
			return ss.ctx.Err()
		}
		ss.mu.Lock()
		u := ss.unsolicited
		ss.mu.Unlock()
		if u > maxUnsolicited {
			return fmt.Errorf("%w: %d chunks sent unasked", ErrProtocol, u)
		}
	}
	return nil
}

// deliverLoop verifies and stores the chunks the reader hands over;
// deliverWorkers of them run per session, so that the store's latency
// overlaps with the network and with itself (the Sink may be called
// concurrently). ss.chunks is bounded: a reader that gets ahead of them
// blocks, which backpressures the stream, and at most
// 2*deliverWorkers chunks per session wait in memory.
func (ss *session) deliverLoop() {
	for {
		select {
		case <-ss.ctx.Done():
			return
		case m := <-ss.chunks:
			d := ss.dl.Load()
			if d != nil {
				select {
				case d.sem <- struct{}{}:
				case <-ss.ctx.Done():
					return
				}
			}
			ok := d != nil && d.chunk(ss, int(m.Index), m.Data)
			if d != nil {
				<-d.sem
			}
			if d == nil || d.sinkKeepsNothing {
				m.release()
			}
			if late := ss.answered(m.Index); !ok && !late {
				ss.mu.Lock()
				ss.unsolicited++
				ss.mu.Unlock()
			}
		}
	}
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

// readUploads takes queued uploads and reads them from the Store, ahead
// of the writer (ss.ready is bounded).
func (ss *session) readUploads() {
	for {
		ss.mu.Lock()
		i := -1
		if len(ss.uploads) > 0 && !ss.closed {
			i = int(ss.uploads[0])
			ss.uploads = ss.uploads[1:]
			ss.reading++
		}
		more := len(ss.uploads) > 0
		ss.mu.Unlock()
		if i < 0 {
			select {
			case <-ss.ctx.Done():
				return
			case <-ss.upWake:
			}
			continue
		}
		if more {
			// Let the other reader start on the next one.
			select {
			case ss.upWake <- struct{}{}:
			default:
			}
		}
		u := upload{i: i}
		ref := ss.pkg.refs[i]
		if ri, ok := ss.s.cfg.Store.(ChunkReaderInto); ok && ref.Length >= alignedChunkMin {
			u.buf = getUploadBuf(int(ref.Length))
			u.data, u.err = ri.ReadChunkInto(ref.CID, (*u.buf)[:0])
		} else {
			u.data, u.err = ss.s.cfg.Store.ReadChunk(ref.CID)
		}
		if u.err == nil && int64(len(u.data)) != ref.Length {
			u.err = fmt.Errorf("stored chunk %s has %d bytes, want %d", ref.CID, len(u.data), ref.Length)
		}
		select {
		case ss.ready <- u:
		case <-ss.ctx.Done():
			return
		}
	}
}

// upload sends chunk u.i as read from the Store, or a Reject if we do not
// hold it, paced by the upload rate limit.
func (ss *session) upload(bw *bufio.Writer, u *upload) error {
	i, data, err := u.i, u.data, u.err
	ref := ss.pkg.refs[i]
	if err != nil {
		ss.s.log.Debug("cannot serve chunk", "peer", ss.peer, "chunk", ref.CID, "err", err)
		ss.uploaded(uint32(i), false)
		return WriteMessage(bw, &Message{Type: MsgReject, Reason: RejectNotHave, Indices: []uint32{uint32(i)}})
	}
	sent, stopped := len(data), false
	if ps := ss.partSize(); len(data) > ps {
		sent, stopped, err = ss.uploadParts(bw, i, data, ps)
	} else {
		err = ss.uploadWhole(bw, i, data)
	}
	if !stopped {
		ss.uploaded(uint32(i), err == nil)
	}
	if sent > 0 {
		ss.s.bytesUploaded.Add(int64(sent))
		ss.s.countPeer(ss.peer, 0, int64(sent))
	}
	return err
}

func (ss *session) partSize() int {
	if ss.s.up != nil {
		return ratePiece
	}
	return policy.PartSize
}

// uploadWhole sends chunk i as one Chunk message, paced by the upload rate
// limit if there is one.
func (ss *session) uploadWhole(bw *bufio.Writer, i int, data []byte) error {
	var hdr [2*binary.MaxVarintLen64 + 1]byte
	idx := binary.AppendUvarint(nil, uint64(i))
	h := binary.AppendUvarint(hdr[:0], uint64(1+len(idx)+len(data)))
	h = append(h, byte(MsgChunk))
	h = append(h, idx...)
	if _, err := bw.Write(h); err != nil {
		return err
	}
	for off := 0; off < len(data); off += ratePiece {
		piece := data[off:min(off+ratePiece, len(data))]
		if err := ss.s.waitUpload(ss.ctx, ss.peer, len(piece)); err != nil {
			return err
		}
		if _, err := bw.Write(piece); err != nil {
			return err
		}
	}
	return nil
}

// takeCtrl takes the queued control messages.
func (ss *session) takeCtrl() []*Message {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ctrl := ss.ctrl
	ss.ctrl = nil
	return ctrl
}

// uploadParts sends chunk i as ChunkParts of ps bytes, each paced by the
// upload rate limit if there is one, and the control messages queued
// meanwhile between them (flushed at once), so that a Fetching or
// HaveUpdate does not wait behind a whole paced chunk: with a capped upload
// shared by several sessions a chunk takes seconds, and a late Fetching
// sends another host to the origin for the same chunk. A Cancel of chunk i
// that arrives meanwhile ends it with a Reject (RejectCancelled): stopped,
// and chunk i is no longer pending. It returns the chunk bytes sent.
func (ss *session) uploadParts(bw *bufio.Writer, i int, data []byte, ps int) (sent int, stopped bool, err error) {
	for off := 0; off < len(data); off += ps {
		piece := data[off:min(off+ps, len(data))]
		if err := ss.s.waitUpload(ss.ctx, ss.peer, len(piece)); err != nil {
			return off, false, err
		}
		m := Message{Type: MsgChunkPart, Index: uint32(i), Total: len(data), Offset: off, Data: piece}
		if err := WriteMessage(bw, &m); err != nil {
			return off, false, err
		}
		if off+len(piece) == len(data) {
			return len(data), false, nil
		}
		ss.mu.Lock()
		ctrl := ss.ctrl
		ss.ctrl = nil
		stop := ss.cancelled[uint32(i)]
		if stop {
			delete(ss.cancelled, uint32(i))
			delete(ss.pending, uint32(i))
		}
		ss.mu.Unlock()
		if stop {
			ctrl = append(ctrl, &Message{Type: MsgReject, Reason: RejectCancelled, Indices: []uint32{uint32(i)}})
		}
		if len(ctrl) == 0 {
			continue
		}
		for _, c := range ctrl {
			if err := WriteMessage(bw, c); err != nil {
				return off + len(piece), stop, err
			}
		}
		if err := bw.Flush(); err != nil {
			return off + len(piece), stop, err
		}
		if stop {
			return off + len(piece), true, nil
		}
	}
	return len(data), false, nil
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
