package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func keysIDCommand() *cli.Command {
	return &cli.Command{
		Name:      "id",
		Usage:     "print the key ID of each key file",
		UsageText: "stork keys id --key FILE [--key FILE ...]",
		Flags:     []cli.Flag{keyFlag()},
		Action: func(c *cli.Context) error {
			for _, p := range c.StringSlice("key") {
				k, err := metadata.LoadKey(p)
				if err != nil {
					return err
				}
				fmt.Fprintln(c.App.Writer, k.ID())
			}
			return nil
		},
	}
}
