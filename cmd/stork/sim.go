package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/simulations"
)

const catSim = "Simulation"

func simCommand() *cli.Command {
	return &cli.Command{
		Name:  "sim",
		Usage: "simulate many hosts fetching a package (the real piece-selection policy, simulated links)",
		Subcommands: []*cli.Command{
			simRunCommand(),
			simSweepCommand(),
			simAnnounceCommand(),
		},
	}
}

// simScenarioFlags override fields of the scenario file (or of the default
// scenario when there is none).
func simScenarioFlags() []cli.Flag {
	return simFlags(
		stringSliceFlag("strategy", "run only `STRATEGY` (repeat; origin-per-vm, origin-per-host, swarm, swarm-locality, swarm-coop, swarm-sites; default all but swarm-coop and swarm-sites; swarm-sites: sites known and two-level cooperative fetching, as daemons given --site)", catSim),
		intFlag("seed", "random seed (0: the scenario's)", catSim, 0),
		intFlag("vms", "VMs per host", catSim, 0),
		intFlag("sites", "sites", catSim, 0),
		stringFlag("package-size", "package `SIZE` (e.g. 1GiB)", catSim, false),
		stringFlag("chunk-size", "chunk `SIZE` (e.g. 1MiB)", catSim, false),
		stringFlag("origin-upload", "origin upload `RATE` (e.g. 1Gbps)", catSim, false),
		stringFlag("host-upload", "every host's upload `RATE` (replaces the distribution)", catSim, false),
		stringFlag("host-download", "every host's download `RATE` (replaces the distribution)", catSim, false),
		stringFlag("arrival", "arrival `PATTERN`: flash or staggered", catSim, false),
		stringFlag("arrival-over", "staggered arrivals over `DURATION`", catSim, false),
		stringFlag("reuse", "new version: `FRACTION` of chunks hosts already hold", catSim, false),
		stringFlag("churn", "`FRACTION` of hosts leaving mid-transfer", catSim, false),
		stringFlag("churn-rejoin", "hosts that left come back after `DURATION` (default never)", catSim, false),
		intFlag("max-peers", "peers per download", catSim, 0),
		stringFlag("provider-delay", "a host's provider record is found `DURATION` after it starts a download (default 0: at once)", catSim, false),
	)
}

// simFlags gives each simulation flag the environment variable
// STORK_SIM_FLAG: its names (hosts, out, chunk-size, max-peers) mean
// something else for a real host.
func simFlags(flags ...cli.Flag) []cli.Flag {
	for _, f := range flags {
		withEnv(f, "STORK_SIM_"+strings.TrimPrefix(env(f.Names()[0])[0], "STORK_"))
	}
	return flags
}

func loadSimScenario(c *cli.Context) (simulations.Scenario, []simulations.Strategy, error) {
	sc := simulations.DefaultScenario()
	if c.NArg() > 1 {
		return sc, nil, usageError(c, "want at most one SCENARIO.json, got %d arguments", c.NArg())
	}
	if c.NArg() == 1 {
		var err error
		if sc, err = simulations.LoadScenario(c.Args().First()); err != nil {
			return sc, nil, err
		}
	}
	if v := c.Int("seed"); v != 0 {
		sc.Seed = uint64(v)
	}
	if v := c.Int("vms"); v != 0 {
		sc.VMsPerHost = v
	}
	if v := c.Int("sites"); v != 0 {
		sc.Sites = v
	}
	if v := c.Int("max-peers"); v != 0 {
		sc.Policy.MaxPeers = v
	}
	for _, s := range []struct {
		flag string
		dst  *simulations.Size
	}{{"package-size", &sc.PackageSize}, {"chunk-size", &sc.ChunkSize}} {
		if v := c.String(s.flag); v != "" {
			z, err := simulations.ParseSize(v)
			if err != nil {
				return sc, nil, fmt.Errorf("--%s: %w", s.flag, err)
			}
			*s.dst = z
		}
	}
	if v := c.String("origin-upload"); v != "" {
		r, err := simulations.ParseRate(v)
		if err != nil {
			return sc, nil, fmt.Errorf("--origin-upload: %w", err)
		}
		sc.OriginUpload = r
	}
	for _, d := range []struct {
		flag string
		dst  *simulations.Dist
	}{{"host-upload", &sc.HostUpload}, {"host-download", &sc.HostDownload}} {
		if v := c.String(d.flag); v != "" {
			r, err := simulations.ParseRate(v)
			if err != nil {
				return sc, nil, fmt.Errorf("--%s: %w", d.flag, err)
			}
			*d.dst = simulations.Dist{{Rate: r, Weight: 1}}
		}
	}
	if v := c.String("arrival"); v != "" {
		sc.Arrival.Pattern = v
	}
	for _, d := range []struct {
		flag string
		dst  *simulations.Duration
	}{{"arrival-over", &sc.Arrival.Over}, {"churn-rejoin", &sc.Churn.RejoinAfter}, {"provider-delay", &sc.Policy.ProviderDelay}} {
		if v := c.String(d.flag); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil {
				return sc, nil, fmt.Errorf("--%s %q: want e.g. 30s", d.flag, v)
			}
			*d.dst = simulations.Duration(x)
		}
	}
	for _, d := range []struct {
		flag string
		dst  *float64
	}{{"reuse", &sc.NewVersion.Reuse}, {"churn", &sc.Churn.Fraction}} {
		if v := c.String(d.flag); v != "" {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return sc, nil, fmt.Errorf("--%s %q: want a fraction like 0.2", d.flag, v)
			}
			*d.dst = x
		}
	}
	if sc.Churn.Fraction > 0 && sc.Churn.To == 0 {
		// churn during the first ten fluid bounds unless the file says
		sc.Churn.To = simulations.Duration(time.Duration(10 * simulations.FluidBound(sc) * float64(time.Second)))
	}
	var strategies []simulations.Strategy
	for _, s := range c.StringSlice("strategy") {
		st, err := simulations.ParseStrategy(s)
		if err != nil {
			return sc, nil, fmt.Errorf("--strategy: %w", err)
		}
		strategies = append(strategies, st)
	}
	if len(strategies) == 0 {
		strategies = simulations.Strategies()
	}
	return sc, strategies, nil
}

func printSimResult(c *cli.Context, r *simulations.Result) {
	fmt.Fprintf(c.App.Writer, "%-15s %6d hosts: origin %.2f GiB (%.2f copies), offload %.3f%%, host offload %.3f%%, p50 %.2fs, makespan %.2fs (%.2f x bound %.2fs), %d events in %v, peak heap %d MiB\n",
		r.Strategy, r.Hosts, r.OriginBytes/(1<<30), r.OriginBytes/r.PackageBytes, 100*r.Offload, 100*r.HostOffload,
		r.P50, r.Makespan, r.Ratio, r.Bound, r.Events, r.Wall.Round(time.Millisecond), r.PeakHeap>>20)
	if r.MetadataBytes > 0 {
		// The scenario's metadata section: counted beside the chunks.
		fmt.Fprintf(c.App.Writer, "  %s: origin bytes, metadata included: %.0f B (%.3f copies; metadata and manifests %.0f B, counted)\n",
			r.Strategy, r.OriginTotal(), r.OriginTotal()/r.PackageBytes, r.MetadataBytes)
	}
}

func writeSimOutputs(dir string, results []*simulations.Result) error {
	if err := simulations.WriteCSV(dir, results); err != nil {
		return err
	}
	_, err := simulations.WritePlots(dir, results)
	return err
}
