package main

import "github.com/urfave/cli/v2"

func vmCommand() *cli.Command {
	return &cli.Command{
		Name:  "vm",
		Usage: "register VMs and what they may install",
		Subcommands: []*cli.Command{
			vmAddCommand(),
			vmRemoveCommand(),
			vmListCommand(),
			vmGroupsCommand(),
		},
	}
}
