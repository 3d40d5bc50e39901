package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func groupSetCommand() *cli.Command {
	return &cli.Command{
		Name:      "set",
		Usage:     "change a group's policy: the packages its VMs must have (--add) and must not have (--remove)",
		UsageText: "stork group set --dir REPO --key FILE GROUP [--add NAME[@CONSTRAINT]...] [--remove NAME...] [--drop NAME...] [--notify DATA] [--json]",
		Description: "--key: the key of the group's delegated role (stork repo delegate --group GROUP), or the targets key for a group\n" +
			"no delegation covers, with the snapshot and timestamp keys. Hosts whose VMs are in the group converge to the\n" +
			"new policy at their next poll, or at once when a daemon is told (--notify) and announces it to its peers.",
		Flags: []cli.Flag{
			repoDirFlag(),
			keyFlag(),
			stringSliceFlag("add", "require `REF` (NAME, NAME@VERSION or NAME@CONSTRAINT such as 'nginx@>=2.1 <3'; repeat)", catRepo),
			stringSliceFlag("remove", "forbid package `NAME`: the group's VMs must not have it (repeat)", catRepo),
			stringSliceFlag("drop", "say nothing more of package `NAME` (neither required nor forbidden; repeat)", catRepo),
			stringFlag("notify", "data `DIR` of a daemon to hand the new metadata to at once (it converges and announces it to its peers)", catStore, false),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want exactly one GROUP, got %d arguments", c.NArg())
			}
			ch := metadata.GroupChange{Add: c.StringSlice("add"), Remove: c.StringSlice("remove"), Drop: c.StringSlice("drop")}
			if len(ch.Add)+len(ch.Remove)+len(ch.Drop) == 0 {
				return usageError(c, "nothing to change: give --add, --remove or --drop")
			}
			keys, err := loadKeys(c.StringSlice("key"))
			if err != nil {
				return err
			}
			repo, err := metadata.OpenRepo(c.String("dir"), keys, nil)
			if err != nil {
				return err
			}
			res, err := repo.SetGroup(c.Context, c.Args().First(), ch)
			if err != nil {
				return err
			}
			if dir := c.String("notify"); dir != "" && !res.Unchanged {
				if err := notifyDaemon(c, dir, c.String("dir")); err != nil {
					return err
				}
			}
			if c.Bool("json") {
				return printJSON(c, res)
			}
			what := "signed"
			if res.Unchanged {
				what = "unchanged"
			}
			fmt.Fprintf(c.App.Writer, "group %s %s by role %s (version %d): require %s; forbid %s\n", res.Name, what, res.Role, res.Version,
				listOrNone(res.Policy.Require), listOrNone(res.Policy.Forbid))
			if len(res.Missing) > 0 {
				fmt.Fprintf(c.App.ErrWriter, "warning: no published package is called %s\n", strings.Join(res.Missing, ", "))
			}
			return nil
		},
	}
}
