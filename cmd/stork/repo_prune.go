package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func repoPruneCommand() *cli.Command {
	return &cli.Command{
		Name:      "prune",
		Usage:     "delete old metadata versions, manifests and chunks that no client can still need",
		UsageText: "stork repo prune --dir REPO [--keep DURATION] [--dry-run] [--json]",
		Description: "Keeps the current snapshot, every snapshot replaced less than --keep ago and what they\n" +
			"name (role versions, and the manifests and chunks of their targets), and every root version.",
		Flags: []cli.Flag{
			repoDirFlag(),
			&cli.StringFlag{Name: "keep", Usage: "keep snapshots replaced less than `DURATION` ago, and what they name (0: the current one only)",
				Category: catRepo, EnvVars: env("keep"), Value: metadata.DefaultPruneKeep.String()},
			boolFlag("dry-run", "report what would be deleted, delete nothing", catRepo),
			boolFlag("json", "print the result as JSON", catOutput),
		},
		Action: func(c *cli.Context) error {
			var keep time.Duration
			if s := c.String("keep"); s != "0" {
				d, err := parseDuration(s)
				if err != nil {
					return fmt.Errorf("--keep: %w", err)
				}
				keep = d
			}
			repo, err := metadata.OpenRepo(c.String("dir"), nil, nil)
			if err != nil {
				return err
			}
			res, err := repo.Prune(c.Context, metadata.PruneOptions{Keep: keep, DryRun: c.Bool("dry-run")})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, map[string]any{
					"snapshots_kept": res.Snapshots, "metadata_deleted": res.Metadata, "manifests_deleted": res.Manifests,
					"chunks_deleted": res.Chunks, "temporary_deleted": res.Temporary, "bytes_deleted": res.Bytes,
					"metadata_bytes_kept": res.KeptBytes, "dry_run": c.Bool("dry-run"),
				})
			}
			verb := "deleted"
			if c.Bool("dry-run") {
				verb = "would delete"
			}
			fmt.Fprintf(c.App.Writer, "%s %d metadata files, %d manifests, %d chunks, %d temporary files (%d bytes); kept %d snapshots, %d bytes of metadata\n",
				verb, res.Metadata, res.Manifests, res.Chunks, res.Temporary, res.Bytes, res.Snapshots, res.KeptBytes)
			return nil
		},
	}
}
