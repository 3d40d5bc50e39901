package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer"
)

func repoCommand() *cli.Command {
	return &cli.Command{
		Name:  "repo",
		Usage: "publish packages into a signed repository and serve it",
		Subcommands: []*cli.Command{
			repoInitCommand(),
			repoAddCommand(),
			repoRefreshCommand(),
			repoDelegateCommand(),
			repoListCommand(),
			repoServeCommand(),
			repoBinsCommand(),
			repoPruneCommand(),
		},
	}
}

func repoDirFlag() cli.Flag {
	return stringFlag("dir", "repository `DIR`", catRepo, true)
}

func keyFlag(usage string) cli.Flag {
	return &cli.StringSliceFlag{Name: "key", Usage: usage, Category: catSigning, EnvVars: env("key"), Required: true}
}

func loadKeys(paths []string) ([]*metadata.PrivateKey, error) {
	var keys []*metadata.PrivateKey
	for _, p := range paths {
		k, err := metadata.LoadKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func repoInitCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a new signed repository (root, targets, snapshot, timestamp)",
		UsageText: "stork repo init --dir REPO --key FILE [--key FILE ...] [--expires ROLE=DURATION ...] [--bins N]",
		Flags: []cli.Flag{
			repoDirFlag(),
			keyFlag("signing key `FILE` for every top-level role (repeat for several keys)"),
			stringSliceFlag("root-key", "extra root key `FILE` (repeat); with --root-threshold for m-of-n root signing", catSigning),
			intFlag("root-threshold", "signatures needed on root", catSigning, 1),
			intFlag("targets-threshold", "signatures needed on targets", catSigning, 1),
			stringSliceFlag("expires", "expiry per role as `ROLE=DURATION` (root=365d targets=90d snapshot=7d timestamp=1d)", catSigning),
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

func repoRefreshCommand() *cli.Command {
	return &cli.Command{
		Name:      "refresh",
		Usage:     "re-sign the timestamp (and snapshot) before they expire",
		UsageText: "stork repo refresh --dir REPO --key FILE [--expires ROLE=DURATION ...]",
		Flags: []cli.Flag{
			repoDirFlag(),
			keyFlag("timestamp (and snapshot) signing key `FILE` (repeat)"),
			stringSliceFlag("expires", "from now on sign ROLE with this lifetime, `ROLE=DURATION` (e.g. timestamp=12h: hosts may go on from peers that long with the origin gone)", catSigning),
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
			for _, kv := range c.StringSlice("expires") {
				role, val, ok := strings.Cut(kv, "=")
				if !ok {
					return usageError(c, "--expires %q: want ROLE=DURATION", kv)
				}
				d, err := parseDuration(val)
				if err != nil {
					return fmt.Errorf("--expires %s: %w", role, err)
				}
				if err := repo.SetLifetime(role, d); err != nil {
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

func repoDelegateCommand() *cli.Command {
	return &cli.Command{
		Name:      "delegate",
		Usage:     "hand package names matching a pattern to a publisher's key",
		UsageText: "stork repo delegate --dir REPO --key FILE --role NAME --pattern 'alice-*' --publisher KEYFILE",
		Flags: []cli.Flag{
			repoDirFlag(),
			keyFlag("targets, snapshot and timestamp signing key `FILE` (repeat)"),
			stringFlag("role", "delegated role `NAME` (e.g. the publisher's name)", catRepo, true),
			&cli.StringSliceFlag{Name: "pattern", Usage: "package name `PATTERN` the publisher may sign, shell-style (repeat)", Category: catRepo, EnvVars: env("pattern"), Required: true},
			&cli.StringSliceFlag{Name: "publisher", Usage: "publisher key `FILE` (public or private key file; repeat)", Category: catSigning, EnvVars: env("publisher"), Required: true},
			intFlag("threshold", "publisher signatures needed", catSigning, 1),
			stringFlag("expires", "delegated metadata lifetime `DURATION` (default 90d)", catSigning, false),
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

func repoListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list the packages a repository directory publishes",
		UsageText: "stork repo list --dir REPO [--json]",
		Flags: []cli.Flag{
			repoDirFlag(),
			boolFlag("json", "print JSON", catOutput),
		},
		Action: func(c *cli.Context) error {
			repo, err := metadata.OpenRepo(c.String("dir"), nil, nil)
			if err != nil {
				return err
			}
			pkgs, err := repo.Packages()
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, pkgs)
			}
			return printPackages(c, pkgs)
		},
	}
}

func printPackages(c *cli.Context, pkgs []metadata.PackageInfo) error {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tSCHEME\tSIZE\tMANIFEST\tDEPENDS")
	for _, p := range pkgs {
		// A dependency may hold commas ("libc6>=2.34, <<2.40"): entries are
		// separated by "; ".
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", p.Name, p.Version, p.Scheme, p.Size, p.ManifestCID, strings.Join(p.Depends, "; "))
	}
	return tw.Flush()
}

func repoServeCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve a repository directory over HTTP (read-only, static)",
		UsageText: "stork repo serve --dir REPO --listen HOST:PORT",
		Flags: []cli.Flag{
			repoDirFlag(),
			&cli.StringFlag{Name: "listen", Usage: "`HOST:PORT` to listen on", Category: catNetwork, EnvVars: env("listen"), Value: "127.0.0.1:8080"},
			stringFlag("rate", "cap what the server sends at `RATE` bytes/s over all requests (e.g. 100M); default unlimited", catLimits, false),
		},
		Action: func(c *cli.Context) error {
			var limit int64
			if s := c.String("rate"); s != "" {
				n, err := parseSize(s)
				if err != nil {
					return fmt.Errorf("--rate: %w", err)
				}
				limit = n
			}
			srv, err := transfer.NewServer(transfer.ServerConfig{Dir: c.String("dir"), Logger: newLogger(c), Rate: limit})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", c.String("listen"))
			if err != nil {
				return fmt.Errorf("listen on %s: %w", c.String("listen"), err)
			}
			fmt.Fprintf(c.App.Writer, "serving %s on http://%s\n", c.String("dir"), ln.Addr())
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return srv.Run(ctx, ln)
		},
	}
}

func printJSON(c *cli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// withTimeout is a helper for actions that must not hang forever.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// loadPublicKey reads a public key file (or a private key file, whose
// private half is ignored).
func loadPublicKey(path string) (*tufmeta.Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	k, err := metadata.ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return k, nil
}
