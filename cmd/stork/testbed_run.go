package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/cmd/stork/internal/testbed"
)

func testbedRunCommand() *cli.Command {
	d := testbed.DefaultConfig()
	return &cli.Command{
		Name:      "run",
		Usage:     "build the testbed, run the scenarios, write the report, remove the testbed",
		UsageText: "stork testbed run --out DIR [--sites 4,4,4] [--size 256M] [--runs http,swarm,...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "write the report, CSV, plots and logs to `DIR`", Category: catTestbed, EnvVars: env("testbed-out"), Required: true},
			&cli.StringFlag{Name: "sites", Usage: "hosts per site, comma-separated (`LIST`)", Category: catTestbed, EnvVars: env("testbed-sites"), Value: joinInts(d.Sites)},
			&cli.StringFlag{Name: "size", Usage: "package `SIZE` (e.g. 256M)", Category: catTestbed, EnvVars: env("testbed-size"), Value: strconv.FormatInt(d.Size>>20, 10) + "M"},
			&cli.StringFlag{Name: "host-rate", Usage: "every host's link `RATE` (e.g. 1gbit)", Category: catTestbed, EnvVars: env("testbed-host-rate"), Value: testbed.FormatBits(d.Rates.Host)},
			&cli.StringFlag{Name: "uplink-rate", Usage: "every site uplink's `RATE`", Category: catTestbed, EnvVars: env("testbed-uplink-rate"), Value: testbed.FormatBits(d.Rates.Uplink)},
			&cli.StringFlag{Name: "origin-rate", Usage: "the repository link's `RATE`", Category: catTestbed, EnvVars: env("testbed-origin-rate"), Value: testbed.FormatBits(d.Rates.Origin)},
			&cli.StringFlag{Name: "slow-rate", Usage: "the slow host's link `RATE` (slow-host fault)", Category: catTestbed, EnvVars: env("testbed-slow-rate"), Value: testbed.FormatBits(d.SlowRate)},
			&cli.StringFlag{Name: "delay", Usage: "one-way `DURATION` a packet takes between sites and to the repository (0: none)", Category: catTestbed, EnvVars: env("testbed-delay"), Value: d.Delay.String()},
			&cli.IntFlag{Name: "mtu", Usage: "every link's `MTU`", Category: catTestbed, EnvVars: env("testbed-mtu"), Value: d.MTU},
			&cli.StringFlag{Name: "link-down", Usage: "keep the link-down fault's link down for `DURATION`", Category: catTestbed, EnvVars: env("testbed-link-down"), Value: d.LinkDownFor.String()},
			&cli.StringFlag{Name: "runs", Usage: "the runs, comma-separated (`LIST`: " + strings.Join(testbed.AllRuns, ",") + ")", Category: catTestbed, EnvVars: env("testbed-runs"), Value: strings.Join(d.Runs, ",")},
			&cli.StringFlag{Name: "debs", Usage: "build the package from the .deb files in `DIR` (default: random bytes)", Category: catTestbed, EnvVars: env("testbed-debs")},
			&cli.StringSliceFlag{Name: "daemon-arg", Usage: "add `ARG` to every `stork daemon` command line (repeat; e.g. --daemon-arg=--max-peers=8)", Category: catTestbed, EnvVars: env("testbed-daemon-arg")},
			&cli.IntFlag{Name: "seeds", Usage: "simulator seeds (`N`) per strategy", Category: catTestbed, EnvVars: env("testbed-seeds"), Value: d.Seeds},
			&cli.StringFlag{Name: "timeout", Usage: "give up on a run after `DURATION` (default: from the rates and size)", Category: catTestbed, EnvVars: env("testbed-timeout")},
		},
		Action: func(c *cli.Context) error {
			cfg, err := testbedConfig(c)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			res, err := testbed.Run(ctx, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "testbed: report %s\n", filepath.Join(cfg.Dir, testbed.ReportFile))
			if len(res.Failed) > 0 {
				return fmt.Errorf("testbed: %s", strings.Join(res.Failed, "; "))
			}
			return nil
		},
	}
}

func testbedConfig(c *cli.Context) (testbed.Config, error) {
	cfg := testbed.DefaultConfig()
	self, err := os.Executable()
	if err != nil {
		return cfg, fmt.Errorf("testbed: find the stork binary: %w", err)
	}
	cfg.Stork, cfg.Dir, cfg.Debs = self, c.String("out"), c.String("debs")
	cfg.Log = newLogger(c)
	cfg.Progress = c.App.Writer
	if cfg.Sites, err = parseInts(c.String("sites")); err != nil {
		return cfg, fmt.Errorf("--sites: %w", err)
	}
	if cfg.Size, err = parseSize(c.String("size")); err != nil {
		return cfg, fmt.Errorf("--size: %w", err)
	}
	for _, r := range []struct {
		flag string
		dst  *int64
	}{{"host-rate", &cfg.Rates.Host}, {"uplink-rate", &cfg.Rates.Uplink}, {"origin-rate", &cfg.Rates.Origin}, {"slow-rate", &cfg.SlowRate}} {
		if *r.dst, err = testbed.ParseBits(c.String(r.flag)); err != nil {
			return cfg, fmt.Errorf("--%s: %w", r.flag, err)
		}
	}
	if v := c.String("delay"); v == "0" {
		cfg.Delay = 0
	} else if cfg.Delay, err = parseDuration(v); err != nil {
		return cfg, fmt.Errorf("--delay: %w", err)
	}
	if cfg.LinkDownFor, err = parseDuration(c.String("link-down")); err != nil {
		return cfg, fmt.Errorf("--link-down: %w", err)
	}
	if v := c.String("timeout"); v != "" {
		if cfg.Timeout, err = parseDuration(v); err != nil {
			return cfg, fmt.Errorf("--timeout: %w", err)
		}
	}
	cfg.MTU, cfg.Seeds = c.Int("mtu"), c.Int("seeds")
	cfg.Runs = strings.Split(c.String("runs"), ",")
	cfg.DaemonArgs = c.StringSlice("daemon-arg")
	return cfg, cfg.Validate()
}
