package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

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
