package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

// verifyReport is what `stork verify --json` prints.
type verifyReport struct {
	Data     string   `json:"data"`
	Problems []string `json:"problems"`
	// Refetch lists the packages --repair marked to be fetched again
	// ("NAME@VERSION").
	Refetch []string `json:"refetch"`
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "re-hash every object and tree in a host store (daemon stopped); --repair quarantines what fails so that the daemon fetches it again",
		UsageText: "stork verify --data DIR [--repair] [--json]",
		Flags: []cli.Flag{
			dataFlag(),
			boolFlag("repair", "quarantine damaged objects and mark their packages (and packages whose trees changed) to be fetched again when the daemon next starts", catStore),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			data := c.String("data")
			rep := verifyReport{Data: data, Problems: []string{}, Refetch: []string{}}
			var err error
			if c.Bool("repair") {
				rep.Problems, rep.Refetch, err = node.RepairStore(c.Context, data)
			} else {
				rep.Problems, err = node.VerifyStore(c.Context, data)
			}
			if c.Bool("json") && err == nil {
				if perr := printJSON(c, rep); perr != nil {
					return perr
				}
			} else {
				for _, p := range rep.Problems {
					fmt.Fprintln(c.App.ErrWriter, p)
				}
			}
			if err != nil {
				return err
			}
			return verifyOutcome(c, rep)
		},
	}
}

// verifyOutcome prints the summary line and fails when problems remain
// that --repair did not take care of.
func verifyOutcome(c *cli.Context, rep verifyReport) error {
	n := len(rep.Problems)
	switch {
	case c.Bool("repair") && len(rep.Refetch) == 0:
		if !c.Bool("json") {
			fmt.Fprintf(c.App.Writer, "store %s verified: nothing to repair\n", rep.Data)
		}
	case c.Bool("repair"):
		if !c.Bool("json") {
			fmt.Fprintf(c.App.Writer, "store %s: %d problems; %d packages will be fetched again when the daemon starts: %s\n",
				rep.Data, n, len(rep.Refetch), strings.Join(rep.Refetch, ", "))
		}
	case n > 0:
		return fmt.Errorf("store %s: %d problems (first: %s); stork verify --repair quarantines them for the daemon to fetch again", rep.Data, n, rep.Problems[0])
	case !c.Bool("json"):
		fmt.Fprintf(c.App.Writer, "store %s verified\n", rep.Data)
	}
	return nil
}
