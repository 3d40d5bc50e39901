package main

import (
	"fmt"
	"os"

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
