package testbed

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Targets of issue 21 for the full-size testbed.
const (
	targetTimeRatio    = 0.15 // swarm time / HTTP-only time
	targetOriginCopies = 1.1
	targetSiteCopies   = 1.3 // bytes into a site over its uplink, sites known
	targetSimGap       = 15  // percent
)

// writeReport writes REPORT.md, the CSV files and the plots in cfg.Dir.
func (b *bed) writeReport() error {
	if err := b.writeCSV(); err != nil {
		return err
	}
	plots, err := b.writePlots()
	if err != nil {
		b.log.Warn("testbed: plots", "err", err)
	}
	var w bytes.Buffer
	b.reportHeader(&w)
	b.reportTargets(&w)
	b.reportRuns(&w)
	b.reportFaults(&w)
	b.reportSim(&w)
	for _, p := range plots {
		fmt.Fprintf(&w, "![%s](%s)\n\n", strings.TrimSuffix(p, ".png"), p)
	}
	b.reportNotes(&w)
	return writeFile(filepath.Join(b.cfg.Dir, ReportFile), w.Bytes())
}

func (b *bed) reportHeader(w *bytes.Buffer) {
	c := b.cfg
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "# Testbed: %d sites (%s hosts) on one machine\n\n", len(c.Sites), joinInts(c.Sites))
	fmt.Fprintf(w, "%s, %s, %d CPUs, load average %s at the end; the whole testbed took %s.\n\n",
		b.result.Started.UTC().Format(time.RFC3339), runtime.GOARCH, runtime.NumCPU(), firstField(string(load)), b.result.Took.Round(time.Second))
	fmt.Fprintf(w, "Links (tbf, both ways): hosts %s, site uplinks %s, origin %s; %v one way across the router (user-space delay), none inside a site; MTU %d.\n",
		FormatBits(c.Rates.Host), FormatBits(c.Rates.Uplink), FormatBits(c.Rates.Origin), c.Delay, c.MTU)
	fmt.Fprintf(w, "Package `%s`: %s, %d bytes (%.1f MiB) in %d file(s), %d chunks (1 MiB, each file's last one shorter).\n",
		b.pkg.Name, b.pkg.Source, b.pkg.Bytes, float64(b.pkg.Bytes)/(1<<20), b.pkg.Files, b.pkg.Chunks)
	if b.sites {
		fmt.Fprintf(w, "Sites: this binary's daemon takes `--site`; the fault runs give it.")
		if b.noInfer {
			fmt.Fprintf(w, " The runs without `--site` give `--no-site-inference`: no site preference at all.")
		}
		fmt.Fprintf(w, "\n\n")
	} else {
		fmt.Fprintf(w, "Sites: **sites not supported by this binary** (`stork daemon --help` has no `--site`): the daemons run without a site; `swarm-sites` is skipped.\n\n")
	}
}

