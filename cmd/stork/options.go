package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// The host's configuration: every option is a key of the TOML file
// (configfile.go), a flag and a STORK_ environment variable, all derived
// from this one table so that the three never drift. A value comes from
// the flag, else the environment, else the file, else the default.

// optKind is the type of an option's value.
type optKind int

const (
	kindString   optKind = iota
	kindStrings          // a list: a repeated flag, a comma-separated variable, a TOML array
	kindInt              // a non-negative integer
	kindBool             // true or false
	kindDuration         // a duration such as 30s, 12h, 7d (parseDuration)
	kindSize             // a byte count such as 1048576, 4M, 2G (parseSize)
	kindChoice           // one of option.Choices
)

// option is one configuration option.
type option struct {
	Key      string // TOML key: "section.name"
	Flag     string // flag name, also giving the environment variable STORK_FLAG
	Kind     optKind
	Default  string   // written as on the command line; "" none
	Choices  []string // kindChoice
	ZeroOff  bool     // kindDuration: "0" is allowed, and turns the feature off
	Category string
	Usage    string
}

const (
	catGlobal  = "Global"
	catMetrics = "Metrics"
)

// DefaultDataDir is the daemon's data directory unless configured.
const DefaultDataDir = "/var/lib/stork"

// options is the table. Sections group options by component: [log], [store],
// [repo], [transfer], [swarm], [metrics].
var options = []option{
	{Key: "log.level", Flag: "log-level", Kind: kindChoice, Default: "info", Choices: []string{"debug", "info", "warn", "error"}, Category: catGlobal,
		Usage: "log `LEVEL`: debug, info, warn or error"},
	{Key: "log.format", Flag: "log-format", Kind: kindChoice, Default: "auto", Choices: []string{"auto", "text", "json"}, Category: catGlobal,
		Usage: "log `FORMAT`: text, json, or auto (text on a terminal, JSON otherwise)"},

	{Key: "store.data", Flag: "data", Kind: kindString, Default: DefaultDataDir, Category: catStore,
		Usage: "daemon data `DIR` (store, trusted metadata, sockets)"},
	{Key: "store.scrub-rate", Flag: "scrub-rate", Kind: kindSize, Default: "4M", Category: catStore,
		Usage: "re-hash the store's objects in the background at `RATE` bytes/s (e.g. 4M) to find damage on disk; 0 turns it off"},
	{Key: "store.checkpoint", Flag: "checkpoint", Kind: kindDuration, Default: "1s", ZeroOff: true, Category: catStore,
		Usage: "make the files the store wrote durable every `INTERVAL` (one sync of the file system), rather than at each step of each download; after a power cut the daemon checks what came after the last one; 0 syncs at each step"},

	{Key: "repo.url", Flag: "repo", Kind: kindString, Category: catRepo,
		Usage: "repository (origin) base `URL`"},
	{Key: "repo.root", Flag: "root", Kind: kindString, Category: catRepo,
		Usage: "trusted root metadata `FILE` (the repository's metadata/1.root.json), trusted on first use until newer signed metadata is kept"},
	{Key: "repo.refresh-interval", Flag: "refresh-interval", Kind: kindDuration, Default: "30s", Category: catRepo,
		Usage: "reuse repository metadata this long (`DURATION`) before refreshing; a package not found is looked up again at once"},
	{Key: "repo.poll", Flag: "poll", Kind: kindDuration, Default: "5m", Category: catRepo,
		Usage: "read the repository every `DURATION` and bring the VMs to their groups' policies (sooner when a peer announces newer metadata)"},
	{Key: "repo.origin-deadline", Flag: "origin-deadline", Kind: kindDuration, Default: "10m", Category: catRepo,
		Usage: "a download waits this long (`DURATION`) for an unreachable origin, with nothing arriving from peers, before it fails (chunks peers hold keep coming meanwhile)"},

	{Key: "transfer.parallel", Flag: "parallel", Kind: kindInt, Default: "8", Category: catNetwork,
		Usage: "concurrent chunk requests to the origin per download"},
	{Key: "transfer.max-peers", Flag: "max-peers", Kind: kindInt, Default: "32", Category: catLimits,
		Usage: "peers one download trades with at most"},
	{Key: "transfer.upload-rate", Flag: "upload-rate", Kind: kindSize, Category: catLimits,
		Usage: "cap swarm uploads at `RATE` bytes/s (e.g. 10M); default unlimited"},
	{Key: "transfer.download-rate", Flag: "download-rate", Kind: kindSize, Category: catLimits,
		Usage: "cap swarm downloads at `RATE` bytes/s (e.g. 10M); default unlimited"},

	{Key: "swarm.disabled", Flag: "no-swarm", Kind: kindBool, Category: catNetwork,
		Usage: "no libp2p host: fetch every chunk from the origin"},
	{Key: "swarm.listen", Flag: "listen", Kind: kindStrings, Category: catNetwork,
		Usage: "libp2p listen `MULTIADDR` (repeat; default TCP and QUIC on all interfaces, any port)"},
	{Key: "swarm.bootstrap", Flag: "bootstrap", Kind: kindStrings, Category: catNetwork,
		Usage: "join the overlay through this peer's `MULTIADDR` (with /p2p/ID; repeat); none: first node of a testbed"},
	{Key: "swarm.announce", Flag: "announce", Kind: kindStrings, Category: catNetwork,
		Usage: "also announce this public `MULTIADDR` (repeat)"},
	{Key: "swarm.dht-mode", Flag: "dht-mode", Kind: kindChoice, Default: "auto", Choices: []string{"auto", "server", "client"}, Category: catNetwork,
		Usage: "DHT `MODE`: auto (server where reachable), server or client"},
	{Key: "swarm.no-nat", Flag: "no-nat", Kind: kindBool, Category: catNetwork,
		Usage: "turn off AutoNAT, hole punching and circuit relay (testbeds on one network)"},
	{Key: "swarm.conn-low", Flag: "conn-low", Kind: kindInt, Default: "64", Category: catLimits,
		Usage: "connection manager low watermark (connections kept when trimming)"},
	{Key: "swarm.conn-high", Flag: "conn-high", Kind: kindInt, Default: "256", Category: catLimits,
		Usage: "connection manager high watermark (trimming starts above it)"},
	{Key: "swarm.site", Flag: "site", Kind: kindString, Category: catNetwork,
		Usage: "this host's site `NAME` (a data centre, a rack; letters, digits, '.', '_', '-'), announced to peers: a site's hosts pull about one copy over its link and share it; unset: inferred from round-trip times"},
	{Key: "swarm.no-site-inference", Flag: "no-site-inference", Kind: kindBool, Category: catNetwork,
		Usage: "without --site, run with no site instead of inferring one from round-trip times"},
	{Key: "swarm.no-pull-through", Flag: "no-pull-through", Kind: kindBool, Category: catNetwork,
		Usage: "turn cooperative origin fetching off: each download asks the origin itself for what its peers lack (chunks, manifests, metadata), and this host fetches nothing from the origin for its peers"},
	{Key: "swarm.max-memory", Flag: "max-memory", Kind: kindSize, Category: catLimits,
		Usage: "libp2p resource manager memory `LIMIT` (e.g. 1G)"},

	{Key: "metrics.listen", Flag: "metrics", Kind: kindString, Category: catMetrics,
		Usage: "serve Prometheus metrics on `ADDR` (host:port, e.g. 127.0.0.1:9464) at /metrics; default off"},
}

