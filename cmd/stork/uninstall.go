package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func uninstallCommand() *cli.Command {
	return &cli.Command{
		Name:      "uninstall",
		Usage:     "remove a package from a VM's view",
		UsageText: "stork uninstall --data DIR --vm ID NAME [--json]",
		Flags:     []cli.Flag{dataFlag(), vmFlag(true), jsonFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want exactly one NAME, got %d arguments", c.NArg())
			}
			out, err := node.NewClient(c.String("data")).Uninstall(c.Context, c.String("vm"), c.Args().First())
			if err != nil {
				return err
			}
			return printLines(c, out, func(in node.Installed) string {
				return fmt.Sprintf("removed %s@%s from %s (vm %s)", in.Name, in.Version, in.Path, in.VM)
			})
		},
	}
}