// reportTargets: issue 21's targets, each with the figure and a verdict.
func (b *bed) reportTargets(w *bytes.Buffer) {
	http := b.done(RunHTTP)
	fmt.Fprintf(w, "## Targets\n\n| target | run | figure | want | verdict |\n|---|---|---|---|---|\n")
	for _, name := range []string{RunSwarm, RunSwarmSites} {
		r := b.done(name)
		if r == nil {
			continue
		}
		if http != nil && http.Makespan > 0 && r.completed() == len(r.Hosts) && http.completed() == len(http.Hosts) {
			ratio := r.Makespan / http.Makespan
			fmt.Fprintf(w, "| swarm time ÷ HTTP-only time | %s | %.1f s ÷ %.1f s = %.3f | ≤ %.2f | %s |\n", name, r.Makespan, http.Makespan, ratio, targetTimeRatio, verdict(ratio <= targetTimeRatio))
		}
		oc := r.copies(r.originBytes())
		fmt.Fprintf(w, "| origin bytes | %s | %.3f copies | ≤ %.1f | %s |\n", name, oc, targetOriginCopies, verdict(oc <= targetOriginCopies))
		in := r.siteInCopies()
		worst := 0.0
		for _, c := range in {
			worst = max(worst, c)
		}
		want, v := "beside swarm-sites", "—"
		if name == RunSwarmSites {
			want, v = fmt.Sprintf("≤ %.1f each", targetSiteCopies), verdict(worst <= targetSiteCopies)
		}
		fmt.Fprintf(w, "| bytes into each site over its uplink | %s | %s copies | %s | %s |\n", name, fmtList(in, "%.3f"), want, v)
	}
	if !b.sites {
		fmt.Fprintf(w, "| bytes into each site, sites known | swarm-sites | sites not supported by this binary | ≤ %.1f each | not run |\n", targetSiteCopies)
	}
	fmt.Fprintln(w)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// reportRuns: one line per run.
func (b *bed) reportRuns(w *bytes.Buffer) {
	fmt.Fprintf(w, "## Runs\n\n")
	fmt.Fprintf(w, "| run | --site | complete | makespan s | median s | origin copies | into sites (copies) | out of sites (copies) | from peers (copies) | uplink drops (packets in) | CPU s (delay) | stores | RTT ms in site, across |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range b.result.Runs {
		if r.Skipped != "" {
			fmt.Fprintf(w, "| %s | | skipped: %s | | | | | | | | | | |\n", r.Name, r.Skipped)
			continue
		}
		var out []float64
		for _, c := range r.Links.SiteOut {
			out = append(out, r.copies(c.Payload()))
		}
		var drops int64
		for _, c := range r.Links.SiteIn {
			drops += c.Dropped
		}
		var peers int64
		verified := 0
		for _, h := range r.Hosts {
			peers += h.FromPeers
			if h.Verified == verifiedOK {
				verified++
			}
		}
		fmt.Fprintf(w, "| %s | %s | %d/%d | %s | %s | %.3f | %s | %s | %.2f | %d | %.0f (%.0f) | %d/%d verified | %s, %s |\n",
			r.Name, yesNo(r.Sites), r.completed(), len(r.Hosts), secs(r.makespan()), secs(medianOf(r.doneTimes())), r.copies(r.originBytes()),
			fmtList(r.siteInCopies(), "%.2f"), fmtList(out, "%.2f"), r.copies(peers), drops, r.CPU, r.DelayCPU, verified, len(r.Hosts), ms(r.RTTSite), ms(r.RTTWAN))
	}
	fmt.Fprintln(w)
	for _, r := range b.result.Runs {
		if note := overlayNote(r.FewestPeers, len(r.Hosts)); note != "" {
			fmt.Fprintf(w, "- %s: %s\n", r.Name, note)
		}
		if r.Err != "" {
			fmt.Fprintf(w, "- %s ended early: %s\n", r.Name, r.Err)
		}
	}
	fmt.Fprintf(w, "\nPer host: `hosts.csv`; per site: `sites.csv`; per run: `runs.csv`; bytes held over time: `progress.csv`.\n\n")
}

// baseline is the run a fault run is compared with: the swarm as the
// faults ran it (with sites if the binary has them).
func (b *bed) baseline() *RunResult {
	if b.sites {
		if r := b.done(RunSwarmSites); r != nil {
			return r
		}
	}
	return b.done(RunSwarm)
}

// reportFaults: what each fault did and what it cost against the baseline.
func (b *bed) reportFaults(w *bytes.Buffer) {
	base := b.baseline()
	var rows []string
	for _, r := range b.result.Runs {
		if r.Skipped != "" || (r.Name != RunLinkDown && r.Name != RunSiteCut && r.Name != RunOriginStop && r.Name != RunSlowHost) {
			continue
		}
		var hit, rest []float64
		for _, h := range r.Hosts {
			if !h.complete() {
				continue
			}
			if h.Faulted {
				hit = append(hit, h.Done)
			} else {
				rest = append(rest, h.Done)
			}
		}
		row := fmt.Sprintf("| %s | %s | %d/%d (%s) | %s | %s | %.3f | %.2f |", r.Name, r.Fault, r.completed(), len(r.Hosts), held(r),
			fmtList(hit, "%.1f"), fmtMax(rest), r.copies(r.originBytes()), sum(r.siteInCopies()))
		if base != nil {
			row += fmt.Sprintf(" %s | %+.3f | %+.2f |", signedSecs(r.makespan()-base.Makespan), r.copies(r.originBytes())-base.copies(base.originBytes()),
				sum(r.siteInCopies())-sum(base.siteInCopies()))
		} else {
			row += " | | |"
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "## Faults\n\nCost: against `%s` (makespan %.1f s, origin %.3f copies, %.2f copies into the sites in all).\n\n",
		nameOf(base), makespanOf(base), originOf(base), siteSumOf(base))
	fmt.Fprintf(w, "| fault | what happened (s from the start) | complete (package held at the end) | faulted hosts done s | others done by s | origin copies | into sites, all (copies) | makespan cost | origin cost | uplink cost |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|\n%s\n\n", strings.Join(rows, "\n"))
}

// reportSim: the simulator beside the testbed.
func (b *bed) reportSim(w *bytes.Buffer) {
	if len(b.result.Sim) == 0 {
		return
	}
	fmt.Fprintf(w, "## The simulator on the same scenario\n\n`stork sim run %s --strategy S --seed 1..%d` (the file is in this directory: sites, payload rates, size, latencies); means over seeds. Gap = (sim − testbed) / testbed, target within ±%d%%.\n\n",
		ScenarioFile, max(1, b.cfg.Seeds), targetSimGap)
	fmt.Fprintf(w, "| testbed run | simulator strategy | figure | testbed | simulator | gap | check |\n|---|---|---|---|---|---|---|\n")
	for _, s := range b.result.Sim {
		r := b.done(s.Run)
		if r == nil {
			continue
		}
		rows := []struct {
			name      string
			real, sim float64
		}{
			{"origin copies", r.copies(r.originBytes()), s.OriginCopies},
			{"copies into a site (mean)", mean(r.siteInCopies()), mean(s.SiteCopies)},
			{"makespan s", r.Makespan, s.Makespan},
		}
		for _, x := range rows {
			g := 100 * (x.sim - x.real) / x.real
			fmt.Fprintf(w, "| %s | %s | %s | %.3f | %.3f | %+.1f%% | %s |\n", s.Run, s.Strategy, x.name, x.real, x.sim, g, verdict(math.Abs(g) <= targetSimGap))
		}
		fmt.Fprintf(w, "| %s | %s | copies into each site | %s | %s | | |\n", s.Run, s.Strategy, fmtList(r.siteInCopies(), "%.3f"), fmtList(s.SiteCopies, "%.3f"))
	}
	fmt.Fprintf(w, "\nThe simulator's fluid bound on the makespan: %.1f s.", b.result.Sim[0].Bound)
	if !roundRobin(b.cfg.Sites) {
		fmt.Fprintf(w, " The simulator spreads hosts over sites round-robin, which does not give these sites' sizes (%s): compare totals, not sites.", joinInts(b.cfg.Sites))
	}
	fmt.Fprintf(w, "\n\n")
	b.reportSimCPU(w)
}

// reportSimCPU: the simulator's makespan with the machine's cores shared
// by every process of the testbed, beside the one without.
func (b *bed) reportSimCPU(w *bytes.Buffer) {
	var any bool
	for _, s := range b.result.Sim {
		any = any || len(s.CPU) > 0
	}
	if !any {
		return
	}
	fmt.Fprintf(w, "### The makespan with the machine's CPU\n\n")
	fmt.Fprintf(w, "Every daemon, the origin and the router's delay forwarder run on this machine's %d cores. The simulator's `cpu` section (simulations/cpu.go) shares them: "+
		"CPU per byte a host receives (the run's daemons' and origin's CPU-seconds ÷ the bytes the hosts received from peers and the origin) and, on top, per byte into a site (the delay forwarder's CPU-seconds ÷ the payload into the sites). "+
		"\"this run\" takes the costs from the run it predicts (not an independent check); \"the other run\" from the other swarm run; \"both, split\" solves the two runs for a cost per byte and an extra cost per byte crossing into a site. "+
		"%s has the split (or the one run's costs). CPU floor: the simulated run's CPU-seconds over the cores.\n\n", runtime.NumCPU(), ScenarioFile)
	fmt.Fprintf(w, "| testbed run | simulator strategy | testbed makespan s | simulator without CPU | CPU costs from | per byte ns | per byte into a site ns | CPU floor s | simulator with CPU | gap | check |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range b.result.Sim {
		r := b.done(s.Run)
		if r == nil || len(s.CPU) == 0 {
			continue
		}
		g0 := 100 * (s.Makespan - r.Makespan) / r.Makespan
		for _, c := range s.CPU {
			g := 100 * (c.Makespan - r.Makespan) / r.Makespan
			fmt.Fprintf(w, "| %s | %s | %.1f | %.1f (%+.1f%%) | %s | %.1f | %.1f | %.1f | %.1f | %+.1f%% | %s |\n",
				s.Run, s.Strategy, r.Makespan, s.Makespan, g0, c.Calibration, 1e9*c.CPU.PerByte, 1e9*c.CPU.PerWANByte, c.Floor, c.Makespan, g, verdict(math.Abs(g) <= targetSimGap))
		}
	}
	fmt.Fprintf(w, "\n")
}

func (b *bed) reportNotes(w *bytes.Buffer) {
	fmt.Fprintf(w, "## How the figures are taken\n\n")
	fmt.Fprintf(w, "- Completion: from the moment every host was asked (`stork fetch` through the daemon's API, or `stork get`) to the end of its request.\n")
	fmt.Fprintf(w, "- Origin copies: bytes the `stork repo serve` process wrote while the run lasted (`/proc/PID/io` wchar) ÷ package size.\n")
	fmt.Fprintf(w, "- Copies into (out of) a site: the tbf counters of the router's (the switch's) end of the site uplink, less %d bytes of Ethernet, IP and TCP headers per packet, ÷ package size. Packets a full tbf queue dropped (\"uplink drops\", into the sites) are not in its counters; TCP sent them again.\n", wireOverhead)
	fmt.Fprintf(w, "- From peers: `bytes_from_peers` of `stork status --json`, summed over hosts.\n")
	fmt.Fprintf(w, "- RTT: the daemons' libp2p ping round trips to their peers before the fetches, averaged over peers in the same site and in other sites.\n")
	fmt.Fprintf(w, "- CPU: user + system seconds of the run's daemons (or `stork get`s) and the origin while the fetches ran; in brackets, the router's user-space delay forwarder's.\n")
	fmt.Fprintf(w, "- Stores: `stork verify` on every host's store after its daemon stopped; `stork get` verifies what it writes.\n")
}

// writeCSV writes runs.csv, hosts.csv, sites.csv and progress.csv.
func (b *bed) writeCSV() error {
	runs := [][]string{{"run", "sites_flag", "skipped", "hosts", "complete", "makespan_s", "median_s", "wall_s", "origin_B", "origin_copies", "cpu_s", "delay_cpu_s", "rtt_site_s", "rtt_wan_s", "fewest_peers", "fault", "error"}}
	hosts := [][]string{{"run", "host", "site", "done_s", "from_origin_B", "from_peers_B", "uploaded_B", "have_B", "link_in_B", "link_out_B", "cpu_s", "verified", "faulted", "error"}}
	sites := [][]string{{"run", "site", "in_B", "in_packets", "in_dropped", "in_payload_copies", "out_B", "out_packets", "out_dropped", "out_payload_copies"}}
	prog := [][]string{{"run", "t_s", "host", "have_B"}}
	for _, r := range b.result.Runs {
		runs = append(runs, []string{r.Name, strconv.FormatBool(r.Sites), r.Skipped, strconv.Itoa(len(r.Hosts)), strconv.Itoa(r.completed()),
			ff(r.Makespan), ff(medianOf(r.doneTimes())), ff(r.Wall), strconv.FormatInt(r.originBytes(), 10), ff(r.copies(r.originBytes())), ff(r.CPU), ff(r.DelayCPU), ff(r.RTTSite), ff(r.RTTWAN), strconv.Itoa(r.FewestPeers), r.Fault, r.Err})
		for _, h := range r.Hosts {
			hosts = append(hosts, []string{r.Name, h.Name, strconv.Itoa(h.Site), ff(h.Done), i64(h.FromOrigin), i64(h.FromPeers), i64(h.Uploaded),
				i64(h.Have), i64(h.In.Bytes), i64(h.Out.Bytes), ff(h.CPU), h.Verified, strconv.FormatBool(h.Faulted), h.Err})
		}
		for i := range r.Links.SiteIn {
			in, out := r.Links.SiteIn[i], r.Links.SiteOut[i]
			sites = append(sites, []string{r.Name, strconv.Itoa(i + 1), i64(in.Bytes), i64(in.Packets), i64(in.Dropped), ff(r.copies(in.Payload())),
				i64(out.Bytes), i64(out.Packets), i64(out.Dropped), ff(r.copies(out.Payload()))})
		}
		for _, s := range r.Progress {
			prog = append(prog, []string{r.Name, ff(s.T), s.Host, i64(s.Have)})
		}
	}
	for name, rows := range map[string][][]string{"runs.csv": runs, "hosts.csv": hosts, "sites.csv": sites, "progress.csv": prog} {
		var buf bytes.Buffer
		cw := csv.NewWriter(&buf)
		if err := cw.WriteAll(rows); err != nil {
			return fmt.Errorf("testbed: %s: %w", name, err)
		}
		if err := writeFile(filepath.Join(b.cfg.Dir, name), buf.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// held is the share of the package the run's hosts held at the end, as
// "min–max %".
func held(r *RunResult) string {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, h := range r.Hosts {
		f := 100 * float64(h.Have) / float64(r.Size)
		lo, hi = min(lo, f), max(hi, f)
	}
	if lo == hi {
		return fmt.Sprintf("%.1f%%", lo)
	}
	return fmt.Sprintf("%.1f–%.1f%%", lo, hi)
}

func writeFile(path string, b []byte) error {
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	return nil
}

// ff formats a float for CSV ("" for NaN).
func ff(x float64) string {
	if math.IsNaN(x) {
		return ""
	}
	return strconv.FormatFloat(x, 'f', 3, 64)
}

// secs writes seconds to 0.1 ("—" for NaN).
func secs(s float64) string {
	if math.IsNaN(s) {
		return "—"
	}
	return fmt.Sprintf("%.1f", s)
}

// signedSecs writes a difference of seconds ("—" for NaN).
func signedSecs(s float64) string {
	if math.IsNaN(s) {
		return "—"
	}
	return fmt.Sprintf("%+.1f s", s)
}

// ms writes seconds as milliseconds ("—" for NaN).
func ms(s float64) string {
	if math.IsNaN(s) {
		return "—"
	}
	return fmt.Sprintf("%.1f", 1000*s)
}

func i64(n int64) string { return strconv.FormatInt(n, 10) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func firstField(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func medianOf(sorted []float64) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return math.NaN()
	case n%2 == 1:
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func sum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return sum(xs) / float64(len(xs))
}

func fmtMax(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return fmt.Sprintf("%.1f", m)
}

func nameOf(r *RunResult) string {
	if r == nil {
		return "no baseline run"
	}
	return r.Name
}

func makespanOf(r *RunResult) float64 {
	if r == nil {
		return math.NaN()
	}
	return r.Makespan
}

func originOf(r *RunResult) float64 {
	if r == nil {
		return math.NaN()
	}
	return r.copies(r.originBytes())
}

func siteSumOf(r *RunResult) float64 {
	if r == nil {
		return math.NaN()
	}
	return sum(r.siteInCopies())
}
