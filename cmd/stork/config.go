package main

import "github.com/urfave/cli/v2"

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "inspect the configuration (" + DefaultConfigFile + ", --config FILE, STORK_ environment variables, flags)",
		Subcommands: []*cli.Command{
			configShowCommand(),
		},
	}
}
