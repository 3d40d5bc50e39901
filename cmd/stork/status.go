package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the daemon's peers, byte counters and packages; with the daemon stopped, the packages, VMs and views read from the data directory",
		UsageText: "stork status --data DIR [--json] [--wait DURATION]",
		Flags: []cli.Flag{dataFlag(), jsonFlag(),
			withEnv(stringFlag("wait", "wait up to `DURATION` for the daemon to answer (after starting it), instead of reading a stopped daemon's directory", catOutput, false), "STORK_STATUS_WAIT"),
		},
		Action: func(c *cli.Context) error {
			var st *node.Status
			var err error
			if w := c.String("wait"); w != "" {
				d, perr := parseDuration(w)
				if perr != nil {
					return fmt.Errorf("--wait: %w", perr)
				}
				st, err = waitStatus(c, d)
			} else {
				st, err = hostStatus(c)
			}
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, st)
			}
			broken := 0
			for _, v := range st.Views {
				if v.State != "ok" {
					broken++
				}
			}
			if st.Offline {
				fmt.Fprintf(c.App.Writer, "daemon stopped (read from %s): %d packages, %d VMs, %d views (%d broken)\n",
					st.DataDir, len(st.Packages), len(st.VMs), len(st.Views), broken)
				return nil
			}
			fmt.Fprintf(c.App.Writer, "peer %s, %d peers, from peers %d B, from origin %d B, uploaded %d B, %d packages (%d downloading), %d VMs, %d views (%d broken), metadata v%d %s\n",
				orDash(st.PeerID), st.Peers, st.BytesFromPeers, st.BytesFromOrigin, st.BytesUploaded, len(st.Packages), len(st.Downloads),
				len(st.VMs), len(st.Views), broken, st.Metadata.Version, refreshedAgo(st.Metadata.Refreshed, time.Now()))
			printConverge(c, st.Converge)
			if st.Site != "" {
				local := 0
				for _, p := range st.SitePeers {
					if p.Local {
						local++
					}
				}
				fmt.Fprintf(c.App.Writer, "site %s (%s), %d of %d peers seen in it\n", st.Site, st.SiteSource, local, len(st.SitePeers))
			}
			for _, p := range st.Packages {
				if p.WaitingOriginSince != nil {
					fmt.Fprintf(c.App.Writer, "%s@%s: waiting for the origin since %s (%d of %d B)\n",
						p.Name, p.Version, p.WaitingOriginSince.Format(time.RFC3339), p.Have, p.Size)
				}
			}
			return nil
		},
	}
}

// waitStatus asks the daemon for its status until it answers or d passes.
func waitStatus(c *cli.Context, d time.Duration) (*node.Status, error) {
	ctx, cancel := context.WithTimeout(c.Context, d)
	defer cancel()
	cl := node.NewClient(c.String("data"))
	for {
		st, err := cl.Status(ctx)
		if !errors.Is(err, node.ErrNotRunning) || ctx.Err() != nil {
			if err != nil && ctx.Err() != nil {
				return nil, fmt.Errorf("no daemon answered within %s: %w", d, err)
			}
			return st, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// printConverge prints what convergence to the VMs' groups did, when some
// VM has groups.
func printConverge(c *cli.Context, cs node.ConvergeStatus) {
	if len(cs.VMs) == 0 {
		return
	}
	last := "never"
	if !cs.LastConverged.IsZero() {
		last = time.Since(cs.LastConverged).Round(time.Second).String() + " ago"
	}
	fmt.Fprintf(c.App.Writer, "groups: %d VMs, metadata v%d applied, converged %s, %d pending\n", len(cs.VMs), cs.MetadataVersion, last, len(cs.Pending))
	if cs.Error != "" {
		fmt.Fprintf(c.App.Writer, "groups: last pass failed (%d in a row): %s\n", cs.Failures, cs.Error)
	}
}
