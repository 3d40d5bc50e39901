package swarm

import (
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/transfer/policy"
)

// Accounting of a download's bytes by source (Stats, DownloadStats): a
// chunk a download stores counts as from the origin if this host fetched
// it from the origin, and as from peers otherwise, whatever the copy the
// download stored came through. A host that fetched a chunk for a peer's
// pull-through request before its own download wanted it may take it
// later from that peer (which holds it by now) rather than from the
// chunks it keeps in memory: it still counts it from the origin, so that
// the hosts' origin bytes add up to what the origin sent them. A chunk
// fetched through another host (a fetcher's pull-through answer, a
// site's fetcher's copy from the chunk's global fetcher) counts as from
// peers, at every host but the one that asked the origin.

// maxOriginOwed bounds the chunks originLedger remembers: beyond, the
// oldest are forgotten (a host fetching for peers only, for packages it
// never downloads itself, would keep them all). A chunk forgotten and
// stored later from a peer counts as from peers.
const maxOriginOwed = 1 << 14

// originLedger is what the accounting needs to know of this host's
// origin fetches: the chunks it fetched from the origin that none of its
// downloads has counted yet.
type originLedger struct {
	mu   sync.Mutex
	owed map[cid.Cid]struct{}
	// order: owed in the order fetched, from head on, with chunks
	// counted since among them; at most 3 x maxOriginOwed long.
	order []cid.Cid
	head  int
}

// fetched records that chunk c came from the origin.
func (l *originLedger) fetched(c cid.Cid) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.owed == nil {
		l.owed = make(map[cid.Cid]struct{})
	}
	if _, ok := l.owed[c]; ok {
		return
	}
	l.owed[c] = struct{}{}
	l.order = append(l.order, c)
	for len(l.owed) > maxOriginOwed {
		delete(l.owed, l.order[l.head])
		l.order[l.head] = cid.Undef
		l.head++
	}
	if l.head > maxOriginOwed || len(l.order)-l.head > 2*maxOriginOwed {
		// Only what is still owed is kept, in order: once every
		// maxOriginOwed chunks fetched at most.
		kept := l.order[:0]
		for _, x := range l.order[l.head:] {
			if _, ok := l.owed[x]; ok {
				kept = append(kept, x)
			}
		}
		clear(l.order[len(kept):])
		l.order, l.head = kept, 0
	}
}

// take reports whether chunk c came from the origin and was not counted
// yet, and counts it.
func (l *originLedger) take(c cid.Cid) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.owed[c]; !ok {
		return false
	}
	delete(l.owed, c)
	return true
}

// countSource returns where a delivered chunk c, whose bytes came from
// `from` (OriginPeer: from the origin, or from the chunks kept in
// memory), counts as from: OriginPeer if this host fetched it from the
// origin and no download counted it yet, or if it came from the origin
// or from the chunks kept in memory that came from the origin; else the
// peer it came through.
func (s *Swarm) countSource(c cid.Cid, from PeerID) PeerID {
	if s.ledger.take(c) {
		return policy.OriginPeer
	}
	if from != policy.OriginPeer {
		return from
	}
	s.pullMu.Lock()
	defer s.pullMu.Unlock()
	return s.cachedFromLocked(c)
}
