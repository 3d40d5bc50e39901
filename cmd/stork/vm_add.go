package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func vmAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "register a VM with the package name patterns it may request through its own socket",
		UsageText: "stork vm add --data DIR ID --allow PATTERN [--allow PATTERN ...] [--group GROUP ...] [--root DIR] [--mode bind|overlay|link] [--unprivileged] [--allow-setuid] [--quota SIZE] [--json]",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringSliceFlag{Name: "allow", Usage: "package name `PATTERN` the VM may request (shell-style, repeat)", Category: catStore, EnvVars: env("allow")},
			withEnv(stringSliceFlag("group", "`GROUP` the VM belongs to: the daemon keeps it with what the group's signed policy requires, and the VM may request that (repeat)", catStore), "STORK_VM_GROUP"),
			withEnv(stringFlag("root", "host `DIR` the VM controls, where its packages appear as DIR/NAME (default DATA/views/ID; never inside the data directory)", catStore, false), "STORK_VM_ROOT"),
			&cli.StringFlag{Name: "mode", Usage: "view `MODE` for this VM: bind, overlay or link", Category: catStore, EnvVars: []string{"STORK_VM_MODE"}, Value: "bind"},
			boolFlag("unprivileged", "declare that no process of the VM runs as root (or as the store's owner): required for link views, which give such a process write access to the shared objects", catStore),
			boolFlag("allow-setuid", "let the VM's bind and overlay views apply the setuid and setgid bits of its packages (views mounted without nosuid); without it those files show without the bits and stork list --vm says \"setuid dropped\"", catStore),
			stringFlag("quota", "cap the file bytes of the packages the VM may have installed through its own socket at `SIZE` (e.g. 2G); default no cap", catLimits, false),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want exactly one VM ID, got %d arguments", c.NArg())
			}
			root, err := absPathValue(c, "root")
			if err != nil {
				return err
			}
			quota, err := sizeValue(c, "quota")
			if err != nil {
				return err
			}
			sock, err := node.NewClient(c.String("data")).AddVM(c.Context, node.VM{
				ID: c.Args().First(), Allow: c.StringSlice("allow"), Root: root, Mode: c.String("mode"), Unprivileged: c.Bool("unprivileged"),
				AllowSetuid: c.Bool("allow-setuid"), Quota: quota, Groups: c.StringSlice("group"),
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, map[string]string{"vm": c.Args().First(), "socket": sock})
			}
			fmt.Fprintf(c.App.Writer, "vm %s registered; its socket is %s\n", c.Args().First(), sock)
			return nil
		},
	}
}
