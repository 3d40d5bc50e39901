package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/simulations"
)

func simAnnounceCommand() *cli.Command {
	return &cli.Command{
		Name:      "announce",
		Usage:     "model how a group change spreads by timestamp announcements (gossipsub) and polling, and what it costs the origin",
		UsageText: "stork sim announce [--hosts 100,1000,10000] [--poll 60s] [--loss 0.01] [--seed N] [--json]",
		Flags: append(simFlags(
			stringFlag("poll", "each host polls the origin every `DURATION` (default 60s)", catSim, false),
			stringFlag("loss", "`FRACTION` of announcements lost (default 0.01)", catSim, false),
		),
			withEnv(stringFlag("hosts", "comma-separated host `COUNTS`", catSim, false), "STORK_SIM_ANNOUNCE_HOSTS"),
			withEnv(intFlag("seed", "random seed", catSim, 1), "STORK_SIM_ANNOUNCE_SEED"),
			jsonFlag()),
		Action: func(c *cli.Context) error {
			hostList := c.String("hosts")
			if hostList == "" {
				hostList = "100,1000,10000"
			}
			hosts, err := parseHostList(hostList)
			if err != nil {
				return err
			}
			var out []simulations.AnnounceResult
			for _, n := range hosts {
				cfg := simulations.DefaultAnnounceConfig(n)
				cfg.Seed = uint64(c.Int("seed"))
				if s := c.String("poll"); s != "" {
					if cfg.Poll, err = parseDuration(s); err != nil {
						return fmt.Errorf("--poll: %w", err)
					}
				}
				if s := c.String("loss"); s != "" {
					if _, err := fmt.Sscan(s, &cfg.Loss); err != nil || cfg.Loss < 0 || cfg.Loss >= 1 {
						return usageError(c, "--loss %q: want a fraction in [0, 1)", s)
					}
				}
				for _, push := range []bool{true, false} {
					cfg.Push = push
					r, err := simulations.RunAnnounce(cfg)
					if err != nil {
						return err
					}
					out = append(out, r)
				}
			}
			if c.Bool("json") {
				return printJSON(c, out)
			}
			return simulations.WriteAnnounceTable(c.App.Writer, out)
		},
	}
}
