package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func repoInitCommand() *cli.Command {
	return &cli.Command{
		Name:        "init",
		Usage:       "create a new signed repository (root, targets, snapshot, timestamp)",
		UsageText:   "stork repo init --dir REPO --key FILE [--key FILE ...] [--expires ROLE=DURATION ...]",
		Description: "every top-level role (root, targets, snapshot, timestamp) is signed with each --key; --root-key adds root keys",
		Flags: []cli.Flag{
			repoDirFlag(),
			keyFlag(),
			stringSliceFlag("root-key", "extra root key `FILE` (repeat); with --root-threshold for m-of-n root signing", catSigning),
			intFlag("root-threshold", "signatures needed on root", catSigning, 1),
			intFlag("targets-threshold", "signatures needed on targets", catSigning, 1),
			stringSliceFlag("expires", "expiry per role as `ROLE=DURATION` (root=365d targets=90d snapshot=7d timestamp=1d)", catSigning),
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
			}
			for _, kv := range c.StringSlice("expires") {
				role, val, ok := strings.Cut(kv, "=")
				if !ok {
					return usageError(c, "--expires %q: want ROLE=DURATION", kv)
				}
				d, err := parseDuration(val)
				if err != nil {
					return fmt.Errorf("--expires %s: %w", role, err)
				}
				switch role {
				case "root":
					cfg.RootExpires = d
				case "targets":
					cfg.TargetsExpires = d
				case "snapshot":
					cfg.SnapshotExpires = d
				case "timestamp":
					cfg.TimestampExpires = d
				default:
					return usageError(c, "--expires %q: unknown role %q (root, targets, snapshot, timestamp)", kv, role)
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
