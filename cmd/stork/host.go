package main

import (
	"fmt"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

// Commands that talk to a running daemon through its admin socket.

func fetchCommand() *cli.Command {
	return &cli.Command{
		Name:      "fetch",
		Usage:     "bring a package and its dependencies into the host store (through the daemon)",
		UsageText: "stork fetch --data DIR NAME[@VERSION]",
		Flags:     []cli.Flag{dataFlag(), boolFlag("json", "print the result as JSON", catOutput)},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want exactly one NAME[@VERSION], got %d arguments", c.NArg())
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			bar := newProgress(c, c.Args().First(), 0)
			pkgs, err := node.NewClient(c.String("data")).Fetch(ctx, c.Args().First(), bar.SetTotal)
			bar.Finish()
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, pkgs)
			}
			for _, p := range pkgs {
				fmt.Fprintf(c.App.Writer, "%s@%s %s %s (%d bytes)\n", p.Name, p.Version, p.State, p.ManifestCID, p.Size)
			}
			return nil
		},
	}
}

func installCommand() *cli.Command {
	return &cli.Command{
		Name:      "install",
		Usage:     "expose a package and its dependencies read-only in a VM's view (DIR/NAME each)",
		UsageText: "stork install --data DIR --vm ID NAME[@VERSION] [--into DIR] [--mode bind|overlay|link] [--no-deps]",
		Flags: []cli.Flag{
			dataFlag(),
			stringFlag("vm", "VM `ID`", catStore, true),
			stringFlag("into", "view `DIR`, at or below the VM's root (default: the root of the VM as registered with stork vm add); each package appears at DIR/NAME", catStore, false),
			&cli.StringFlag{Name: "mode", Usage: "view `MODE`: bind (read-only bind mount), overlay (copy-on-write upper layer), link (hard links)", Category: catStore, EnvVars: env("mode"), Value: "bind"},
			boolFlag("no-deps", "install NAME alone, without resolving its dependencies (as dpkg -i would)", catStore),
			boolFlag("json", "print the result as JSON", catOutput),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want exactly one NAME[@VERSION], got %d arguments", c.NArg())
			}
			into := c.String("into")
			if into != "" {
				abs, err := filepath.Abs(into)
				if err != nil {
					return err
				}
				into = abs
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			bar := newProgress(c, c.Args().First(), 0)
			insts, err := node.NewClient(c.String("data")).Install(ctx, node.InstallRequest{
				VM: c.String("vm"), Ref: c.Args().First(), Into: into, Mode: c.String("mode"), NoDeps: c.Bool("no-deps"),
			}, bar.SetTotal)
			bar.Finish()
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, insts)
			}
			for _, in := range insts {
				fmt.Fprintf(c.App.Writer, "%s@%s -> %s (%s, vm %s)\n", in.Name, in.Version, in.Path, in.Mode, in.VM)
			}
			return nil
		},
	}
}

