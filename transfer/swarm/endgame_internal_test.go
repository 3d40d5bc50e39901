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
