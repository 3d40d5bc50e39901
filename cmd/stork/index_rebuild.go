package main

import (
	"fmt"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func indexRebuildCommand() *cli.Command {
	return &cli.Command{
		Name:      "rebuild",
		Usage:     "rebuild a lost or damaged store index from the manifests, trees and objects on disk (daemon stopped)",
		UsageText: "stork index rebuild --data DIR [--repo URL] [--json]",
		Flags: []cli.Flag{
			dataFlag(),
			lookupOption("repo.url").flag(),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			rep, err := node.RebuildIndex(ctx, c.String("data"), node.RebuildOptions{RepoURL: c.String("repo"), Logger: newLogger(c)})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, rep)
			}
			printRebuild(c, rep)
			return nil
		},
	}
}

func printRebuild(c *cli.Context, rep *node.RebuildReport) {
	w := c.App.Writer
	for _, p := range rep.Packages {
		fmt.Fprintf(w, "package %s\n", p)
	}
	for _, in := range rep.Installs {
		fmt.Fprintf(w, "install %s\n", in)
	}
	for _, d := range rep.Damaged {
		fmt.Fprintf(w, "damaged (quarantined; fetched again by the daemon): %s\n", d)
	}
	for _, l := range rep.LostTrees {
		fmt.Fprintf(w, "tree with no manifest or name (moved, kept): %s\n", l)
	}
	for _, u := range rep.Unattributed {
		fmt.Fprintf(w, "mounted tree no registered VM explains (package kept): %s\n", u)
	}
	fmt.Fprintf(w, "index rebuilt: %d package names, %d objects verified, %d damaged, %d missing, %d installs recovered; every package is kept (stork gc leaves it) until removed\n",
		len(rep.Packages), rep.Objects, len(rep.Damaged), rep.Missing, len(rep.Installs))
	if rep.OldIndex != "" {
		fmt.Fprintf(w, "the old index is in %s\n", rep.OldIndex)
	}
}
