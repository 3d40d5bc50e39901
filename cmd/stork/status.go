package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the daemon's peers, byte counters and packages; with the daemon stopped, the packages, VMs and views read from the data directory",
		UsageText: "stork status --data DIR [--json]",
		Flags:     []cli.Flag{dataFlag(), jsonFlag()},
		Action: func(c *cli.Context) error {
			st, err := hostStatus(c)
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
			fmt.Fprintf(c.App.Writer, "peer %s, %d peers, from peers %d B, from origin %d B, uploaded %d B, %d packages, %d VMs, %d views (%d broken)\n",
				orDash(st.PeerID), st.Peers, st.BytesFromPeers, st.BytesFromOrigin, st.BytesUploaded, len(st.Packages), len(st.VMs), len(st.Views), broken)
			return nil
		},
	}
}
