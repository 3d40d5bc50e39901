package testbed

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/storkpm/stork/simulations"
)

// ScenarioFile is the simulator's scenario Run writes in Config.Dir: the
// testbed's sites, rates and size.
const ScenarioFile = "scenario.json"

// SimFigures is the simulator's figures for one strategy, the mean over
// seeds, beside the testbed run they describe.
type SimFigures struct {
	Strategy simulations.Strategy
	Run      string // the testbed run it models
	Seeds    int
	// OriginCopies: origin bytes sent / package; SiteCopies: per site,
	// bytes into it (origin and other sites) / package; Makespan: last
	// host done, seconds.
	OriginCopies float64
	SiteCopies   []float64
	Makespan     float64
	Bound        float64 // the fluid lower bound on the makespan
	// CPUFloor: with Scenario.CPU, the CPU-seconds of the bytes the run
	// moved over the cores.
	CPUFloor float64
	// CPU: the same strategy on the machine's cores, the costs measured
	// by the runs each calibration names (cpuCalibrations).
	CPU []SimCPU
}

// SimCPU is the simulator's makespan with a CPU model (Scenario.CPU).
type SimCPU struct {
	// Calibration: which testbed runs measured the costs.
	Calibration string
	CPU         simulations.CPU
	Makespan    float64
	// Floor: the CPU-seconds of the simulated run's bytes at these costs
	// over the cores, a floor on its makespan.
	Floor float64
}

// simStrategies: which strategy models which testbed run. The daemons
// fetch from the origin cooperatively (pull-through, on by default),
// which swarm-coop models; given --site they do it in two levels (a
// site's fetcher asks the chunk's global fetcher, which alone asks the
// origin) and run the site rule, which the simulator's swarm-sites
// models.
var simStrategies = []struct {
	strategy simulations.Strategy
	run      string
}{
	{simulations.OriginPerHost, RunHTTP},
	{simulations.SwarmCoop, RunSwarm},
	{simulations.SwarmSites, RunSwarmSites},
}

// payloadFraction is the share of a link's rate left for TCP payload at
// this MTU with full segments (wireOverhead bytes of headers each, the
// IPv4 and TCP ones inside the MTU).
func payloadFraction(mtu int) float64 {
	return float64(mtu-(wireOverhead-14)) / float64(mtu+14)
}

// scenario is the testbed as the simulator models it: rates are the links'
// payload rates; a one-way delay of cfg.Delay between sites and to the
// origin, 50 µs inside a site; the daemon's tick and peer limit; chunks
// written ahead (Scenario.WriteAhead: the daemons' uploads are not
// capped). The simulator's chunks are all one size: the package's mean
// chunk, so that a package of many files has as many chunks as the
// daemons move.
func (b *bed) scenario() simulations.Scenario {
	pf := payloadFraction(b.cfg.MTU)
	rate := func(bits int64) simulations.Rate { return simulations.Rate(float64(bits) / 8 * pf) }
	wan := simulations.Duration(max(b.cfg.Delay, 50*time.Microsecond))
	return simulations.Scenario{
		Name:         "testbed",
		Hosts:        b.cfg.hosts(),
		VMsPerHost:   1,
		Sites:        len(b.cfg.Sites),
		PackageSize:  simulations.Size(b.pkg.Bytes),
		ChunkSize:    simulations.Size((b.pkg.Bytes + int64(max(1, b.pkg.Chunks)) - 1) / int64(max(1, b.pkg.Chunks))),
		HostUpload:   simulations.Dist{{Rate: rate(b.cfg.Rates.Host), Weight: 1}},
		HostDownload: simulations.Dist{{Rate: rate(b.cfg.Rates.Host), Weight: 1}},
		SiteUplink:   rate(b.cfg.Rates.Uplink),
		SiteDownlink: rate(b.cfg.Rates.Uplink),
		OriginUpload: rate(b.cfg.Rates.Origin),
		Latency:      simulations.Latency{Site: simulations.Duration(50 * time.Microsecond), WAN: wan, Origin: wan},
		Arrival:      simulations.Arrival{Pattern: simulations.ArrivalFlash},
		Policy:       simulations.Policy{Tick: simulations.Duration(20 * time.Millisecond), MaxPeers: 32},
		// The daemons run without an upload cap: a chunk they are asked to
		// cancel is already in the socket's send buffer and crosses whole.
		WriteAhead: true,
		Seed:       1,
	}
}

// runCPU is a run's CPU costs as the simulator takes them (Scenario.CPU):
// the daemons' and the origin's CPU-seconds (RunResult.CPU) per byte the
// hosts received, from peers or the origin, and the delay forwarder's
// per byte into the sites (the payload their uplinks carried in, the
// origin's included). ok is false when the run moved nothing or was not
// measured.
func runCPU(r *RunResult, cores int) (c simulations.CPU, ok bool) {
	recv, into := r.received(), r.intoSites()
	if recv <= 0 || r.CPU <= 0 {
		return c, false
	}
	c = simulations.CPU{Cores: float64(cores), PerByte: r.CPU / recv, PerOriginByte: r.CPU / recv}
	if into > 0 {
		c.PerWANByte = r.DelayCPU / into
	}
	return c, true
}

