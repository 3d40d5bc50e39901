package swarm

import (
	"testing"
	"time"

	"github.com/storkpm/stork/transfer/policy"
)

// The end game's delay handed to downloads follows the host's response
// times: the idle default while answers come fast, twice their mean on a
// loaded host, at most a quarter of RequestTimeout.
func TestSwarmEndgameDelayFollowsResponses(t *testing.T) {
	s := &Swarm{cfg: Config{RequestTimeout: 10 * time.Second}}
	if got := s.endgameDelay(); got != policy.DefaultEndgameDelay {
		t.Fatalf("endgameDelay() with no answer yet = %v, want %v", got, policy.DefaultEndgameDelay)
	}
	for range 50 {
		s.noteResponse(3 * time.Millisecond)
	}
	if got := s.endgameDelay(); got != policy.DefaultEndgameDelay {
		t.Fatalf("endgameDelay() answered in 3ms = %v, want %v", got, policy.DefaultEndgameDelay)
	}
	for range 300 {
		s.noteResponse(time.Second)
	}
	if got := s.endgameDelay(); got < 1900*time.Millisecond || got > 2*time.Second {
		t.Fatalf("endgameDelay() answered in 1s = %v, want about 2s", got)
	}
	for range 300 {
		s.noteResponse(time.Minute)
	}
	if got, want := s.endgameDelay(), 10*time.Second/endgameMaxDelay; got != want {
		t.Fatalf("endgameDelay() answered in 1m = %v, want the cap %v", got, want)
	}
}

// A chunk whose pull-through answer started, or whose session parts
// flow, is not asked of another peer in the end game once its request
// is EndgameDelay old (the Picker waits longer for it).
func TestEndgameSkipsChunkOnItsWay(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	all := policy.NewBitfield(1)
	all.Set(0)
	for _, tc := range []struct {
		name  string
		asked policy.PeerID
		flow  func(d *download, ss *session)
	}{
		{"pull-through answer", policy.OriginPeer, func(d *download, _ *session) { d.pullHeard("f", 0, true) }},
		{"session parts", "a", func(d *download, ss *session) { d.progress(ss, 0, t0.Add(time.Millisecond)) }},
	} {
		d := &download{
			picker: policy.NewPicker(policy.PickerConfig{NumChunks: 1}),
			peers:  map[PeerID]*session{},
		}
		ss := &session{peer: "a"}
		d.peers["a"] = ss
		d.picker.PeerJoined("a", all)
		d.picker.PeerJoined("b", all)
		d.picker.Requested(0, tc.asked, t0)
		tc.flow(d, ss)
		if i, ok := d.picker.NextForPeer("b", t0.Add(2*policy.DefaultEndgameDelay)); ok {
			t.Errorf("%s: NextForPeer(b) with chunk 0 on its way = %d, want none", tc.name, i)
		}
	}
}

// In the end game a chunk is not asked over a session of the fetcher
// its pull-through request is open to: the fetcher would send the same
// bytes twice from one upload (in a 4 MiB crowd of 24 daemons, 83–87% of
// the session bytes were such copies, and the fetchers that sent most
// of them finished last).
func TestEndgameNotAskedOfItsOwnFetcher(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	all := policy.NewBitfield(1)
	all.Set(0)
	for _, tc := range []struct {
		name    string
		pulling []PeerID
		want    int
	}{
		{"pull open to f", []PeerID{"f"}, 0},
		{"pull open to another fetcher", []PeerID{"g"}, 1},
	} {
		d := &download{
			s:            &Swarm{},
			picker:       policy.NewPicker(policy.PickerConfig{NumChunks: 1}),
			peers:        map[PeerID]*session{},
			pulling:      map[int][]PeerID{0: tc.pulling},
			endgameAsked: policy.NewBitfield(1),
		}
		ss := &session{peer: "f"}
		d.peers["f"] = ss
		d.picker.PeerJoined("f", all)
		d.picker.Requested(0, policy.OriginPeer, t0)
		d.schedule(t0.Add(2 * policy.DefaultEndgameDelay))
		asked := 0
		for _, m := range ss.ctrl {
			if m.Type == MsgRequest {
				asked += len(m.Indices)
			}
		}
		if asked != tc.want {
			t.Errorf("%s: %d chunks asked of f over its session in the end game, want %d", tc.name, asked, tc.want)
		}
	}
}
