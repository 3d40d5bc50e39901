package simulations

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// visibleScan is visible as a scan of every present host.
func visibleScan(s *sim) []int32 {
	var v []int32
	for _, q := range s.present {
		if s.hosts[q].pub <= s.now {
			v = append(v, q)
		}
	}
	return v
}

// TestVisiblePrefix: the hosts lookups find are those of a scan of the
// present hosts, in the same order, as hosts arrive and after one leaves
// from the middle of present (churn); while present is in the order of
// arrival they are found without a scan, and without allocating (a scan
// at each lookup cost hosts² per package at 10,000 hosts).
func TestVisiblePrefix(t *testing.T) {
	sc := flashCrowd(40, 1<<20, time.Second).withDefaults()
	s := newSim(sc, Swarm)
	check := func(when string) {
		t.Helper()
		if got, want := s.visible(), visibleScan(s); !slices.Equal(got, want) {
			t.Fatalf("%s, t=%.2f: visible %v, want %v", when, s.now, got, want)
		}
	}
	for h := range int32(40) {
		s.now = float64(h) * 0.1
		s.arrive(h, false)
		check("arrivals")
	}
	for _, now := range []float64{4, 4.5, 4.9, 5.0, 5.05, 10} {
		s.now = now
		check("later")
	}
	s.now = 4.5
	if len(s.visible()) == 0 || len(s.visible()) == len(s.present) {
		t.Fatalf("t=4.5: %d of %d visible, want some", len(s.visible()), len(s.present))
	}
	if a := testing.AllocsPerRun(10, func() { s.visible() }); a != 0 {
		t.Errorf("visible: %v allocations, want 0", a)
	}
	s.leave(5)
	if !s.presMoved {
		t.Fatalf("host 5 left from the middle of present: presMoved not set")
	}
	for _, now := range []float64{4.5, 10} {
		s.now = now
		check("after a leave")
	}
}

// recvClass is what recvList.cls holds for flow id of package pkg.
func recvClass(s *sim, id int32) uint32 {
	f := &s.flows[id]
	c := uint32(f.pkg) << clsShift
	switch {
	case f.srv == s.origin:
		c |= clsOrigin
	case f.vm == pullFlow:
		c |= clsPull
	}
	if f.srv != s.origin && f.chunk >= 0 && f.size > 256<<10 {
		c |= clsParts
	}
	return c
}

