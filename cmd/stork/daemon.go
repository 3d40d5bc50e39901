package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func dataFlag() cli.Flag {
	return stringFlag("data", "daemon data `DIR` (store, trusted metadata, sockets)", catStore, true)
}

func daemonCommand() *cli.Command {
	return &cli.Command{
		Name:      "daemon",
		Usage:     "run the host daemon in the foreground",
		UsageText: "stork daemon --data DIR --repo URL --root ROOT.json",
		Flags: []cli.Flag{
			dataFlag(),
			stringFlag("repo", "repository (origin) base `URL`", catRepo, true),
			stringFlag("root", "trusted root metadata `FILE` (used until DIR holds trusted metadata)", catRepo, false),
			intFlag("parallel", "concurrent chunk requests per download", catNetwork, 8),
			&cli.StringFlag{Name: "refresh-interval", Usage: "reuse repository metadata this long (`DURATION`) before refreshing", Category: catRepo, EnvVars: env("refresh-interval"), Value: "30s"},
		},
		Action: func(c *cli.Context) error {
			var root []byte
			if p := c.String("root"); p != "" {
				b, err := os.ReadFile(p)
				if err != nil {
					return fmt.Errorf("read root metadata: %w", err)
				}
				root = b
			}
			interval, err := parseDuration(c.String("refresh-interval"))
			if err != nil {
				return fmt.Errorf("--refresh-interval: %w", err)
			}
			d, err := node.New(node.Config{
				DataDir:         c.String("data"),
				RepoURL:         c.String("repo"),
				Root:            root,
				Parallel:        c.Int("parallel"),
				RefreshInterval: interval,
				Logger:          newLogger(c),
			})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return d.Run(ctx)
		},
	}
}
