package simulations

import (
	"math"
	"testing"
)

// peerBytes sums, over r's hosts, the bytes sent to peers and the bytes
// counted as received from peers (same site and other sites).
func peerBytes(r *Result) (sent, received float64) {
	for _, h := range r.PerHost {
		sent += h.Uploaded
		received += h.FromSite + h.FromWAN
	}
	return sent, received
}

// With WriteAhead a Cancel stops no chunk being sent: every byte a peer
// sent is counted as received over a link. Without it the same scenario stops cancelled chunks part
// way (bytes sent but never counted as received), which shows it has
// cancels to test.
func TestWriteAheadCancelledChunksCrossWhole(t *testing.T) {
	t.Parallel()
	sc := small()
	sc.Hosts = 12
	sc.Latency.WAN = Duration(20e6)
	off := run(t, sc, Swarm)
	sentOff, recvOff := peerBytes(off)
	if sentOff-recvOff < float64(sc.ChunkSize) {
		t.Fatalf("without WriteAhead: %.0f bytes sent to peers, %.0f received: want a cancelled chunk stopped part way", sentOff, recvOff)
	}
	sc.WriteAhead = true
	on := run(t, sc, Swarm)
	sent, recv := peerBytes(on)
	if math.Abs(sent-recv) > 1 {
		t.Errorf("with WriteAhead: %.0f bytes sent to peers, %.0f received; want equal", sent, recv)
	}
}
