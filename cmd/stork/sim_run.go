package main

import (
	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/simulations"
)

func simRunCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "simulate one scenario with each strategy; write CSV and PNG plots",
		UsageText: "stork sim run [SCENARIO.json] --out DIR [--hosts N] [--strategy S ...] [--seed N ...]",
		Flags: append(simFlags(
			stringFlag("out", "write CSV files and plots into `DIR`", catOutput, true),
			intFlag("hosts", "number of hosts (0: the scenario's)", catSim, 0),
		), simScenarioFlags()...),
		Action: func(c *cli.Context) error {
			sc, strategies, err := loadSimScenario(c)
			if err != nil {
				return err
			}
			if v := c.Int("hosts"); v != 0 {
				sc.Hosts = v
			}
			if err := sc.Validate(); err != nil {
				return err
			}
			var results []*simulations.Result
			for _, st := range strategies {
				r, err := simulations.RunMeasured(sc, st)
				if err != nil {
					return err
				}
				printSimResult(c, r)
				results = append(results, r)
			}
			return writeSimOutputs(c.String("out"), results)
		},
	}
}