func uninstallCommand() *cli.Command {
	return &cli.Command{
		Name:      "uninstall",
		Usage:     "remove a package from a VM's view",
		UsageText: "stork uninstall --data DIR --vm ID NAME",
		Flags:     []cli.Flag{dataFlag(), stringFlag("vm", "VM `ID`", catStore, true)},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want exactly one NAME, got %d arguments", c.NArg())
			}
			out, err := node.NewClient(c.String("data")).Uninstall(c.Context, c.String("vm"), c.Args().First())
			if err != nil {
				return err
			}
			for _, in := range out {
				fmt.Fprintf(c.App.Writer, "removed %s@%s from %s (vm %s)\n", in.Name, in.Version, in.Path, in.VM)
			}
			return nil
		},
	}
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list packages in the host store, or one VM's installs with the state of each view (ok, or broken and why)",
		UsageText: "stork list --data DIR [--vm ID] [--json]",
		Flags:     []cli.Flag{dataFlag(), stringFlag("vm", "only this VM's installs (`ID`)", catStore, false), boolFlag("json", "print JSON", catOutput)},
		Action: func(c *cli.Context) error {
			cl := node.NewClient(c.String("data"))
			if vm := c.String("vm"); vm != "" {
				insts, err := cl.Installs(c.Context, vm)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c, insts)
				}
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tVERSION\tPATH\tMODE\tSTATE")
				for _, in := range insts {
					state := in.State
					if in.Setuid != "" {
						state += ", setuid " + in.Setuid
					}
					if in.Reason != "" {
						state += ": " + in.Reason
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.Name, in.Version, in.Path, in.Mode, state)
				}
				return tw.Flush()
			}
			st, err := cl.Status(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, st.Packages)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tSTATE\tSIZE\tVMS\tMANIFEST")
			for _, p := range st.Packages {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", p.Name, p.Version, p.State, p.Size, strings.Join(p.Installs, ","), p.ManifestCID)
			}
			return tw.Flush()
		},
	}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the daemon's peers, byte counters and packages",
		UsageText: "stork status --data DIR [--json]",
		Flags:     []cli.Flag{dataFlag(), boolFlag("json", "print JSON", catOutput)},
		Action: func(c *cli.Context) error {
			st, err := node.NewClient(c.String("data")).Status(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, st)
			}
			broken := 0
			for _, v := range st.Views {
				if v.State != "ok" {
					broken++
				}
			}
			fmt.Fprintf(c.App.Writer, "peer %s, %d peers, from peers %d B, from origin %d B, uploaded %d B, %d packages, %d VMs, %d views (%d broken)\n",
				orDash(st.PeerID), st.Peers, st.BytesFromPeers, st.BytesFromOrigin, st.BytesUploaded, len(st.Packages), len(st.VMs), len(st.Views), broken)
			for _, p := range st.Packages {
				if p.WaitingOriginSince != nil {
					fmt.Fprintf(c.App.Writer, "%s@%s: waiting for the origin since %s (%d of %d B)\n",
						p.Name, p.Version, p.WaitingOriginSince.Format(time.RFC3339), p.Have, p.Size)
				}
			}
			return nil
		},
	}
}

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:      "gc",
		Usage:     "remove objects and trees that no package or VM install references",
		UsageText: "stork gc --data DIR [--partial]",
		Flags: []cli.Flag{
			dataFlag(),
			boolFlag("partial", "also drop unfinished downloads (failed, or interrupted by a restart) that no VM uses and no request waits for, freeing their partial files; a later request starts them over", catStore),
		},
		Action: func(c *cli.Context) error {
			res, err := node.NewClient(c.String("data")).GCWith(c.Context, node.GCRequest{Partial: c.Bool("partial")})
			if err != nil {
				return err
			}
			return printJSON(c, res)
		},
	}
}

