package swarm

import (
	"sync/atomic"
	"testing"
	"time"
)

// resetStream is a Stream that counts its resets.
type resetStream struct {
	Stream
	resets atomic.Int32
}

func (s *resetStream) Reset() error {
	s.resets.Add(1)
	return nil
}

// A pull-through request whose fetcher has been silent for a little more
// than the idle timeout ends, unless this host's own goroutines ran late
// lately (its download ticks): its silence is counted in time it could
// listen, up to one more idle timeout.
func TestPullWatchCountsOwnLateness(t *testing.T) {
	const idle = time.Second
	for _, tc := range []struct {
		name  string
		lag   time.Duration // a download tick's lateness just now
		since time.Duration // since the stream last heard from the fetcher
		reset bool
	}{
		{"on time", 0, idle + 200*time.Millisecond, true},
		{"late", 500 * time.Millisecond, idle + 200*time.Millisecond, false},
		{"late, silent past the extension", 500 * time.Millisecond, idle + 600*time.Millisecond, true},
		{"very late, one more idle at most", 10 * idle, 2*idle + 100*time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Swarm{cfg: Config{RequestTimeout: 2 * idle}}
			if tc.lag > 0 {
				s.lag.note(tc.lag, s.pullClaim())
			}
			st := &resetStream{}
			w := &pullWatch{s: s, f: "fetcher", idle: idle, since: time.Now().Add(-tc.since), st: st}
			w.t = time.AfterFunc(time.Hour, func() {})
			defer w.Stop()
			w.fire()
			if got := st.resets.Load() == 1; got != tc.reset {
				t.Errorf("fire() after %v of silence, lateness %v: reset %v, want %v", tc.since, tc.lag, got, tc.reset)
			}
		})
	}
}
