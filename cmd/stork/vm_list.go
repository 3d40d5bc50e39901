package main

import (
	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func vmListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list registered VMs",
		UsageText: "stork vm list --data DIR",
		Flags:     []cli.Flag{dataFlag()},
		Action: func(c *cli.Context) error {
			vms, err := node.NewClient(c.String("data")).VMs(c.Context)
			if err != nil {
				return err
			}
			return printJSON(c, vms)
		},
	}
}
