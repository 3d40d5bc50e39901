package simulations

import (
	"bytes"
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// fanScenario: 30 hosts, fan-outs over fanParallelMin watchers, a fifth
// of the hosts leaving mid-transfer and coming back.
func fanScenario() Scenario {
	sc := small()
	sc.Hosts = 30
	sc.Policy.MaxPeers = 24
	sc.Churn = Churn{Fraction: 0.2, From: Duration(100 * time.Millisecond), To: Duration(time.Second), RejoinAfter: Duration(time.Second)}
	return sc.withDefaults()
}

// TestFanOutHelperSameRun: the fan-out on two goroutines (fanout.go)
// decides what the event loop alone decides: both ways write the same CSV
// bytes, with churn (watchers leaving), with locality (large runs
// without it take the pipeline instead).
func TestFanOutHelperSameRun(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("GOMAXPROCS 1: no helper")
	}
	t.Parallel()
	sc := fanScenario()
	for _, st := range []Strategy{SwarmLocality} { // (Swarm runs a pipeline: TestPipeHelperSameRun)
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

// TestPipeHelperSameRun: the fan-out pipeline (pipe.go) decides the same
// with its helper as without it (the event loop running every job): the
// same CSV bytes, with churn; and the helper ran jobs, the event loop
// some too. Against the run without a pipeline (every fan-out at once)
// only the order of messages due at the same instant differs: the
// figures stay close.
func TestPipeHelperSameRun(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("GOMAXPROCS 1: no helper")
	}
	t.Parallel()
	sc := fanScenario()
	var out [3][]byte
	var res [3]*Result
	var helperJobs, jobs uint64
	for k := range 3 {
		s := newSim(sc, Swarm)
		s.fanPar = k > 0
		s.pipeNoHelper = k == 2
		s.pipeBehind = 1 // the event loop takes jobs too on so small a run
		if k > 0 && !s.pipeOK() {
			t.Fatal("the scenario does not run a pipeline")
		}
		var p *pipe
		s.onStart = func() { p = s.pipe }
		if err := s.run(); err != nil {
			t.Fatalf("run %d: %v", k, err)
		}
		if k == 1 {
			helperJobs, jobs = p.hposted, p.tail
		}
		res[k] = s.result()
		out[k] = csvBytes(t, res[k])
	}
	if helperJobs == 0 || helperJobs == jobs {
		t.Errorf("the helper ran %d of %d jobs, want some but not all", helperJobs, jobs)
	}
	if !bytes.Equal(out[1], out[2]) {
		t.Error("the pipeline with its helper wrote different CSV than without it")
	}
	if bytes.Equal(out[0], out[1]) {
		t.Log("the pipeline changed no message order (common in small runs: few messages are due at the same instant)")
	}
	a, b := res[0], res[1]
	if d := math.Abs(a.Makespan-b.Makespan) / a.Makespan; d > 0.1 {
		t.Errorf("makespan %.3fs without a pipeline, %.3fs with: %.0f%% apart", a.Makespan, b.Makespan, 100*d)
	}
	if d := math.Abs(a.OriginBytes-b.OriginBytes) / a.OriginBytes; d > 0.2 {
		t.Errorf("origin bytes %.0f without a pipeline, %.0f with: %.0f%% apart", a.OriginBytes, b.OriginBytes, 100*d)
	}
}

// TestParkerAwait: the event loop's await returns once the helper made
// its condition true and signalled, whether the helper was quick (await
// still polling) or slow (await asleep), and no signal is lost between
// await's last poll and its sleep (the test would hang).
func TestParkerAwait(t *testing.T) {
	k := newParker()
	var done atomic.Uint64
	for n := range uint64(200) {
		go func() {
			if n%2 == 1 {
				time.Sleep(time.Duration(n%7) * 20 * time.Microsecond)
			}
			done.Store(n + 1)
			k.signal()
		}()
		k.await(func() bool { return done.Load() == n+1 })
	}
}
