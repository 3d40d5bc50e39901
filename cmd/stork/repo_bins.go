package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func binsFlag(value int) cli.Flag {
	return intFlag("bins", "spread package targets over `N` hash bins (a power of two; 0: none, every target in targets.json)", catRepo, value)
}

func repoBinsCommand() *cli.Command {
	return &cli.Command{
		Name:      "bins",
		Usage:     "move the package targets of a repository without hash bins into N bins (signs each role once)",
		UsageText: "stork repo bins --dir REPO --key FILE [--bins N]",
		Description: "--key: the targets, snapshot and timestamp keys.\n" +
			"Clients older than hash bins cannot resolve packages of the repository afterwards\n" +
			"(they fail closed): upgrade clients first.",
		Flags: []cli.Flag{
			repoDirFlag(),
			keyFlag(),
			binsFlag(metadata.DefaultBins),
		},
		Action: func(c *cli.Context) error {
			keys, err := loadKeys(c.StringSlice("key"))
			if err != nil {
				return err
			}
			repo, err := metadata.OpenRepo(c.String("dir"), keys, nil)
			if err != nil {
				return err
			}
			if err := repo.UseBins(c.Context, c.Int("bins")); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "repository %s now spreads package targets over %d bins\n", c.String("dir"), c.Int("bins"))
			return nil
		},
	}
}
