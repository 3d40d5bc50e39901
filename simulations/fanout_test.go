package simulations

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// TestFanOutHelperSameRun: the fan-out on two goroutines (fanout.go)
// decides what the event loop alone decides: both ways write the same CSV
// bytes, with churn (watchers leaving) and with locality.
func TestFanOutHelperSameRun(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("GOMAXPROCS 1: no helper")
	}
	t.Parallel()
	sc := small()
	sc.Hosts = 30
	sc.Policy.MaxPeers = 24 // fan-outs over fanParallelMin watchers
	sc.Churn = Churn{Fraction: 0.2, From: Duration(100 * time.Millisecond), To: Duration(time.Second), RejoinAfter: Duration(time.Second)}
	sc = sc.withDefaults()
	for _, st := range []Strategy{Swarm, SwarmLocality} {
		var out [2][]byte
		var posted uint64
		for k, par := range []bool{false, true} {
			s := newSim(sc, st)
			s.fanPar = par
			var f *fanHelper
			s.onStart = func() { f = s.helper }
			if err := s.run(); err != nil {
				t.Fatalf("%s, helper %v: %v", st, par, err)
			}
			if par {
				if f == nil {
					t.Fatalf("%s: no helper started", st)
				}
				posted = f.seq.Load()
			}
			out[k] = csvBytes(t, s.result())
		}
		if posted == 0 {
			t.Errorf("%s: the helper got no fan-out", st)
		}
		if !bytes.Equal(out[0], out[1]) {
			t.Errorf("%s: the run with the fan-out helper wrote different CSV", st)
		}
	}
}
