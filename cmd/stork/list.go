package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

func listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list packages in the host store, or one VM's installs with the state of each view (ok, or broken and why); with the daemon stopped, read from the data directory",
		UsageText: "stork list --data DIR [--vm ID] [--json]",
		Flags:     []cli.Flag{dataFlag(), vmFlag(false), jsonFlag()},
		Action: func(c *cli.Context) error {
			if vm := c.String("vm"); vm != "" {
				insts, err := hostInstalls(c, vm)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c, insts)
				}
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tVERSION\tPATH\tMODE\tSTATE")
				for _, in := range insts {
					state := in.State
					if in.Setuid != "" {
						state += ", setuid " + in.Setuid
					}
					if in.Reason != "" {
						state += ": " + in.Reason
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.Name, in.Version, in.Path, in.Mode, state)
				}
				return tw.Flush()
			}
			st, err := hostStatus(c)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, st.Packages)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tSTATE\tSIZE\tVMS\tMANIFEST")
			for _, p := range st.Packages {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", p.Name, p.Version, p.State, p.Size, strings.Join(p.Installs, ","), p.ManifestCID)
			}
			return tw.Flush()
		},
	}
}
