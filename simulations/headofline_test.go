package simulations

import (
	"math"
	"testing"
)

// TestHeadOfLine: with control messages held behind chunks (the daemon
// before it sent large chunks in parts), every host still finishes, every
// byte arrives once, the origin sends no less, and the run is
// deterministic. With churn (sessions torn down while messages
// are held) it still finishes.
func TestHeadOfLine(t *testing.T) {
	t.Parallel()
	sc := Scenario{
		Name: "hol", Hosts: 8, PackageSize: 32 << 20, ChunkSize: 1 << 20,
		OriginUpload: 12 << 20, HostUpload: Dist{{Rate: 4 << 20, Weight: 1}}, HostDownload: Dist{{Rate: 1.25e9, Weight: 1}},
		Latency: Latency{Site: Duration(50e3), WAN: Duration(50e3), Origin: Duration(50e3)},
		Policy:  Policy{Tick: Duration(20e6)}, Seed: 3,
	}
	free := run(t, sc, Swarm)
	sc.HeadOfLine = true
	hol := run(t, sc, Swarm)
	if again := run(t, sc, Swarm); again.OriginBytes != hol.OriginBytes || again.Makespan != hol.Makespan {
		t.Errorf("two runs: origin %v, %v; makespan %v, %v: want the same", hol.OriginBytes, again.OriginBytes, hol.Makespan, again.Makespan)
	}
	if hol.Finished != sc.Hosts {
		t.Fatalf("head of line: %d of %d hosts finished", hol.Finished, sc.Hosts)
	}
	for _, h := range hol.PerHost {
		if got := h.FromOrigin + h.FromSite + h.FromWAN - h.Duplicate; math.Abs(got-hol.PackageBytes) > 1 {
			t.Errorf("host %d received %v useful bytes, want %v", h.Host, got, hol.PackageBytes)
		}
	}
	// With the swarm's members known each chunk has one origin owner, so
	// late Fetching messages no longer send a second host to the origin.
	// Held messages delay requests and HaveUpdates, but also the cancels
	// that stop a chunk being sent, so the finish moves either way (by a
	// few percent here): only the origin bytes are ordered.
	if hol.OriginBytes < free.OriginBytes {
		t.Errorf("head-of-line blocking: origin %v bytes; free messages: %v: want no fewer origin bytes", hol.OriginBytes, free.OriginBytes)
	}
	t.Logf("origin copies: %.3f free messages, %.3f head of line; makespan %.2fs, %.2fs",
		free.OriginBytes/free.PackageBytes, hol.OriginBytes/hol.PackageBytes, free.Makespan, hol.Makespan)

	sc.Churn = Churn{Fraction: 0.25, From: Duration(1e9), To: Duration(4e9), RejoinAfter: Duration(2e9)}
	if r := run(t, sc, Swarm); r.Finished != sc.Hosts {
		t.Errorf("head of line with churn: %d of %d hosts finished", r.Finished, sc.Hosts)
	}
}
