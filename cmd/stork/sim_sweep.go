package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/simulations"
)

func simSweepCommand() *cli.Command {
	return &cli.Command{
		Name:      "sweep",
		Usage:     "simulate a range of host counts with each strategy; write CSV, plots and optionally a Markdown report",
		UsageText: "stork sim sweep [SCENARIO.json] --hosts 10,100,1000,10000 --out DIR [--report FILE.md]",
		Flags: append([]cli.Flag{
			withEnv(stringFlag("hosts", "comma-separated host `COUNTS`", catSim, true), "STORK_SIM_SWEEP_HOSTS"),
		}, append(simFlags(
			stringFlag("out", "write CSV files and plots into `DIR`", catOutput, false),
			stringFlag("report", "write a Markdown report to `FILE`, plots in report/ beside it", catOutput, false),
			stringFlag("append-report", "append a section for a workload of many packages to the report `FILE` (written by a sweep with --report)", catOutput, false),
			boolFlag("trace", "print each run's simulated time and events to stderr every 2^24 events", catOutput),
		), simScenarioFlags()...)...),
		Action: func(c *cli.Context) error {
			if c.String("out") == "" && c.String("report") == "" && c.String("append-report") == "" {
				return usageError(c, "want --out DIR, --report FILE, --append-report FILE or some of them")
			}
			sc, strategies, err := loadSimScenario(c)
			if err != nil {
				return err
			}
			hosts, err := parseHostList(c.String("hosts"))
			if err != nil {
				return err
			}
			for _, n := range hosts {
				x := sc
				x.Hosts = n
				if err := x.Validate(); err != nil {
					return err
				}
			}
			cfg := simulations.SweepConfig{
				Scenario: sc, Hosts: hosts, Strategies: strategies,
				Progress: func(r *simulations.Result) { printSimResult(c, r) },
			}
			if c.Bool("trace") {
				cfg.Trace = os.Stderr
			}
			results, err := simulations.Sweep(cfg)
			if err != nil {
				return err
			}
			if dir := c.String("out"); dir != "" {
				if err := writeSimOutputs(dir, results); err != nil {
					return err
				}
			}
			if rep := c.String("report"); rep != "" {
				cmd := "stork " + strings.Join(os.Args[1:], " ")
				info := simulations.ReportInfo{Command: cmd, Scenario: sc}
				if err := simulations.WriteReport(rep, filepath.Join(filepath.Dir(rep), "report"), results, info); err != nil {
					return err
				}
			}
			if rep := c.String("append-report"); rep != "" {
				cmd := "stork " + strings.Join(os.Args[1:], " ")
				if err := simulations.AppendReportSection(rep, results, simulations.ReportInfo{Command: cmd, Scenario: sc}); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func parseHostList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--hosts %q: want a comma-separated list of host counts like 10,100,1000", s)
		}
		out = append(out, n)
	}
	return out, nil
}
