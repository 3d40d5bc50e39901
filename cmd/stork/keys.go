package main

import "github.com/urfave/cli/v2"

func keysCommand() *cli.Command {
	return &cli.Command{
		Name:  "keys",
		Usage: "manage ed25519 signing keys",
		Subcommands: []*cli.Command{
			keysGenCommand(),
			keysIDCommand(),
		},
	}
}
