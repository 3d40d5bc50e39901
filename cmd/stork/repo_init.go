package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func repoInitCommand() *cli.Command {
	return &cli.Command{
		Name:        "init",
		Usage:       "create a new signed repository (root, targets, snapshot, timestamp)",
		UsageText:   "stork repo init --dir REPO --key FILE [--key FILE ...] [--expires ROLE=DURATION ...] [--bins N]",
		Description: "every top-level role (root, targets, snapshot, timestamp) is signed with each --key; --root-key adds root keys",
		Flags: []cli.Flag{
			repoDirFlag(),
			keyFlag(),
			stringSliceFlag("root-key", "extra root key `FILE` (repeat); with --root-threshold for m-of-n root signing", catSigning),
			intFlag("root-threshold", "signatures needed on root", catSigning, 1),
			intFlag("targets-threshold", "signatures needed on targets", catSigning, 1),
			expiresFlag(),
			binsFlag(metadata.DefaultBins),
		},
		Action: func(c *cli.Context) error {
			keys, err := loadKeys(c.StringSlice("key"))
			if err != nil {
				return err
			}
			rootExtra, err := loadKeys(c.StringSlice("root-key"))
			if err != nil {
				return err
			}
			cfg := metadata.RepoConfig{
				RootKeys:         append(append([]*metadata.PrivateKey{}, keys...), rootExtra...),
				TargetsKeys:      keys,
				SnapshotKeys:     keys,
				TimestampKeys:    keys,
				RootThreshold:    c.Int("root-threshold"),
				TargetsThreshold: c.Int("targets-threshold"),
				Bins:             c.Int("bins"),
			}
			lifetimes, err := parseExpires(c)
			if err != nil {
				return err
			}
			for _, l := range lifetimes {
				switch l.role {
				case "root":
					cfg.RootExpires = l.d
				case "targets":
					cfg.TargetsExpires = l.d
				case "snapshot":
					cfg.SnapshotExpires = l.d
				case "timestamp":
					cfg.TimestampExpires = l.d
				}
			}
			if _, err := metadata.InitRepo(c.String("dir"), cfg); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "repository initialised in %s\n", c.String("dir"))
			return nil
		},
	}
}
