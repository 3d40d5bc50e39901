package testbed

import (
	"fmt"
	"math"
	"slices"
)

// verifiedOK is HostResult.Verified for a store (or `stork get` tree)
// that verified.
const verifiedOK = "ok"

// RunResult is one run's figures.
type RunResult struct {
	Name string
	// Sites: the daemons were given --site.
	Sites bool
	// Skipped says why the run was not done ("" if it was).
	Skipped string
	// Fault: what was done to the testbed, and when.
	Fault string
	Hosts []HostResult
	// Links: what the links carried during the run.
	Links Counters
	// OriginSent: bytes the origin process wrote while the run lasted
	// (/proc/PID/io wchar: chunks plus a little metadata, headers and
	// logs); -1 unknown.
	OriginSent int64
	// Makespan: seconds from the start to the last host done (of those
	// that completed); Wall: to the end of the run.
	Makespan, Wall float64
	// CPU: CPU seconds the run's processes used (daemons or `stork get`,
	// and the origin).
	CPU float64
	// DelayCPU: CPU seconds the router's delay forwarder used meanwhile.
	DelayCPU float64
	// RTTSite and RTTWAN: the mean round trip (seconds) the daemons
	// measured to peers of their own site and of other sites before the
	// fetches (libp2p ping; NaN if none).
	RTTSite, RTTWAN float64
	// FewestPeers: the fewest peers a daemon saw when the fetches began
	// (the harness waits up to a minute for every daemon to see every
	// other); -1 for a run without daemons.
	FewestPeers int
	// Err: why the run ended before every host completed.
	Err string
	// Progress: bytes each host held over time.
	Progress []Sample
	// Size is the package's size.
	Size int64
}

// HostResult is one host's figures in a run.
type HostResult struct {
	Host
	// Done: seconds from the start; NaN if the host did not complete.
	Done float64
	// FromOrigin, FromPeers, Uploaded: from `stork status --json`; for
	// HTTP-only runs FromOrigin is the payload its link carried in.
	FromOrigin, FromPeers, Uploaded int64
	// Have: bytes of the package it held at the end.
	Have int64
	// In and Out: its link's counters.
	In, Out Counter
	// CPU seconds its process used during the run.
	CPU float64
	// Verified: verifiedOK, the failure, or "" when not checked.
	Verified string
	// Faulted: the run's fault targets this host; CannotComplete: the
	// fault leaves it no way to complete.
	Faulted, CannotComplete bool
	Err                     string
}

// Sample is the bytes one host held at a time.
type Sample struct {
	T    float64
	Host string
	Have int64
}

func (h HostResult) complete() bool { return !math.IsNaN(h.Done) }

// overlayNote says that the fetches of a run with daemons on hosts hosts
// began before every daemon saw every other ("" if they saw each other, or
// the run had no daemons: fewest < 0).
func overlayNote(fewest, hosts int) string {
	if fewest < 0 || hosts < 2 || fewest >= hosts-1 {
		return ""
	}
	return fmt.Sprintf("the fetches began with the overlay incomplete: after a minute the daemon seeing the fewest peers saw %d of the %d others", fewest, hosts-1)
}

// completed counts the hosts that completed.
func (r *RunResult) completed() int {
	n := 0
	for _, h := range r.Hosts {
		if h.complete() {
			n++
		}
	}
	return n
}

// originBytes is the run's origin traffic: what the origin process sent
// where known, else its link's payload.
func (r *RunResult) originBytes() int64 {
	if r.OriginSent >= 0 {
		return r.OriginSent
	}
	return r.Links.OriginOut.Payload()
}

// makespan is Makespan, NaN if no host completed.
func (r *RunResult) makespan() float64 {
	if r.completed() == 0 {
		return math.NaN()
	}
	return r.Makespan
}

// received is the bytes the hosts received, from peers and the origin.
func (r *RunResult) received() float64 {
	var n int64
	for _, h := range r.Hosts {
		n += h.FromOrigin + h.FromPeers
	}
	return float64(n)
}

// intoSites is the payload the site uplinks carried into the sites.
func (r *RunResult) intoSites() float64 {
	var n int64
	for _, c := range r.Links.SiteIn {
		n += c.Payload()
	}
	return float64(n)
}

// copies is b in package copies.
func (r *RunResult) copies(b int64) float64 { return float64(b) / float64(r.Size) }

// siteInCopies: per site, the payload into it over its uplink, in copies.
func (r *RunResult) siteInCopies() []float64 {
	out := make([]float64, len(r.Links.SiteIn))
	for i, c := range r.Links.SiteIn {
		out[i] = r.copies(c.Payload())
	}
	return out
}

// doneTimes returns the completion times of the hosts that completed,
// sorted.
func (r *RunResult) doneTimes() []float64 {
	var ts []float64
	for _, h := range r.Hosts {
		if h.complete() {
			ts = append(ts, h.Done)
		}
	}
	slices.Sort(ts)
	return ts
}

// line is the run's one-line summary.
func (r *RunResult) line() string {
	if r.Skipped != "" {
		return fmt.Sprintf("%s: skipped: %s", r.Name, r.Skipped)
	}
	s := fmt.Sprintf("%s: %d/%d hosts complete, makespan %.1f s, origin %.3f copies, into sites %s copies, CPU %.0f s",
		r.Name, r.completed(), len(r.Hosts), r.Makespan, r.copies(r.originBytes()), fmtList(r.siteInCopies(), "%.2f"), r.CPU)
	if r.Err != "" {
		s += "; " + r.Err
	}
	return s
}

func fmtList(xs []float64, f string) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf(f, x)
	}
	return s
}
