package main

import "github.com/urfave/cli/v2"

func indexCommand() *cli.Command {
	return &cli.Command{
		Name:  "index",
		Usage: "maintain the host store's index",
		Subcommands: []*cli.Command{
			indexRebuildCommand(),
		},
	}
}
