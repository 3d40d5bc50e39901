package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

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
			if c.Bool("json") {
				return printJSON(c, vms)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tMODE\tROOT\tALLOW\tQUOTA\tUNPRIVILEGED")
			for _, v := range vms {
				quota := "-"
				if v.Quota > 0 {
					quota = fmt.Sprint(v.Quota)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\n", v.ID, v.Mode, v.Root, strings.Join(v.Allow, ","), quota, v.Unprivileged)
			}
			return tw.Flush()
		},
	}
}
