package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "re-hash every object and tree in a host store (daemon stopped); --repair quarantines what fails so that the daemon fetches it again",
		UsageText: "stork verify --data DIR [--repair]",
		Flags: []cli.Flag{
			dataFlag(),
			boolFlag("repair", "quarantine damaged objects and mark their packages (and packages whose trees changed) to be fetched again when the daemon next starts", catStore),
		},
		Action: func(c *cli.Context) error {
			data := c.String("data")
			if c.Bool("repair") {
				problems, marked, err := node.RepairStore(c.Context, data)
				for _, p := range problems {
					fmt.Fprintln(c.App.ErrWriter, p)
				}
				if err != nil {
					return err
				}
				if len(marked) == 0 {
					fmt.Fprintf(c.App.Writer, "store %s verified: nothing to repair\n", data)
					return nil
				}
				fmt.Fprintf(c.App.Writer, "store %s: %d problems; %d packages will be fetched again when the daemon starts: %s\n",
					data, len(problems), len(marked), strings.Join(marked, ", "))
				return nil
			}
			problems, err := node.VerifyStore(c.Context, data)
			if err != nil {
				return err
			}
			for _, p := range problems {
				fmt.Fprintln(c.App.ErrWriter, p)
			}
			if len(problems) > 0 {
				return fmt.Errorf("store %s: %d problems (first: %s); stork verify --repair quarantines them for the daemon to fetch again", data, len(problems), problems[0])
			}
			fmt.Fprintf(c.App.Writer, "store %s verified\n", data)
			return nil
		},
	}
}
