package node

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/storkpm/stork/transfer/swarm"
)

// A peer's round trip for site inference is the smallest of several
// pings: one slow answer (the first ping while 24 daemons start on one
// machine) does not set the peer apart from the others, as the moving
// average did for minutes.
func TestP2PRTTSmallestOfSamples(t *testing.T) {
	a, b := connectedPair(t)
	deadline := time.Now().Add(10 * time.Second)
	// A slow first answer, as a loaded machine gives.
	a.host.Peerstore().RecordLatency(b.host.ID(), 300*time.Millisecond)
	a.rtts.add(b.host.ID(), 300*time.Millisecond)
	var d time.Duration
	for d = a.measuredRTT(b.host.ID()); d == 0 || d >= 300*time.Millisecond; d = a.measuredRTT(b.host.ID()) {
		if time.Now().After(deadline) {
			t.Fatalf("round trip to a loopback peer after a slow first answer: %v after 10 s (peerstore average %v), want the loopback's",
				d, a.host.Peerstore().LatencyEWMA(b.host.ID()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, n := a.rtts.get(b.host.ID()); n < rttSamples {
		t.Errorf("RTT answered %v after %d samples, want %d at least", d, n, rttSamples)
	}
	if d > 50*time.Millisecond {
		t.Errorf("round trip on loopback %v, want the smallest sample", d)
	}
}

// TestP2PRTTLoopbackUnmeasured: a peer reached over loopback runs on this
// machine, so its round trip (queueing noise on a loaded machine) is not
// one site inference may use: RTT reports it unmeasured even once pings
// have answered.
func TestP2PRTTLoopbackUnmeasured(t *testing.T) {
	a, b := connectedPair(t)
	for _, d := range []time.Duration{40, 35, 30} {
		a.rtts.add(b.host.ID(), d*time.Millisecond)
	}
	// The pinger may have added a real loopback sample (under a millisecond)
	// beside the three above, so the smallest is 30 ms or less.
	if d := a.measuredRTT(b.host.ID()); d <= 0 || d > 30*time.Millisecond {
		t.Fatalf("measured round trip %v, want the smallest sample, 30ms or a real ping's", d)
	}
	if d := a.RTT(swarm.PeerID(b.host.ID().String())); d != 0 {
		t.Errorf("RTT to a peer on loopback %v, want 0 (unmeasured: it is on this machine)", d)
	}
}

func TestRTTMins(t *testing.T) {
	var r rttMins
	a := peer.ID("peer-a")
	if d, n := r.get(a); d != 0 || n != 0 {
		t.Fatalf("nothing measured: %v, %d", d, n)
	}
	for _, d := range []time.Duration{30 * time.Millisecond, 0, -1, 2 * time.Millisecond, 5 * time.Millisecond} {
		r.add(a, d)
	}
	if d, n := r.get(a); d != 2*time.Millisecond || n != 3 {
		t.Errorf("after 30, 2, 5 ms (and two unmeasured): %v, %d samples; want 2ms, 3", d, n)
	}
}

// connectedPair starts two P2P hosts on loopback, b bootstrapping from a,
// and waits until a sees b.
func connectedPair(t *testing.T) (*P2P, *P2P) {
	t.Helper()
	a := testP2P(t, nil)
	b := testP2P(t, nil, a)
	deadline := time.Now().Add(10 * time.Second)
	for !sees(a, b) {
		if time.Now().After(deadline) {
			t.Fatal("the hosts never connected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return a, b
}
