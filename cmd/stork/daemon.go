package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

func daemonCommand() *cli.Command {
	return &cli.Command{
		Name:      "daemon",
		Usage:     "run the host daemon in the foreground",
		UsageText: "stork daemon --data DIR --listen MULTIADDR --repo URL --root ROOT.json [--bootstrap MULTIADDR ...]",
		Flags: optFlags("store.data", "repo.url", "repo.root", "transfer.parallel", "repo.refresh-interval", "repo.poll", "repo.origin-deadline",
			"swarm.listen", "swarm.bootstrap", "swarm.announce", "swarm.dht-mode", "swarm.disabled", "swarm.no-nat",
			"transfer.upload-rate", "transfer.download-rate", "transfer.max-peers", "swarm.conn-low", "swarm.conn-high",
			"swarm.max-memory", "swarm.site", "swarm.no-site-inference", "swarm.no-pull-through", "store.scrub-rate", "store.checkpoint", "metrics.listen"),
		Action: func(c *cli.Context) error {
			if err := requireOptions(c, "repo.url"); err != nil {
				return err
			}
			var root []byte
			if p := c.String("root"); p != "" {
				b, err := os.ReadFile(p)
				if err != nil {
					return fmt.Errorf("read root metadata: %w", err)
				}
				root = b
			}
			interval, err := parseDuration(c.String("refresh-interval"))
			if err != nil {
				return fmt.Errorf("--refresh-interval: %w", err)
			}
			poll, err := parseDuration(c.String("poll"))
			if err != nil {
				return fmt.Errorf("--poll: %w", err)
			}
			originDeadline, err := parseDuration(c.String("origin-deadline"))
			if err != nil {
				return fmt.Errorf("--origin-deadline: %w", err)
			}
			cfg := node.Config{
				DataDir:             c.String("data"),
				RepoURL:             c.String("repo"),
				Root:                root,
				Parallel:            c.Int("parallel"),
				RefreshInterval:     interval,
				Poll:                poll,
				OriginDeadline:      originDeadline,
				Logger:              newLogger(c),
				MaxPeersPerDownload: c.Int("max-peers"),
				Site:                c.String("site"),
				NoSiteInference:     c.Bool("no-site-inference"),
				NoPullThrough:       c.Bool("no-pull-through"),
			}
			if cfg.ScrubRate, err = parseSize(c.String("scrub-rate")); err != nil {
				return fmt.Errorf("--scrub-rate: %w", err)
			}
			if cfg.ScrubRate == 0 {
				cfg.ScrubRate = -1 // off
			}
			if cfg.StoreCheckpoint, err = parseDurationOrOff(c.String("checkpoint")); err != nil {
				return fmt.Errorf("--checkpoint: %w", err)
			}
			if cfg.StoreCheckpoint == 0 {
				cfg.StoreCheckpoint = -1 // sync at each step
			}
			if cfg.UploadRate, err = sizeValue(c, "upload-rate"); err != nil {
				return err
			}
			if cfg.DownloadRate, err = sizeValue(c, "download-rate"); err != nil {
				return err
			}
			if !c.Bool("no-swarm") {
				pc := node.DefaultP2PConfig(c.String("data"))
				if l := c.StringSlice("listen"); len(l) > 0 {
					pc.Listen = l
				}
				pc.Bootstrap = c.StringSlice("bootstrap")
				pc.Announce = c.StringSlice("announce")
				pc.DHTMode = c.String("dht-mode")
				pc.ConnLow, pc.ConnHigh = c.Int("conn-low"), c.Int("conn-high")
				if pc.MaxMemory, err = sizeValue(c, "max-memory"); err != nil {
					return err
				}
				if c.Bool("no-nat") {
					pc.EnableAutoNAT, pc.EnableHolePunching, pc.EnableRelay = false, false, false
				}
				cfg.P2P = &pc
			}
			if addr := c.String("metrics"); addr != "" {
				reg, stopMetrics, err := serveMetrics(addr, cfg.Logger)
				if err != nil {
					return err
				}
				defer stopMetrics()
				cfg.Metrics = reg
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			d, err := node.NewDaemon(ctx, cfg)
			if err != nil {
				return err
			}
			return errors.Join(d.Run(ctx), d.Close())
		},
	}
}

// serveMetrics serves a new registry (with the Go runtime's and the process's
// collectors) over HTTP at addr/metrics.
func serveMetrics(addr string, log *slog.Logger) (*prometheus.Registry, func(), error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
	return reg, func() { _ = srv.Close() }, nil
}
