package main

import (
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

func dataFlag() cli.Flag {
	return stringFlag("data", "daemon data `DIR` (store, trusted metadata, sockets)", catStore, true)
}

func daemonCommand() *cli.Command {
	return &cli.Command{
		Name:      "daemon",
		Usage:     "run the host daemon in the foreground",
		UsageText: "stork daemon --data DIR --listen MULTIADDR --repo URL --root ROOT.json [--bootstrap MULTIADDR ...]",
		Flags: []cli.Flag{
			dataFlag(),
			stringFlag("repo", "repository (origin) base `URL`", catRepo, true),
			stringFlag("root", "trusted root metadata `FILE` (used until DIR holds trusted metadata)", catRepo, false),
			intFlag("parallel", "concurrent chunk requests per download", catNetwork, 8),
			&cli.StringFlag{Name: "refresh-interval", Usage: "reuse repository metadata this long (`DURATION`) before refreshing", Category: catRepo, EnvVars: env("refresh-interval"), Value: "30s"},
			&cli.StringFlag{Name: "origin-deadline", Usage: "a download waits this long (`DURATION`) for an unreachable origin, with nothing arriving from peers, before it fails (chunks peers hold keep coming meanwhile)", Category: catRepo, EnvVars: env("origin-deadline"), Value: "10m"},
			&cli.StringSliceFlag{Name: "listen", Usage: "libp2p listen `MULTIADDR` (repeat; default TCP and QUIC on all interfaces, any port)", Category: catNetwork, EnvVars: env("listen")},
			stringSliceFlag("bootstrap", "join the overlay through this peer's `MULTIADDR` (with /p2p/ID; repeat); none: first node of a testbed", catNetwork),
			stringSliceFlag("announce", "also announce this public `MULTIADDR` (repeat)", catNetwork),
			&cli.StringFlag{Name: "dht-mode", Usage: "DHT `MODE`: auto (server where reachable), server or client", Category: catNetwork, EnvVars: env("dht-mode"), Value: "auto"},
			boolFlag("no-swarm", "no libp2p host: fetch every chunk from the origin", catNetwork),
			boolFlag("no-nat", "turn off AutoNAT, hole punching and circuit relay (testbeds on one network)", catNetwork),
			stringFlag("upload-rate", "cap swarm uploads at `RATE` bytes/s (e.g. 10M); default unlimited", catLimits, false),
			stringFlag("download-rate", "cap swarm downloads at `RATE` bytes/s (e.g. 10M); default unlimited", catLimits, false),
			intFlag("max-peers", "peers one download trades with at most", catLimits, 32),
			intFlag("conn-low", "connection manager low watermark (connections kept when trimming)", catLimits, 64),
			intFlag("conn-high", "connection manager high watermark (trimming starts above it)", catLimits, 256),
			stringFlag("max-memory", "libp2p resource manager memory `LIMIT` (e.g. 1G)", catLimits, false),
			&cli.StringFlag{Name: "scrub-rate", Usage: "re-hash the store's objects in the background at `RATE` bytes/s (e.g. 4M) to find damage on disk; 0 turns it off", Category: catStore, EnvVars: env("scrub-rate"), Value: "4M"},
			stringFlag("metrics", "serve Prometheus metrics on `ADDR` (host:port, e.g. 127.0.0.1:9464) at /metrics; default off", catNetwork, false),
		},
		Action: func(c *cli.Context) error {
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
				OriginDeadline:      originDeadline,
				Logger:              newLogger(c),
				MaxPeersPerDownload: c.Int("max-peers"),
			}
			if cfg.ScrubRate, err = parseSize(c.String("scrub-rate")); err != nil {
				return fmt.Errorf("--scrub-rate: %w", err)
			}
			if cfg.ScrubRate == 0 {
				cfg.ScrubRate = -1 // off
			}
			for name, dst := range map[string]*int64{"upload-rate": &cfg.UploadRate, "download-rate": &cfg.DownloadRate} {
				if s := c.String(name); s != "" {
					if *dst, err = parseSize(s); err != nil {
						return fmt.Errorf("--%s: %w", name, err)
					}
				}
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
				if s := c.String("max-memory"); s != "" {
					if pc.MaxMemory, err = parseSize(s); err != nil {
						return fmt.Errorf("--max-memory: %w", err)
					}
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
			d, err := node.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return d.Run(ctx)
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
