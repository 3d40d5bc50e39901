package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func vmRemoveCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "unregister a VM and remove its views",
		UsageText: "stork vm remove --data DIR ID [--json]",
		Flags:     []cli.Flag{dataFlag(), jsonFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want exactly one VM ID, got %d arguments", c.NArg())
			}
			id := c.Args().First()
			if err := node.NewClient(c.String("data")).RemoveVM(c.Context, id); err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, map[string]string{"removed": id})
			}
			fmt.Fprintf(c.App.Writer, "vm %s removed, with its views\n", id)
			return nil
		},
	}
}
