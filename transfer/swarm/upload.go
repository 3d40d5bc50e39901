package swarm

import (
	"slices"
	"time"
)

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
