package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func repoDelegateCommand() *cli.Command {
	return &cli.Command{
		Name:  "delegate",
		Usage: "hand package names matching a pattern, or groups' policies, to a publisher's or a group maintainer's key",
		UsageText: "stork repo delegate --dir REPO --key FILE --role NAME --pattern 'alice-*' --publisher KEYFILE\n" +
			"stork repo delegate --dir REPO --key FILE --group GROUP [--group GROUP...] [--role NAME] --publisher KEYFILE",
		Description: "--key: the targets, snapshot and timestamp keys; the publisher then signs with its own key and the snapshot and timestamp keys " +
			"(stork repo add --key PUBLISHER.key --key repo.key; stork group set --key MAINTAINER.key --key repo.key).\n" +
			"--group alone makes the role group-GROUP; a group maintainer's key signs those groups' policies and nothing else.",
		Flags: []cli.Flag{
			repoDirFlag(),
			keyFlag(),
			stringFlag("role", "delegated role `NAME` (e.g. the publisher's name; default group-GROUP for one --group)", catRepo, false),
			&cli.StringSliceFlag{Name: "pattern", Usage: "package name `PATTERN` the publisher may sign, shell-style (repeat)", Category: catRepo, EnvVars: env("pattern")},
			withEnv(stringSliceFlag("group", "group name `PATTERN` whose policies the key may sign, shell-style (repeat)", catRepo), "STORK_DELEGATE_GROUP"),
			&cli.StringSliceFlag{Name: "publisher", Usage: "publisher key `FILE` (public or private key file; repeat)", Category: catSigning, EnvVars: env("publisher"), Required: true},
			intFlag("threshold", "publisher signatures needed", catSigning, 1),
			withEnv(stringFlag("expires", "delegated metadata lifetime `DURATION` (default 90d)", catSigning, false), "STORK_DELEGATE_EXPIRES"),
		},
		Action: func(c *cli.Context) error {
			keys, err := loadKeys(c.StringSlice("key"))
			if err != nil {
				return err
			}
			opts := metadata.DelegateOptions{Role: c.String("role"), Threshold: c.Int("threshold"), Groups: c.StringSlice("group")}
			if len(opts.Groups) == 0 && len(c.StringSlice("pattern")) == 0 {
				return usageError(c, "want --pattern or --group")
			}
			if opts.Role == "" {
				if len(opts.Groups) != 1 || len(c.StringSlice("pattern")) > 0 {
					return usageError(c, "--role is required unless a single --group names the role")
				}
				opts.Role = metadata.GroupRole(opts.Groups[0])
			}
			for _, g := range opts.Groups {
				if strings.Contains(g, "/") {
					return usageError(c, "--group %q: a group name pattern has no '/'", g)
				}
			}
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
			what := c.StringSlice("pattern")
			for _, g := range opts.Groups {
				what = append(what, "group "+g)
			}
			fmt.Fprintf(c.App.Writer, "delegated %s to role %s\n", strings.Join(what, ", "), opts.Role)
			return nil
		},
	}
}
