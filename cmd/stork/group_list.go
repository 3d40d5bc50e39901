package main

import (
	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func groupListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list the groups a repository signs policies for",
		UsageText: "stork group list --dir REPO [--json]",
		Flags:     []cli.Flag{repoDirFlag(), jsonFlag()},
		Action: func(c *cli.Context) error {
			repo, err := metadata.OpenRepo(c.String("dir"), nil, nil)
			if err != nil {
				return err
			}
			gs, err := repo.Groups()
			if err != nil {
				return err
			}
			return printTable(c, gs, "GROUP\tROLE\tVERSION\tREQUIRE\tFORBID", groupRow)
		},
	}
}
