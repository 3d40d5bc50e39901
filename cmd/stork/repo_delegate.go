package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func repoDelegateCommand() *cli.Command {
	return &cli.Command{
		Name:        "delegate",
		Usage:       "hand package names matching a pattern to a publisher's key",
		UsageText:   "stork repo delegate --dir REPO --key FILE --role NAME --pattern 'alice-*' --publisher KEYFILE",
		Description: "--key: the targets, snapshot and timestamp keys; the publisher then signs with its own key and the snapshot and timestamp keys (stork repo add --key PUBLISHER.key --key repo.key)",
		Flags: []cli.Flag{
			repoDirFlag(),
			keyFlag(),
			stringFlag("role", "delegated role `NAME` (e.g. the publisher's name)", catRepo, true),
			&cli.StringSliceFlag{Name: "pattern", Usage: "package name `PATTERN` the publisher may sign, shell-style (repeat)", Category: catRepo, EnvVars: env("pattern"), Required: true},
			&cli.StringSliceFlag{Name: "publisher", Usage: "publisher key `FILE` (public or private key file; repeat)", Category: catSigning, EnvVars: env("publisher"), Required: true},
			intFlag("threshold", "publisher signatures needed", catSigning, 1),
			withEnv(stringFlag("expires", "delegated metadata lifetime `DURATION` (default 90d)", catSigning, false), "STORK_DELEGATE_EXPIRES"),
		},
		Action: func(c *cli.Context) error {
			keys, err := loadKeys(c.StringSlice("key"))
			if err != nil {
				return err
			}
			opts := metadata.DelegateOptions{Role: c.String("role"), Threshold: c.Int("threshold")}
			for _, p := range c.StringSlice("pattern") {
				if strings.Contains(p, "/") {
					return usageError(c, "--pattern %q: a package name pattern has no '/'", p)
				}
				opts.Patterns = append(opts.Patterns, "packages/"+p+"/*")
			}
			for _, f := range c.StringSlice("publisher") {
				k, err := loadPublicKey(f)
				if err != nil {
					return err
				}
				opts.Keys = append(opts.Keys, k)
			}
			if s := c.String("expires"); s != "" {
				if opts.Expires, err = parseDuration(s); err != nil {
					return fmt.Errorf("--expires: %w", err)
				}
			}
			repo, err := metadata.OpenRepo(c.String("dir"), keys, nil)
			if err != nil {
				return err
			}
			if err := repo.Delegate(c.Context, opts); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "delegated %s to role %s\n", strings.Join(c.StringSlice("pattern"), ", "), opts.Role)
			return nil
		},
	}
}
