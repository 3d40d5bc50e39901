package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func keysIDCommand() *cli.Command {
	return &cli.Command{
		Name:      "id",
		Usage:     "print the key ID of a key file",
		UsageText: "stork keys id --key FILE",
		Flags: []cli.Flag{
			stringFlag("key", "key `FILE`", catSigning, true),
		},
		Action: func(c *cli.Context) error {
			k, err := metadata.LoadKey(c.String("key"))
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, k.ID())
			return nil
		},
	}
}