// splitCPU is two runs' CPU split between every byte the hosts received
// and the bytes that crossed into a site (on the testbed a byte that
// came through the router costs the daemons more than one from the
// same bridge): the costs p per byte and q per crossing byte with
// CPU = p × received + q × into for both runs, q added to the
// forwarder's per crossing byte over both. ok is false when the two runs
// do not tell the two apart (their crossing shares alike) or give a
// negative cost.
func splitCPU(a, b *RunResult, cores int) (c simulations.CPU, ok bool) {
	ra, ia, rb, ib := a.received(), a.intoSites(), b.received(), b.intoSites()
	det := ra*ib - rb*ia
	if math.Abs(det) < 0.05*ra*ib || ia+ib <= 0 {
		return c, false
	}
	p := (a.CPU*ib - b.CPU*ia) / det
	q := (ra*b.CPU - rb*a.CPU) / det
	if p < 0 || q < 0 {
		return c, false
	}
	return simulations.CPU{Cores: float64(cores), PerByte: p, PerOriginByte: p, PerWANByte: q + (a.DelayCPU+b.DelayCPU)/(ia+ib)}, true
}

// cpuCalibrations returns the CPU costs to simulate run r with: those
// the run measured itself, those the other swarm run measured (a
// prediction from another run), and the split of the two.
func (b *bed) cpuCalibrations(r *RunResult) []SimCPU {
	cores := runtime.NumCPU()
	var out []SimCPU
	if c, ok := runCPU(r, cores); ok {
		out = append(out, SimCPU{Calibration: "this run", CPU: c})
	}
	other := b.done(RunSwarmSites)
	if r.Name == RunSwarmSites {
		other = b.done(RunSwarm)
	}
	if other == nil {
		return out
	}
	if c, ok := runCPU(other, cores); ok {
		out = append(out, SimCPU{Calibration: "the " + other.Name + " run", CPU: c})
	}
	if c, ok := splitCPU(r, other, cores); ok {
		out = append(out, SimCPU{Calibration: "both, split", CPU: c})
	}
	return out
}

// scenarioCPU is the CPU section of the scenario file: the split of the
// two swarm runs when both were done and tell it, else the one done.
func (b *bed) scenarioCPU() simulations.CPU {
	cores := runtime.NumCPU()
	a, c := b.done(RunSwarm), b.done(RunSwarmSites)
	if a != nil && c != nil {
		if cpu, ok := splitCPU(a, c, cores); ok {
			return cpu
		}
	}
	for _, r := range []*RunResult{c, a} {
		if r != nil {
			if cpu, ok := runCPU(r, cores); ok {
				return cpu
			}
		}
	}
	return simulations.CPU{}
}

// simulate writes the scenario file (with the CPU the runs measured) and
// runs the simulator on it for every strategy that models a run that was
// done, without a CPU and with each calibration of cpuCalibrations.
func (b *bed) simulate() ([]SimFigures, error) {
	sc := b.scenario()
	sc.CPU = b.scenarioCPU()
	js, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("testbed: scenario: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.cfg.Dir, ScenarioFile), append(js, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	var out []SimFigures
	free := sc
	free.CPU = simulations.CPU{}
	for _, m := range simStrategies {
		r := b.done(m.run)
		if r == nil {
			continue
		}
		fig, err := simFigures(free, m.strategy, max(1, b.cfg.Seeds), b.cfg.Sites)
		if err != nil {
			return out, err
		}
		fig.Run = m.run
		if m.run != RunHTTP {
			for _, c := range b.cpuCalibrations(r) {
				with := free
				with.CPU = c.CPU
				f, err := simFigures(with, m.strategy, max(1, b.cfg.Seeds), b.cfg.Sites)
				if err != nil {
					return out, err
				}
				c.Makespan, c.Floor = f.Makespan, f.CPUFloor
				fig.CPU = append(fig.CPU, c)
			}
		}
		out = append(out, fig)
	}
	return out, nil
}

// roundRobin reports whether the simulator's round-robin spread of hosts
// over sites gives the sites these sizes.
func roundRobin(sites []int) bool {
	n := 0
	for _, h := range sites {
		n += h
	}
	for i, h := range sites {
		if h != (n-i+len(sites)-1)/len(sites) {
			return false
		}
	}
	return true
}

// done returns the named run if it was done.
func (b *bed) done(name string) *RunResult {
	for _, r := range b.result.Runs {
		if r.Name == name && r.Skipped == "" {
			return r
		}
	}
	return nil
}

// simFigures runs sc under st for seeds 1..seeds and returns the means.
// The simulator spreads hosts over sites round-robin; the per-site
// figures are in its site order.
func simFigures(sc simulations.Scenario, st simulations.Strategy, seeds int, sites []int) (SimFigures, error) {
	fig := SimFigures{Strategy: st, Seeds: seeds, SiteCopies: make([]float64, len(sites))}
	size := float64(sc.PackageSize)
	for seed := 1; seed <= seeds; seed++ {
		sc.Seed = uint64(seed)
		res, err := simulations.Run(sc, st)
		if err != nil {
			return fig, fmt.Errorf("testbed: simulator, %s: %w", st, err)
		}
		fig.OriginCopies += res.OriginBytes / size / float64(seeds)
		fig.Makespan += res.Makespan / float64(seeds)
		if sc.CPU.Cores > 0 {
			peers := res.SiteBytes + res.WANBytes // duplicates included
			fig.CPUFloor += sc.CPU.Work(peers, res.OriginBytes, res.WANBytes+res.OriginBytes, 0) / sc.CPU.Cores / float64(seeds)
		}
		fig.Bound = res.Bound
		for _, h := range res.PerHost {
			if h.Site < len(fig.SiteCopies) {
				fig.SiteCopies[h.Site] += (h.FromOrigin + h.FromWAN) / size / float64(seeds)
			}
		}
	}
	return fig, nil
}
