package main

import (
	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:      "gc",
		Usage:     "remove objects and trees that no package or VM install references",
		UsageText: "stork gc --data DIR [--partial]",
		Flags: []cli.Flag{
			dataFlag(),
			boolFlag("partial", "also drop unfinished downloads (failed, or interrupted by a restart) that no VM uses and no request waits for, freeing their partial files; a later request starts them over", catStore),
		},
		Action: func(c *cli.Context) error {
			res, err := node.NewClient(c.String("data")).GCWith(c.Context, node.GCRequest{Partial: c.Bool("partial")})
			if err != nil {
				return err
			}
			return printJSON(c, res)
		},
	}
}
