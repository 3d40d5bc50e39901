package main

import (
	"fmt"
	"slices"
	"strings"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func repoRotateCommand() *cli.Command {
	return &cli.Command{
		Name:  "rotate",
		Usage: "replace the keys of top-level roles: writes root version N+1, which clients follow from the root they trust",
		UsageText: "stork repo rotate --dir REPO --key FILE... --role ROLE=KEYFILE [--role ROLE=KEYFILE ...] [--threshold ROLE=N ...]\n" +
			"ROLE is root, targets, snapshot or timestamp; KEYFILE a public (.pub) or private key file; repeat a role for several keys",
		Description: "--key: the current root keys (a threshold of them), the new root keys if root changes, and the keys of every role re-signed: " +
			"snapshot and timestamp always, targets if it changes",
		Flags: []cli.Flag{
			repoDirFlag(),
			keyFlag(),
			&cli.StringSliceFlag{Name: "role", Usage: "new key of a role as `ROLE=KEYFILE` (repeat)", Category: catSigning, EnvVars: []string{"STORK_ROTATE_ROLE"}, Required: true},
			withEnv(stringSliceFlag("threshold", "signatures a role needs as `ROLE=N` (default: unchanged)", catSigning), "STORK_ROTATE_THRESHOLD"),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			var u metadata.RootUpdate
			keys := map[string]*[]*tufmeta.Key{
				"root": &u.RootKeys, "targets": &u.TargetsKeys, "snapshot": &u.SnapshotKeys, "timestamp": &u.TimestampKeys,
			}
			thresholds := map[string]*int{
				"root": &u.RootThreshold, "targets": &u.TargetsThreshold, "snapshot": &u.SnapshotThreshold, "timestamp": &u.TimestampThreshold,
			}
			for _, kv := range c.StringSlice("role") {
				role, file, ok := strings.Cut(kv, "=")
				dst := keys[role]
				if !ok || dst == nil {
					return usageError(c, "--role %q: want ROLE=KEYFILE, ROLE one of root, targets, snapshot, timestamp", kv)
				}
				k, err := loadPublicKey(file)
				if err != nil {
					return err
				}
				*dst = append(*dst, k)
			}
			for _, kv := range c.StringSlice("threshold") {
				role, n, ok := strings.Cut(kv, "=")
				dst := thresholds[role]
				var v int
				if _, err := fmt.Sscan(n, &v); !ok || dst == nil || err != nil || v < 1 {
					return usageError(c, "--threshold %q: want ROLE=N, N at least 1", kv)
				}
				*dst = v
			}
			signers, err := loadKeys(c.StringSlice("key"))
			if err != nil {
				return err
			}
			repo, err := metadata.OpenRepo(c.String("dir"), signers, nil)
			if err != nil {
				return err
			}
			if err := repo.UpdateRoot(c.Context, u); err != nil {
				return err
			}
			var roles []string
			for _, kv := range c.StringSlice("role") {
				r, _, _ := strings.Cut(kv, "=")
				if !slices.Contains(roles, r) {
					roles = append(roles, r)
				}
			}
			if c.Bool("json") {
				return printJSON(c, map[string]any{"dir": c.String("dir"), "rotated": roles})
			}
			fmt.Fprintf(c.App.Writer, "repository %s: new keys for %s in a new root version\n", c.String("dir"), strings.Join(roles, ", "))
			return nil
		},
	}
}
