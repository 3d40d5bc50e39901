package swarm

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/storkpm/stork/transfer/policy"
)

// A session's serving side: the chunks its peer asked for are queued
// (duplicates dropped), read from the store ahead of the writer, and sent
// whole or in parts, paced by the upload rate limit.

// recentSent bounds the chunks a session remembers having sent (sentAt).
const recentSent = maxUploadQueue

// sentChunk is one entry of a session's sent list.
type sentChunk struct {
	i  uint32
	at time.Time
}

// queueUploads queues the chunks of a peer's Request. A chunk already
// pending (queued, being read or sent) is not queued again, though a
// Cancel of it that came meanwhile is undone; a chunk sent whole within
// RequestTimeout, with no Cancel of it since, is not sent again (a peer
// asks again only after a Cancel, which its timeouts send). Beyond
// maxUploadQueue the chunks are rejected as busy.
func (ss *session) queueUploads(idx []uint32) {
	now := time.Now()
	var busy []uint32
	ss.mu.Lock()
	for _, i := range idx {
		if ss.pending[i] {
			delete(ss.cancelled, i)
			continue
		}
		if at, ok := ss.sentAt[i]; ok && now.Sub(at) < ss.s.cfg.RequestTimeout {
			continue
		}
		if len(ss.uploads) >= maxUploadQueue {
			busy = append(busy, i)
			continue
		}
		ss.uploads = append(ss.uploads, i)
		ss.pending[i] = true
	}
	if len(busy) > 0 {
		slices.Sort(busy)
		ss.ctrl = append(ss.ctrl, &Message{Type: MsgReject, Reason: RejectBusy, Indices: slices.Compact(busy)})
	}
	ss.mu.Unlock()
	ss.poke()
}

// cancelUploads applies a peer's Cancel: queued chunks leave the queue;
// chunks being read are dropped by the writer, and a chunk being sent in
// parts is stopped (uploadParts). Either way the chunk may be asked again.
func (ss *session) cancelUploads(idx []uint32) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var queued map[uint32]bool
	for _, c := range idx {
		delete(ss.sentAt, c)
		if !ss.pending[c] {
			continue
		}
		if queued == nil {
			queued = make(map[uint32]bool, len(ss.uploads))
			for _, i := range ss.uploads {
				queued[i] = true
			}
		}
		if queued[c] {
			delete(ss.pending, c)
			continue
		}
		if ss.cancelled == nil {
			ss.cancelled = make(map[uint32]bool)
		}
		ss.cancelled[c] = true
	}
	if queued != nil {
		ss.uploads = slices.DeleteFunc(ss.uploads, func(i uint32) bool { return !ss.pending[i] })
	}
}

// uploaded records that the writer is done with chunk i: sent whole
// (remembered in sentAt, unless the peer cancelled it meanwhile: asked
// again, it is a new request) or not at all.
func (ss *session) uploaded(i uint32, whole bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	cancelled := ss.cancelled[i]
	delete(ss.pending, i)
	delete(ss.cancelled, i)
	if !whole || cancelled {
		return
	}
	if ss.sentAt == nil {
		ss.sentAt = make(map[uint32]time.Time)
	}
	now := time.Now()
	ss.sentAt[i] = now
	ss.sent = append(ss.sent, sentChunk{i: i, at: now})
	if len(ss.sent) > recentSent {
		old := ss.sent[0]
		ss.sent = ss.sent[1:]
		if ss.sentAt[old.i].Equal(old.at) {
			delete(ss.sentAt, old.i)
		}
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
	b := alignIn(make([]byte, n+alignedChunk), 0, n)
	return &b
}

func (u *upload) release() {
	if u.buf != nil {
		uploadBufs.Put(u.buf)
		u.buf = nil
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
		ss.s.ctr.upSession.Add(int64(sent))
		ss.s.countPeer(ss.peer, 0, int64(sent))
		ss.s.log.Debug("chunk sent", "route", "session", "peer", ss.peer, "manifest", ss.manifest, "index", i, "bytes", sent, "whole", err == nil && !stopped)
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
