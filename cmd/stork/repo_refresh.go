package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func repoRefreshCommand() *cli.Command {
	return &cli.Command{
		Name:      "refresh",
		Usage:     "re-sign the timestamp (and snapshot) before they expire",
		UsageText: "stork repo refresh --dir REPO --key FILE [--expires ROLE=DURATION ...]",
		Description: "--key: the timestamp key (and the snapshot key).\n" +
			"--expires changes a role's lifetime from now on: metadata already signed keeps its expiry until it is signed again.",
		Flags: []cli.Flag{
			repoDirFlag(),
			keyFlag(),
			expiresFlag(),
		},
		Action: func(c *cli.Context) error {
			keys, err := loadKeys(c.StringSlice("key"))
			if err != nil {
				return err
			}
			lifetimes, err := parseExpires(c)
			if err != nil {
				return err
			}
			repo, err := metadata.OpenRepo(c.String("dir"), keys, nil)
			if err != nil {
				return err
			}
			for _, l := range lifetimes {
				if err := repo.SetLifetime(l.role, l.d); err != nil {
					return err
				}
			}
			if err := repo.Refresh(c.Context); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "repository %s refreshed\n", c.String("dir"))
			return nil
		},
	}
}
