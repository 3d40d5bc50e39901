package main

import (
	"fmt"
	"strings"
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
			return printTable(c, peers, "PEER\tLATENCY\tADDRS", func(p node.PeerInfo) string {
				lat := "-"
				if p.Latency > 0 {
					lat = p.Latency.Round(10 * time.Microsecond).String()
				}
				return fmt.Sprintf("%s\t%s\t%s", p.ID, lat, strings.Join(p.Addrs, ","))
			})
		},
	}
}
