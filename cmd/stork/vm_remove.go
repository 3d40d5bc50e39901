package main

import (
	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func vmRemoveCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "unregister a VM and remove its views",
		UsageText: "stork vm remove --data DIR ID",
		Flags:     []cli.Flag{dataFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want exactly one VM ID, got %d arguments", c.NArg())
			}
			return node.NewClient(c.String("data")).RemoveVM(c.Context, c.Args().First())
		},
	}
}
