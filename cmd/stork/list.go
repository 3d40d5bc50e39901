package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
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
				return printTable(c, insts, "NAME\tVERSION\tPATH\tMODE\tSTATE", func(in node.Installed) string {
					state := in.State
					if in.Setuid != "" {
						state += ", setuid " + in.Setuid
					}
					if in.Reason != "" {
						state += ": " + in.Reason
					}
					return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", in.Name, in.Version, in.Path, in.Mode, state)
				})
			}
			st, err := hostStatus(c)
			if err != nil {
				return err
			}
			return printTable(c, st.Packages, "NAME\tVERSION\tSTATE\tSIZE\tVMS\tMANIFEST", func(p node.PackageStatus) string {
				return fmt.Sprintf("%s\t%s\t%s\t%d\t%s\t%s", p.Name, p.Version, p.State, p.Size, strings.Join(p.Installs, ","), p.ManifestCID)
			})
		},
	}
}
