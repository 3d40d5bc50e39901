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
		UsageText: "stork repo prune --dir REPO [--keep-snapshots N] [--keep DURATION] [--dry-run] [--json]",
		Description: "Keeps every root version, the current snapshot and the --keep-snapshots newest snapshots it\n" +
			"superseded, and the role versions they name. Keeps the manifests and chunks the targets of\n" +
			"those role versions name, and for --keep after the prune that deleted the last metadata naming\n" +
			"them (recorded in REPO/stork-retired.json): a client may still be downloading them.",
		Flags: []cli.Flag{
			repoDirFlag(),
			&cli.IntFlag{Name: "keep-snapshots", Usage: "keep the `N` newest superseded snapshots and the role versions they name (0: the current snapshot only)",
				Category: catRepo, EnvVars: []string{"STORK_PRUNE_KEEP_SNAPSHOTS"}, Value: metadata.DefaultPruneKeepSnapshots},
			&cli.StringFlag{Name: "keep", Usage: "keep manifests and chunks for `DURATION` after the last kept metadata stopped naming them (0: delete them at once)",
				Category: catRepo, EnvVars: []string{"STORK_PRUNE_KEEP"}, Value: metadata.DefaultPruneKeep.String()},
			boolFlag("dry-run", "report what would be deleted, delete nothing", catRepo),
			jsonFlag(),
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
			snaps := c.Int("keep-snapshots")
			if snaps < 0 {
				return fmt.Errorf("--keep-snapshots %d: must not be negative", snaps)
			}
			repo, err := metadata.OpenRepo(c.String("dir"), nil, nil)
			if err != nil {
				return err
			}
			res, err := repo.Prune(c.Context, metadata.PruneOptions{KeepSnapshots: snaps, Keep: keep, DryRun: c.Bool("dry-run")})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, map[string]any{
					"snapshots_kept": res.Snapshots, "metadata_deleted": res.Metadata, "manifests_deleted": res.Manifests,
					"chunks_deleted": res.Chunks, "temporary_deleted": res.Temporary, "bytes_deleted": res.Bytes,
					"metadata_bytes_kept": res.KeptBytes, "manifests_retired": res.Retired, "manifests_in_window": res.InWindow,
					"dry_run": c.Bool("dry-run"),
				})
			}
			verb := "deleted"
			if c.Bool("dry-run") {
				verb = "would delete"
			}
			fmt.Fprintf(c.App.Writer, "%s %d metadata files, %d manifests, %d chunks, %d temporary files (%d bytes); kept %d snapshots, %d bytes of metadata, %d manifests no kept metadata names (%d retired now)\n",
				verb, res.Metadata, res.Manifests, res.Chunks, res.Temporary, res.Bytes, res.Snapshots, res.KeptBytes, res.InWindow, res.Retired)
			return nil
		},
	}
}
