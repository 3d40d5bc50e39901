package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func peersCommand() *cli.Command {
	return &cli.Command{
		Name:      "peers",
		Usage:     "list the daemon's connected peers with their latency",
		UsageText: "stork peers --data DIR [--json]",
		Flags:     []cli.Flag{dataFlag(), jsonFlag()},
		Action: func(c *cli.Context) error {
			peers, err := node.NewClient(c.String("data")).Peers(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, peers)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tLATENCY\tADDRS")
			for _, p := range peers {
				lat := "-"
				if p.Latency > 0 {
					lat = p.Latency.Round(10 * time.Microsecond).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", p.ID, lat, strings.Join(p.Addrs, ","))
			}
			return tw.Flush()
		},
	}
}
