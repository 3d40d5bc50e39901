package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/node"
)

func groupCommand() *cli.Command {
	return &cli.Command{
		Name:  "group",
		Usage: "declare what the VMs of a group must and must not have (signed group policies)",
		Subcommands: []*cli.Command{
			groupSetCommand(),
			groupShowCommand(),
			groupListCommand(),
		},
	}
}

// notifyDaemon hands the repository's new timestamp to the daemon on
// dataDir, which checks it as it checks an announcement from a peer.
func notifyDaemon(c *cli.Context, dataDir, repoDir string) error {
	ts, err := os.ReadFile(filepath.Join(repoDir, metadata.MetadataDir, "timestamp.json"))
	if err != nil {
		return fmt.Errorf("notify daemon: %w", err)
	}
	if err := node.NewClient(dataDir).Announce(c.Context, ts); err != nil {
		return fmt.Errorf("notify daemon on %s: %w", dataDir, err)
	}
	return nil
}

func listOrNone(ss []string) string {
	if len(ss) == 0 {
		return "nothing"
	}
	return strings.Join(ss, ", ")
}

// groupRow is one group of a table (GROUP ROLE VERSION REQUIRE FORBID).
// A constraint may hold commas: entries are separated by "; ".
func groupRow(g metadata.GroupInfo) string {
	return fmt.Sprintf("%s\t%s\t%d\t%s\t%s", g.Name, g.Role, g.Version, strings.Join(g.Policy.Require, "; "), strings.Join(g.Policy.Forbid, "; "))
}
