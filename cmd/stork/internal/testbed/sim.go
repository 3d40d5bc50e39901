package testbed

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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

// simulate writes the scenario file and runs the simulator on it for every
// strategy that models a run that was done.
func (b *bed) simulate() ([]SimFigures, error) {
	sc := b.scenario()
	js, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("testbed: scenario: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.cfg.Dir, ScenarioFile), append(js, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	var out []SimFigures
	for _, m := range simStrategies {
		if b.done(m.run) == nil {
			continue
		}
		fig, err := simFigures(sc, m.strategy, max(1, b.cfg.Seeds), b.cfg.Sites)
		if err != nil {
			return out, err
		}
		fig.Run = m.run
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
		fig.Bound = res.Bound
		for _, h := range res.PerHost {
			if h.Site < len(fig.SiteCopies) {
				fig.SiteCopies[h.Site] += (h.FromOrigin + h.FromWAN) / size / float64(seeds)
			}
		}
	}
	return fig, nil
}
