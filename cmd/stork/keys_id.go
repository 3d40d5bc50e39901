package main

import (
	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func keysIDCommand() *cli.Command {
	return &cli.Command{
		Name:      "id",
		Usage:     "print the key ID of each key file",
		UsageText: "stork keys id --key FILE [--key FILE ...]",
		Flags:     []cli.Flag{keyFlag(), jsonFlag()},
		Action: func(c *cli.Context) error {
			type keyID struct {
				Key string `json:"key"`
				ID  string `json:"id"`
			}
			var ids []keyID
			for _, p := range c.StringSlice("key") {
				k, err := metadata.LoadKey(p)
				if err != nil {
					return err
				}
				ids = append(ids, keyID{p, k.ID()})
			}
			return printLines(c, ids, func(k keyID) string { return k.ID })
		},
	}
}
