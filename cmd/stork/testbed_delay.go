package main

import (
	"fmt"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/cmd/stork/internal/testbed"
)

// testbedDelayCommand is the delay forwarder the testbed starts in its
// router namespace. Its environment variables are STORK_TESTBED_DELAY_*:
// STORK_TESTBED_DELAY and STORK_TESTBED_MTU are `testbed run`'s.
func testbedDelayCommand() *cli.Command {
	return &cli.Command{
		Name:  "delay",
		Usage: "create a TUN device and write every packet routed into it back after a delay (the testbed's router)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dev", Usage: "TUN device `NAME`", Category: catTestbed, EnvVars: env("testbed-delay-dev"), Value: "tun0"},
			&cli.StringFlag{Name: "delay", Usage: "`DURATION` every packet waits", Category: catTestbed, EnvVars: env("testbed-delay-duration"), Value: "20ms"},
			&cli.IntFlag{Name: "mtu", Usage: "largest packet (`BYTES`)", Category: catTestbed, EnvVars: env("testbed-delay-mtu"), Value: 1500},
		},
		Action: func(c *cli.Context) error {
			d, err := parseDuration(c.String("delay"))
			if err != nil {
				return fmt.Errorf("--delay: %w", err)
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log := newLogger(c)
			return testbed.RunDelay(ctx, testbed.DelayConfig{Dev: c.String("dev"), Delay: d, MTU: c.Int("mtu"), Log: log,
				Ready: func() { log.Info("delay ready", "dev", c.String("dev"), "delay", d) }})
		},
	}
}
