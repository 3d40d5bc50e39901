package swarm

import (
	"encoding/binary"
	"testing"

	"github.com/storkpm/stork/metadata"
)

// The ledger counts each chunk fetched from the origin once, and keeps
// the maxOriginOwed latest not yet counted: the oldest are forgotten,
// and its memory stays bounded however many chunks are never counted
// (a host fetching for peers only).
func TestOriginLedgerBounded(t *testing.T) {
	chunk := func(k int) metadata.ChunkRef {
		b := binary.AppendUvarint(nil, uint64(k))
		return metadata.ChunkRef{CID: metadata.SumCID(b), Length: int64(len(b))}
	}
	var l originLedger
	l.fetched(chunk(0).CID)
	l.fetched(chunk(0).CID) // fetched again before counted: owed once
	if !l.take(chunk(0).CID) || l.take(chunk(0).CID) {
		t.Fatal("a chunk fetched from the origin is not counted exactly once")
	}
	const n = 3 * maxOriginOwed
	for k := 1; k <= n; k++ {
		l.fetched(chunk(k).CID)
		if k%2 == 0 {
			l.take(chunk(k).CID) // counted at once: no room taken
		}
	}
	if len(l.owed) > maxOriginOwed || len(l.order) > 3*maxOriginOwed {
		t.Fatalf("ledger holds %d chunks owed, %d in order; want at most %d and %d", len(l.owed), len(l.order), maxOriginOwed, 3*maxOriginOwed)
	}
	if !l.take(chunk(n - 1).CID) {
		t.Errorf("the latest chunk fetched is forgotten")
	}
	if l.take(chunk(1).CID) {
		t.Errorf("the oldest chunk fetched is still owed past the ledger's bound")
	}
}