// TestRecvClasses: each receiving host's flow classes say what its flows
// are (their package, from the origin, pull-through, in parts), and a
// flow in parts from a peer its receiver knows carries the receiver's
// handle on it, throughout
// a workload with every kind of flow, and a run with churn, whose aborted
// flows leave the lists out of the order they were opened in.
func TestRecvClasses(t *testing.T) {
	t.Parallel()
	seen := map[uint32]int{}
	var sims []*sim // a workload's packages, nil a run of one
	check := func(t *testing.T, s *sim) {
		t.Helper()
		for h := range s.rin {
			r := &s.rin[h]
			if len(r.cls) != len(r.in) {
				t.Fatalf("host %d: %d classes for %d flows", h, len(r.cls), len(r.in))
			}
			for k, id := range r.in {
				if want := recvClass(s, id); r.cls[k] != want {
					t.Fatalf("host %d flow %d: class %b, want %b", h, id, r.cls[k], want)
				}
				seen[r.cls[k]&(1<<clsShift-1)]++
				// A flow in parts from a peer its receiver's Picker knows
				// carries the Picker's handle on it (progress).
				ps := s
				if sims != nil {
					ps = sims[s.flows[id].pkg]
				}
				if r.cls[k]&clsParts == 0 || ps == nil || ps.hosts == nil || ps.hosts[h].picker == nil {
					continue
				}
				if want, ok := ps.hosts[h].picker.Ref(s.ids[s.srvHost(s.flows[id].srv)]); ok {
					if r.from[k] != want {
						t.Fatalf("host %d flow %d: handle %v on its sender, want %v", h, id, r.from[k], want)
					}
					seen[1<<clsShift]++
				}
			}
		}
	}
	for _, st := range []Strategy{SwarmCoop, Swarm} {
		t.Run("workload-"+string(st), func(t *testing.T) {
			sc := workload(st)
			sc.Hosts = 40
			sc.ChunkSize = 1 << 20
			sc = sc.withDefaults()
			sizes, err := WorkloadSizes(sc)
			if err != nil {
				t.Fatal(err)
			}
			w := newWorkload(sc, st, sizes)
			sims = w.sims
			w.e.afterEvent = func() { check(t, w.sims[0]) }
			if err := w.run(nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, c := range []uint32{clsParts, clsOrigin, clsPull, clsPull | clsParts, 1 << clsShift} {
		if seen[c] == 0 {
			t.Errorf("no flow of class %b seen: %v", c, seen)
		}
	}
	t.Run("churn", func(t *testing.T) {
		sc := small()
		sc.Churn = Churn{Fraction: 0.3, From: Duration(time.Second), To: Duration(3 * time.Second)}
		sims = nil
		s := newSim(sc.withDefaults(), Swarm)
		s.afterEvent = func() { check(t, s) }
		if err := s.run(); err != nil {
			t.Fatal(err)
		}
		check(t, s)
	})
}

// TestEventQueueOrder: the queue pops messages in (t, seq) order, as the
// heap alone did, whatever lane or heap holds them: messages with the
// lanes' delays and others, sent as the clock advances, and some sent at
// an earlier time than their lane's last (a pipeline's); each lists every
// message held.
func TestEventQueueOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var q eventQueue
	for _, d := range []float64{0.25, 1e-4, 0.01, 0.02} {
		q.addLane(d)
	}
	var ref eventHeap
	var seq uint64
	now, inHeap := 0.0, 0
	for step := range 200000 {
		if rng.IntN(3) > 0 || q.empty() {
			seq++
			d := []float64{0.25, 1e-4, 0.01, 0.02, 0, rng.Float64()}[rng.IntN(6)]
			at := now
			if rng.IntN(20) == 0 {
				at = max(0, now-rng.Float64()*0.05) // sent at an earlier time
			}
			e := event{t: at + d, seq: seq, a: int32(step)}
			q.push(e, now)
			ref.push(e)
		} else {
			got, want := q.pop(), ref.pop()
			if got != want {
				t.Fatalf("step %d: popped t=%v seq %d, want t=%v seq %d", step, got.t, got.seq, want.t, want.seq)
			}
			now = max(now, got.t)
		}
		if q.n != len(ref) {
			t.Fatalf("step %d: %d held, want %d", step, q.n, len(ref))
		}
		inHeap = max(inHeap, len(q.heap))
		if step%10000 == 0 {
			var seqs []uint64
			q.each(func(e event) { seqs = append(seqs, e.seq) })
			if len(seqs) != len(ref) {
				t.Fatalf("step %d: each lists %d, want %d", step, len(seqs), len(ref))
			}
		}
	}
	for !q.empty() {
		if got, want := q.pop(), ref.pop(); got != want {
			t.Fatalf("draining: popped seq %d, want %d", got.seq, want.seq)
		}
	}
	if inHeap == 0 || inHeap > 200000/3 {
		t.Errorf("at most %d messages in the heap, want some, most in lanes", inHeap)
	}
}

// TestMeasureTrace: a traced run's sampler writes its label, simulated
// time and events every traceEveryEvts events and at no other sample;
// untraced, nothing; both keep the peak heap.
func TestMeasureTrace(t *testing.T) {
	var b strings.Builder
	sample, peak := measure(time.Now(), &b, "upgrade, 10000 hosts, swarm-coop")
	sample(3.25, memSampleEveryEvts)
	if b.Len() != 0 {
		t.Fatalf("a line at %d events: %q", memSampleEveryEvts, b.String())
	}
	sample(61.5, 3*traceEveryEvts)
	want := fmt.Sprintf("sim: upgrade, 10000 hosts, swarm-coop: t=61.5s, %d events, ", 3*traceEveryEvts)
	if !strings.HasPrefix(b.String(), want) || !strings.HasSuffix(b.String(), " MiB\n") {
		t.Errorf("trace %q, want %q...", b.String(), want)
	}
	if *peak == 0 {
		t.Errorf("no peak heap")
	}
	quiet, _ := measure(time.Now(), nil, "x")
	quiet(1, traceEveryEvts) // no writer: nothing to write to
}
