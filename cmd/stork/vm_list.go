package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func vmListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list registered VMs",
		UsageText: "stork vm list --data DIR [--json]",
		Flags:     []cli.Flag{dataFlag(), jsonFlag()},
		Action: func(c *cli.Context) error {
			vms, err := node.NewClient(c.String("data")).VMs(c.Context)
			if err != nil {
				return err
			}
			return printTable(c, vms, "ID\tMODE\tROOT\tALLOW\tGROUPS\tQUOTA\tUNPRIVILEGED", func(v node.VM) string {
				quota := "-"
				if v.Quota > 0 {
					quota = fmt.Sprint(v.Quota)
				}
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%t", v.ID, v.Mode, v.Root, strings.Join(v.Allow, ","), groupsList(v.Groups), quota, v.Unprivileged)
			})
		},
	}
}
