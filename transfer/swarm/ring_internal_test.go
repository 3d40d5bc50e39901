package swarm

import (
	"fmt"
	"testing"

	"github.com/storkpm/stork/transfer/policy"
)

// TestMemberRingCacheSharesOneRing: downloads given the same members, in
// any order, share one ring; another member set gets its own; and a
// Picker on the shared ring fetches the chunks SetMembers gives it.
func TestMemberRingCacheSharesOneRing(t *testing.T) {
	var c memberRingCache
	ids := make([]PeerID, 23)
	for k := range ids {
		ids[k] = PeerID(fmt.Sprintf("peer-%02d", k))
	}
	self := PeerID("self")
	r := c.of(self, ids)
	rev := make([]PeerID, len(ids))
	for k, id := range ids {
		rev[len(ids)-1-k] = id
	}
	if c.of(self, rev) != r {
		t.Fatal("the same members in another order made a second ring")
	}
	if c.of(self, ids[:22]) == r {
		t.Fatal("a member fewer kept the old ring")
	}
	const n = 300
	want := policy.NewPicker(policy.PickerConfig{NumChunks: n})
	got := policy.NewPicker(policy.PickerConfig{NumChunks: n})
	want.SetMembers(self, ids)
	got.SetMemberRing(self, c.of(self, ids))
	if want.Members() != got.Members() {
		t.Fatalf("%d members on the shared ring, %d by SetMembers", got.Members(), want.Members())
	}
	owned := 0
	for i := range n {
		if a, b := want.OriginOwner(i), got.OriginOwner(i); a != b {
			t.Fatalf("chunk %d: ours to fetch %v on the shared ring, %v by SetMembers", i, b, a)
		} else if a {
			owned++
		}
	}
	if owned == 0 || owned == n {
		t.Fatalf("this host fetches %d of %d chunks: the comparison shows nothing", owned, n)
	}
}
