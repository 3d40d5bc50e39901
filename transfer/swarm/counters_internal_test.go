package swarm

import (
	"testing"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
)

// A session chunk the download already holds is counted as a duplicate,
// by why it was asked (the end game) and what it lost to (a copy through
// an origin request); one arriving after its request closed is counted
// late too.
func TestCountersSessionDuplicates(t *testing.T) {
	data := []byte("chunk")
	ref := metadata.ChunkRef{CID: metadata.SumCID(data), Length: int64(len(data))}
	d := &download{
		s:            &Swarm{},
		pkg:          &pkgInfo{refs: []metadata.ChunkRef{ref}, maxChunk: len(data), bytes: ref.Length},
		picker:       policy.NewPicker(policy.PickerConfig{NumChunks: 1}),
		storing:      policy.NewBitfield(1),
		endgameAsked: policy.NewBitfield(1),
		viaOrigin:    policy.NewBitfield(1),
	}
	d.picker.SetHave(0)
	if d.deliverFrom(0, "a", "a", data, d.started) {
		t.Fatal("deliverFrom of a chunk held = kept, want not kept")
	}
	d.countSessionDup(0, len(data), false)
	d.endgameAsked.Set(0)
	d.viaOrigin.Set(0)
	d.countSessionDup(0, len(data), true)
	n := int64(len(data))
	got := d.s.Counters()
	want := Counters{DupSession: 2 * n, DupSessionEndgame: n, DupSessionLate: n, DupSessionBehindOrigin: n}
	if got != want {
		t.Fatalf("Counters() = %+v, want %+v", got, want)
	}
}
