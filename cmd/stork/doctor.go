package main

import (
	"fmt"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name: "doctor",
		Usage: "check this host for the daemon and say what to fix, one line per finding: the data directory, free space and inodes, " +
			"the clock against the repository's, the origin and bootstrap peers, mounting views, the open-file limit",
		UsageText: "stork doctor [--data DIR] [--repo URL] [--bootstrap MULTIADDR ...] [--json]\n" +
			"exit status 1 when a finding (fail) keeps the daemon from running",
		Flags: append(optFlags("store.data", "repo.url", "swarm.bootstrap", "swarm.conn-high"),
			&cli.StringFlag{Name: "min-free", Usage: "fail when the data directory's file system has less than `SIZE` free", Category: catStore, EnvVars: env("doctor-min-free"), Value: "1G"},
			jsonFlag(),
		),
		Action: func(c *cli.Context) error {
			minFree, err := parseSize(c.String("min-free"))
			if err != nil {
				return fmt.Errorf("--min-free: %w", err)
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			fs := node.Doctor(ctx, node.DoctorConfig{
				DataDir: c.String("data"), RepoURL: c.String("repo"), Bootstrap: c.StringSlice("bootstrap"),
				ConnHigh: c.Int("conn-high"), MinFree: minFree,
			})
			failed := 0
			for _, f := range fs {
				if f.Level == node.LevelFail {
					failed++
				}
			}
			if c.Bool("json") {
				if err := printJSON(c, fs); err != nil {
					return err
				}
			} else {
				for _, f := range fs {
					fix := ""
					if f.Fix != "" && f.Level != node.LevelOK {
						fix = "; fix: " + f.Fix
					}
					fmt.Fprintf(c.App.Writer, "%-4s  %-9s  %s%s\n", f.Level, f.Check, f.Message, fix)
				}
			}
			if failed > 0 {
				return fmt.Errorf("doctor: %d findings keep the daemon from running well (fail)", failed)
			}
			return nil
		},
	}
}
