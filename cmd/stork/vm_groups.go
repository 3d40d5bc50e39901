package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func vmGroupsCommand() *cli.Command {
	return &cli.Command{
		Name:      "groups",
		Usage:     "add a registered VM to groups or take it out of them; the daemon converges it at once",
		UsageText: "stork vm groups --data DIR ID [--add GROUP...] [--remove GROUP...] [--json]",
		Flags: []cli.Flag{
			dataFlag(),
			withEnv(stringSliceFlag("add", "put the VM in `GROUP` (repeat)", catStore), "STORK_VM_GROUPS_ADD"),
			withEnv(stringSliceFlag("remove", "take the VM out of `GROUP` (repeat)", catStore), "STORK_VM_GROUPS_REMOVE"),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want exactly one VM ID, got %d arguments", c.NArg())
			}
			req := node.GroupsRequest{Add: c.StringSlice("add"), Remove: c.StringSlice("remove")}
			v, err := node.NewClient(c.String("data")).SetVMGroups(c.Context, c.Args().First(), req)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, v)
			}
			fmt.Fprintf(c.App.Writer, "vm %s is in groups: %s\n", v.ID, listOrNone(v.Groups))
			return nil
		},
	}
}

// groupsList prints a VM's groups for tables.
func groupsList(gs []string) string {
	if len(gs) == 0 {
		return "-"
	}
	return strings.Join(gs, ",")
}
