package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func repoListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list the packages a repository directory publishes",
		UsageText: "stork repo list --dir REPO [--json]",
		Flags: []cli.Flag{
			repoDirFlag(),
			jsonFlag(),
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
			return printTable(c, pkgs, "NAME\tVERSION\tSCHEME\tSIZE\tMANIFEST\tDEPENDS", func(p metadata.PackageInfo) string {
				// A dependency may hold commas ("libc6>=2.34, <<2.40"):
				// entries are separated by "; ".
				return fmt.Sprintf("%s\t%s\t%s\t%d\t%s\t%s", p.Name, p.Version, p.Scheme, p.Size, p.ManifestCID, strings.Join(p.Depends, "; "))
			})
		},
	}
}
