package main

import (
	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func groupShowCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "print a group's signed policy",
		UsageText: "stork group show --dir REPO GROUP [--json]",
		Flags:     []cli.Flag{repoDirFlag(), jsonFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want exactly one GROUP, got %d arguments", c.NArg())
			}
			repo, err := metadata.OpenRepo(c.String("dir"), nil, nil)
			if err != nil {
				return err
			}
			gi, err := repo.Group(c.Args().First())
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, gi)
			}
			return writeTable(c.App.Writer, []metadata.GroupInfo{*gi}, "GROUP\tROLE\tVERSION\tREQUIRE\tFORBID", groupRow)
		},
	}
}
