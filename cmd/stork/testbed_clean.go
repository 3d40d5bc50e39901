package main

import (
	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/cmd/stork/internal/testbed"
)

func testbedCleanCommand() *cli.Command {
	return &cli.Command{
		Name:  "clean",
		Usage: "delete the network namespaces of testbed runs whose process is gone",
		Flags: []cli.Flag{
			boolFlag("all", "also those of live runs", catTestbed),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			gone, err := testbed.Clean(c.Context, c.Bool("all"))
			if gone == nil {
				gone = []string{} // JSON: [], not null
			}
			if perr := printLines(c, gone, func(ns string) string { return "deleted " + ns }); err == nil {
				err = perr
			}
			return err
		},
	}
}
