package main

import (
	"fmt"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func fetchCommand() *cli.Command {
	return &cli.Command{
		Name:      "fetch",
		Usage:     "bring a package and its dependencies into the host store (through the daemon)",
		UsageText: "stork fetch --data DIR NAME[@VERSION]",
		Flags:     []cli.Flag{dataFlag(), jsonFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want exactly one NAME[@VERSION], got %d arguments", c.NArg())
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			bar := newProgress(c, c.Args().First(), 0)
			pkgs, err := node.NewClient(c.String("data")).Fetch(ctx, c.Args().First(), bar.SetTotal)
			bar.Finish()
			if err != nil {
				return err
			}
			return printLines(c, pkgs, func(p node.PackageStatus) string {
				return fmt.Sprintf("%s@%s %s %s (%d bytes)", p.Name, p.Version, p.State, p.ManifestCID, p.Size)
			})
		},
	}
}
