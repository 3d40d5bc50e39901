package main

import (
	"fmt"
	"net"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	httporigin "github.com/storkpm/stork/transfer/origin"
)

func repoServeCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve a repository directory over HTTP (read-only, static)",
		UsageText: "stork repo serve --dir REPO --listen HOST:PORT",
		Flags: []cli.Flag{
			repoDirFlag(),
			&cli.StringFlag{Name: "listen", Usage: "`HOST:PORT` to listen on", Category: catNetwork, EnvVars: []string{"STORK_SERVE_LISTEN"}, Value: "127.0.0.1:8080"},
			withEnv(stringFlag("rate", "cap what the server sends at `RATE` bytes/s over all requests (e.g. 100M); default unlimited", catLimits, false), "STORK_SERVE_RATE"),
		},
		Action: func(c *cli.Context) error {
			limit, err := sizeValue(c, "rate")
			if err != nil {
				return err
			}
			srv, err := httporigin.NewServer(httporigin.ServerConfig{Dir: c.String("dir"), Logger: newLogger(c), Rate: limit})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", c.String("listen"))
			if err != nil {
				return fmt.Errorf("listen on %s: %w", c.String("listen"), err)
			}
			fmt.Fprintf(c.App.Writer, "serving %s on http://%s\n", c.String("dir"), ln.Addr())
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return srv.Run(ctx, ln)
		},
	}
}
