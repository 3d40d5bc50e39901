package swarm

import (
	"bufio"
	"fmt"
	"slices"
	"sync"
	"time"
)

// A session's receiving side: its reader takes messages off the stream,
// puts chunk parts together, and acts on each message; its deliverLoops
// hand whole chunks to our download, which verifies and stores them.

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
			ss.s.ctr.cutSession.Add(int64(filled)) // the session ended part way
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
	var aliveAt time.Time // when the peer's liveness was last recorded
	for {
		m, err := readMessage(br, limits, &chunkBufs, dst)
		if err != nil {
			return err
		}
		// A peer whose session speaks is alive: its pull-through
		// requests wait for it (pullalive.go). At most ten a second.
		if now := time.Now(); now.Sub(aliveAt) >= 100*time.Millisecond {
			aliveAt = now
			ss.s.alive.note(ss.peer)
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
			ss.s.ctr.cutSession.Add(int64(filled))
			part.release()
			part, filled = nil, 0
		}
		if err := ss.handle(m, n); err != nil {
			return err
		}
	}
}

// handle acts on one message from the peer (a whole chunk, once its
// parts are together): one method per message kind. n is the package's
// chunk count; every index is checked against it.
func (ss *session) handle(m *Message, n int) error {
	ss.mu.Lock()
	gotHave := ss.gotHave
	ss.mu.Unlock()
	if !gotHave && m.Type != MsgHave {
		return fmt.Errorf("%w: %s message before have", ErrProtocol, m.Type)
	}
	if err := checkIndices(m, n); err != nil {
		return err
	}
	switch m.Type {
	case MsgHello:
		return fmt.Errorf("%w: second hello", ErrProtocol)
	case MsgHave:
		return ss.handleHave(m, n, gotHave)
	case MsgHaveUpdate:
		ss.handleHaveUpdate(m.Index)
	case MsgFetching:
		if d := ss.dl.Load(); d != nil {
			d.peerPending(ss, m.Indices)
		}
	case MsgRequest:
		ss.handleRequest(m.Indices)
	case MsgCancel:
		ss.cancelUploads(m.Indices)
	case MsgReject:
		ss.handleReject(m)
	case MsgChunk:
		return ss.handleChunk(m)
	}
	return nil
}

// checkIndices refuses a message that names a chunk past the package's n.
func checkIndices(m *Message, n int) error {
	var one [1]uint32
	idx := m.Indices
	switch m.Type {
	case MsgHaveUpdate, MsgChunk:
		one[0] = m.Index
		idx = one[:]
	case MsgFetching, MsgRequest, MsgCancel, MsgReject:
	default:
		return nil
	}
	for _, i := range idx {
		if int64(i) >= int64(n) {
			return fmt.Errorf("%w: %s of chunk %d, package has %d", ErrProtocol, m.Type, i, n)
		}
	}
	return nil
}

// handleHave takes the peer's have-map, once, for this session's package.
func (ss *session) handleHave(m *Message, n int, gotHave bool) error {
	if gotHave || !m.Manifest.Equals(ss.manifest) || m.Count != n {
		return fmt.Errorf("%w: have for %s of %d chunks on a stream about %s (%d chunks)", ErrProtocol, m.Manifest, m.Count, ss.manifest, n)
	}
	ss.mu.Lock()
	ss.gotHave = true
	ss.remoteHave = m.Have
	ss.remoteCount = m.Have.Count()
	ss.mu.Unlock()
	ss.s.announce(ss.peer, m.Site)
	if d := ss.dl.Load(); d != nil {
		d.peerJoined(ss, m.Have)
	}
	ss.maybeIdle()
	return nil
}

// handleHaveUpdate records that the peer now has chunk i.
func (ss *session) handleHaveUpdate(i uint32) {
	ss.mu.Lock()
	if !ss.remoteHave.Has(int(i)) {
		ss.remoteHave.Set(int(i))
		ss.remoteCount++
	}
	ss.mu.Unlock()
	if d := ss.dl.Load(); d != nil {
		d.peerHave(ss, int(i))
	}
	ss.maybeIdle()
}

// handleRequest queues the chunks the peer asks for and wakes the readers.
func (ss *session) handleRequest(idx []uint32) {
	ss.queueUploads(idx)
	select {
	case ss.upWake <- struct{}{}:
	default:
	}
}

// handleReject: the peer will not send these chunks.
func (ss *session) handleReject(m *Message) {
	for _, i := range m.Indices {
		ss.answered(i)
	}
	if d := ss.dl.Load(); d != nil {
		d.rejected(ss, m.Indices, m.Reason)
	}
}

// handleChunk hands a whole chunk to the deliverLoops: hashing and storing
// happen there, so that control messages behind it (Fetching, HaveUpdate)
// are not held up. A peer that keeps sending chunks unasked is cut off.
func (ss *session) handleChunk(m *Message) error {
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
			ok := d != nil && d.peerChunk(ss, int(m.Index), m.Data)
			if d == nil {
				ss.s.ctr.dupNoDownload.Add(int64(len(m.Data)))
			}
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