// lookupOption returns the option with TOML key key; it panics on an
// unknown key, which is a programming error caught by any test.
func lookupOption(key string) *option {
	for i := range options {
		if options[i].Key == key {
			return &options[i]
		}
	}
	panic("unknown option " + key)
}

// optionByEnv returns the option whose environment variable is name.
func optionByEnv(name string) *option {
	for i := range options {
		if options[i].Env() == name {
			return &options[i]
		}
	}
	return nil
}

// Env is the option's environment variable.
func (o *option) Env() string { return env(o.Flag)[0] }

// optFlags returns the flags of the options with the given keys.
func optFlags(keys ...string) []cli.Flag {
	out := make([]cli.Flag, 0, len(keys))
	for _, k := range keys {
		out = append(out, lookupOption(k).flag())
	}
	return out
}

// flag builds the option's flag. None is marked required: a value may come
// from the configuration file, so commands check with requireOptions.
func (o *option) flag() cli.Flag {
	envs := []string{o.Env()}
	switch o.Kind {
	case kindStrings:
		return &cli.StringSliceFlag{Name: o.Flag, Usage: o.Usage, Category: o.Category, EnvVars: envs}
	case kindInt:
		n, _ := strconv.Atoi(o.Default)
		return &cli.IntFlag{Name: o.Flag, Usage: o.Usage, Category: o.Category, EnvVars: envs, Value: n,
			Action: func(_ *cli.Context, v int) error { return o.check(strconv.Itoa(v)) }}
	case kindBool:
		return &cli.BoolFlag{Name: o.Flag, Usage: o.Usage, Category: o.Category, EnvVars: envs, Value: o.Default == "true"}
	default:
		return &cli.StringFlag{Name: o.Flag, Usage: o.Usage, Category: o.Category, EnvVars: envs, Value: o.Default,
			Action: func(_ *cli.Context, v string) error { return o.check(v) }}
	}
}

// check validates a value written as on the command line.
func (o *option) check(v string) error {
	var err error
	switch o.Kind {
	case kindInt:
		if n, e := strconv.Atoi(v); e != nil || n < 0 {
			err = fmt.Errorf("want a non-negative integer, got %q", v)
		}
	case kindBool:
		if _, e := strconv.ParseBool(v); e != nil {
			err = fmt.Errorf("want true or false, got %q", v)
		}
	case kindDuration:
		if o.ZeroOff {
			_, err = parseDurationOrOff(v)
		} else {
			_, err = parseDuration(v)
		}
	case kindSize:
		if v != "" {
			_, err = parseSize(v)
		}
	case kindChoice:
		if !slices.Contains(o.Choices, v) {
			err = fmt.Errorf("want %s, got %q", strings.Join(o.Choices, ", "), v)
		}
	}
	if err != nil {
		return fmt.Errorf("--%s: %w", o.Flag, err)
	}
	return nil
}

// requireOptions fails unless every option named has a value from a flag,
// the environment or the configuration file.
func requireOptions(c *cli.Context, keys ...string) error {
	for _, k := range keys {
		o := lookupOption(k)
		if c.String(o.Flag) == "" {
			return usageError(c, "--%s is required (or %s, or %s in the configuration file)", o.Flag, o.Env(), o.Key)
		}
	}
	return nil
}
