package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
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
			repoRotateCommand(),
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

// keyFlag is --key: signing key files; each command's description says
// which roles' keys it needs.
func keyFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "key", Usage: "signing key `FILE` (repeat for several keys)", Category: catSigning, EnvVars: env("key"), Required: true}
}

// expiresFlag is --expires ROLE=DURATION: how long the metadata the
// repository signs for a top-level role stays valid (repo init sets it,
// repo refresh changes it from now on; both record it in the repository).
func expiresFlag() cli.Flag {
	return stringSliceFlag("expires", "lifetime of a top-level role's metadata as `ROLE=DURATION` (repeat; root, targets, snapshot, timestamp; "+
		"defaults root=365d targets=90d snapshot=7d timestamp=1d; a timestamp of 12h lets hosts go on from peers 12h with the origin gone)", catSigning)
}

// roleLifetime is one --expires value.
type roleLifetime struct {
	role string
	d    time.Duration
}

// parseExpires reads --expires, in the order given.
func parseExpires(c *cli.Context) ([]roleLifetime, error) {
	var out []roleLifetime
	for _, kv := range c.StringSlice("expires") {
		role, val, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, usageError(c, "--expires %q: want ROLE=DURATION", kv)
		}
		switch role {
		case "root", "targets", "snapshot", "timestamp":
		default:
			return nil, usageError(c, "--expires %q: unknown role %q (root, targets, snapshot, timestamp)", kv, role)
		}
		d, err := parseDuration(val)
		if err != nil {
			return nil, fmt.Errorf("--expires %s: %w", role, err)
		}
		out = append(out, roleLifetime{role, d})
	}
	return out, nil
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
