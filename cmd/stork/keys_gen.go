package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/metadata"
)

func keysGenCommand() *cli.Command {
	return &cli.Command{
		Name:      "gen",
		Usage:     "generate a new ed25519 signing key",
		UsageText: "stork keys gen --out FILE",
		Flags: []cli.Flag{
			withEnv(stringFlag("out", "write the private key to `FILE` (mode 0600; never overwritten)", catSigning, true), "STORK_KEY_OUT"),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			k, err := metadata.GenerateKey()
			if err != nil {
				return err
			}
			if err := k.Save(c.String("out")); err != nil {
				return err
			}
			pub, err := k.MarshalPublic()
			if err != nil {
				return err
			}
			pubPath := c.String("out") + ".pub"
			if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
				return fmt.Errorf("write public key: %w", err)
			}
			if c.Bool("json") {
				return printJSON(c, map[string]string{"id": k.ID(), "key": c.String("out"), "public_key": pubPath})
			}
			fmt.Fprintf(c.App.Writer, "key %s written to %s (public key in %s)\n", k.ID(), c.String("out"), pubPath)
			return nil
		},
	}
}