func vmCommand() *cli.Command {
	return &cli.Command{
		Name:  "vm",
		Usage: "register VMs and what they may install",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "register a VM with the package name patterns it may request through its own socket",
				UsageText: "stork vm add --data DIR ID --allow PATTERN [--allow PATTERN ...] [--root DIR] [--mode bind|overlay|link] [--unprivileged] [--allow-setuid] [--quota SIZE]",
				Flags: []cli.Flag{
					dataFlag(),
					&cli.StringSliceFlag{Name: "allow", Usage: "package name `PATTERN` the VM may request (shell-style, repeat)", Category: catStore, EnvVars: env("allow"), Required: true},
					stringFlag("root", "host `DIR` the VM controls, where its packages appear as DIR/NAME (default DATA/views/ID; never inside the data directory)", catStore, false),
					&cli.StringFlag{Name: "mode", Usage: "view `MODE` for this VM: bind, overlay or link", Category: catStore, EnvVars: env("mode"), Value: "bind"},
					boolFlag("unprivileged", "declare that no process of the VM runs as root (or as the store's owner): required for link views, which give such a process write access to the shared objects", catStore),
					boolFlag("allow-setuid", "let the VM's bind and overlay views apply the setuid and setgid bits of its packages (views mounted without nosuid); without it those files show without the bits and stork list --vm says \"setuid dropped\"", catStore),
					stringFlag("quota", "cap the file bytes of the packages the VM may have installed through its own socket at `SIZE` (e.g. 2G); default no cap", catLimits, false),
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError(c, "want exactly one VM ID, got %d arguments", c.NArg())
					}
					root := c.String("root")
					if root != "" {
						abs, err := filepath.Abs(root)
						if err != nil {
							return err
						}
						root = abs
					}
					var quota int64
					if q := c.String("quota"); q != "" {
						n, err := parseSize(q)
						if err != nil {
							return fmt.Errorf("--quota: %w", err)
						}
						quota = n
					}
					sock, err := node.NewClient(c.String("data")).AddVM(c.Context, node.VM{
						ID: c.Args().First(), Allow: c.StringSlice("allow"), Root: root, Mode: c.String("mode"), Unprivileged: c.Bool("unprivileged"),
						AllowSetuid: c.Bool("allow-setuid"), Quota: quota,
					})
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "vm %s registered; its socket is %s\n", c.Args().First(), sock)
					return nil
				},
			},
			{
				Name:      "remove",
				Usage:     "unregister a VM and remove its views",
				UsageText: "stork vm remove --data DIR ID",
				Flags:     []cli.Flag{dataFlag()},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError(c, "want exactly one VM ID, got %d arguments", c.NArg())
					}
					return node.NewClient(c.String("data")).RemoveVM(c.Context, c.Args().First())
				},
			},
			{
				Name:      "list",
				Usage:     "list registered VMs",
				UsageText: "stork vm list --data DIR",
				Flags:     []cli.Flag{dataFlag()},
				Action: func(c *cli.Context) error {
					vms, err := node.NewClient(c.String("data")).VMs(c.Context)
					if err != nil {
						return err
					}
					return printJSON(c, vms)
				},
			},
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "re-hash every object and tree in a host store (daemon stopped); --repair quarantines what fails so that the daemon fetches it again",
		UsageText: "stork verify --data DIR [--repair]",
		Flags: []cli.Flag{
			dataFlag(),
			boolFlag("repair", "quarantine damaged objects and mark their packages (and packages whose trees changed) to be fetched again when the daemon next starts", catStore),
		},
		Action: func(c *cli.Context) error {
			data := c.String("data")
			if c.Bool("repair") {
				problems, marked, err := node.RepairStore(c.Context, data)
				for _, p := range problems {
					fmt.Fprintln(c.App.ErrWriter, p)
				}
				if err != nil {
					return err
				}
				if len(marked) == 0 {
					fmt.Fprintf(c.App.Writer, "store %s verified: nothing to repair\n", data)
					return nil
				}
				fmt.Fprintf(c.App.Writer, "store %s: %d problems; %d packages will be fetched again when the daemon starts: %s\n",
					data, len(problems), len(marked), strings.Join(marked, ", "))
				return nil
			}
			problems, err := node.VerifyStore(c.Context, data)
			if err != nil {
				return err
			}
			for _, p := range problems {
				fmt.Fprintln(c.App.ErrWriter, p)
			}
			if len(problems) > 0 {
				return fmt.Errorf("store %s: %d problems (first: %s); stork verify --repair quarantines them for the daemon to fetch again", data, len(problems), problems[0])
			}
			fmt.Fprintf(c.App.Writer, "store %s verified\n", data)
			return nil
		},
	}
}

func peersCommand() *cli.Command {
	return &cli.Command{
		Name:      "peers",
		Usage:     "list the daemon's connected peers with their latency",
		UsageText: "stork peers --data DIR [--json]",
		Flags:     []cli.Flag{dataFlag(), boolFlag("json", "print JSON", catOutput)},
		Action: func(c *cli.Context) error {
			peers, err := node.NewClient(c.String("data")).Peers(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, peers)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tLATENCY\tADDRS")
			for _, p := range peers {
				lat := "-"
				if p.Latency > 0 {
					lat = p.Latency.Round(10 * time.Microsecond).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", p.ID, lat, strings.Join(p.Addrs, ","))
			}
			return tw.Flush()
		},
	}
}
