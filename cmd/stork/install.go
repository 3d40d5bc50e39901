package main

import (
	"fmt"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func installCommand() *cli.Command {
	return &cli.Command{
		Name:      "install",
		Usage:     "expose a package and its dependencies read-only in a VM's view (DIR/NAME each)",
		UsageText: "stork install --data DIR --vm ID NAME[@VERSION] [--into DIR] [--mode bind|overlay|link] [--no-deps]",
		Flags: []cli.Flag{
			dataFlag(),
			vmFlag(true),
			stringFlag("into", "view `DIR`, at or below the VM's root (default: the root of the VM as registered with stork vm add); each package appears at DIR/NAME", catStore, false),
			&cli.StringFlag{Name: "mode", Usage: "view `MODE`: bind (read-only bind mount), overlay (copy-on-write upper layer), link (hard links); default: the mode the VM was registered with (stork vm add --mode)", Category: catStore, EnvVars: env("mode")},
			boolFlag("no-deps", "install NAME alone, without resolving its dependencies (as dpkg -i would)", catStore),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want exactly one NAME[@VERSION], got %d arguments", c.NArg())
			}
			into, err := absPathValue(c, "into")
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			bar := newProgress(c, c.Args().First(), 0)
			insts, err := node.NewClient(c.String("data")).Install(ctx, node.InstallRequest{
				VM: c.String("vm"), Ref: c.Args().First(), Into: into, Mode: c.String("mode"), NoDeps: c.Bool("no-deps"),
			}, bar.SetTotal)
			bar.Finish()
			if err != nil {
				return err
			}
			return printLines(c, insts, func(in node.Installed) string {
				return fmt.Sprintf("%s@%s -> %s (%s, vm %s)", in.Name, in.Version, in.Path, in.Mode, in.VM)
			})
		},
	}
}
