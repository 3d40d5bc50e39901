package testbed

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The runs, in the order Run does them.
const (
	RunHTTP       = "http"        // every host `stork get`s from the origin, no daemons
	RunSwarm      = "swarm"       // daemons, no site given
	RunSwarmSites = "swarm-sites" // daemons told their site (--site)
	RunLinkDown   = "link-down"   // a host's link down mid-transfer, then up
	RunSiteCut    = "site-cut"    // a site cut off from the repository site, not from the others
	RunOriginStop = "origin-stop" // the origin stopped once the overlay holds a copy
	RunSlowHost   = "slow-host"   // one host's link at SlowRate
)

// AllRuns lists every run.
var AllRuns = []string{RunHTTP, RunSwarm, RunSwarmSites, RunLinkDown, RunSiteCut, RunOriginStop, RunSlowHost}

// ReportFile is the Markdown report Run writes in Config.Dir.
const ReportFile = "REPORT.md"

// Config configures Run.
type Config struct {
	// Stork is the stork binary the hosts, the origin and the router run.
	Stork string
	// Dir receives the report, CSV, plots and logs; the hosts' data
	// directories live below it while a run lasts.
	Dir string
	// Sites: hosts per site.
	Sites []int
	// Size of the package, bytes.
	Size int64
	// Rates of the links, bits/s; SlowRate is the slow host's.
	Rates    Rates
	SlowRate int64
	// Delay: one-way, across the router (between sites, to the origin).
	Delay time.Duration
	// MTU of every link.
	MTU int
	// LinkDownFor: how long the link-down fault lasts.
	LinkDownFor time.Duration
	// Debs: a directory of .deb files to build the package from; "" for
	// random bytes.
	Debs string
	// Runs to do (AllRuns order is kept).
	Runs []string
	// DaemonArgs are added to every `stork daemon` command line.
	DaemonArgs []string
	// Seeds: simulator runs per strategy, their mean compared.
	Seeds int
	// Timeout bounds each run; 0: three times the HTTP-only time plus a
	// minute.
	Timeout time.Duration
	// Stall ends a run in which no host has gained a byte for this long;
	// 0: one minute.
	Stall time.Duration
	// Log receives the harness's events; Progress a line per step.
	Log      *slog.Logger
	Progress io.Writer
}

// DefaultConfig is issue 21's testbed: 3 sites of 4 hosts, hosts at
// 1 Gbit/s, site uplinks and the origin at 100 Mbit/s, a 256 MiB package,
// 20 ms one way between sites, every run. Links carry 9000-byte frames:
// with 1500 the per-packet work of veth, tbf and the user-space delay
// made a 2-core machine, not the links, the bottleneck of the swarm runs.
func DefaultConfig() Config {
	return Config{
		Sites:       []int{4, 4, 4},
		Size:        256 << 20,
		Rates:       Rates{Host: 1e9, Uplink: 100e6, Origin: 100e6},
		SlowRate:    10e6,
		Delay:       20 * time.Millisecond,
		MTU:         9000,
		LinkDownFor: 10 * time.Second,
		Runs:        slices.Clone(AllRuns),
		Seeds:       5,
	}
}

// ShortConfig is the version `make test` runs: a site of 3 hosts and one
// of 2, 32 MiB, the swarm against HTTP and one fault.
func ShortConfig() Config {
	c := DefaultConfig()
	c.Sites = []int{3, 2}
	c.Size = 32 << 20
	c.LinkDownFor = 3 * time.Second
	c.Runs = []string{RunHTTP, RunSwarm, RunSwarmSites, RunLinkDown}
	c.Seeds = 3
	return c
}

// Validate reports the first thing wrong with c.
func (c Config) Validate() error {
	switch {
	case c.Stork == "":
		return fmt.Errorf("testbed: no stork binary")
	case c.Dir == "":
		return fmt.Errorf("testbed: no output directory")
	case c.Size < 1<<20:
		return fmt.Errorf("testbed: package size %d: want at least 1 MiB", c.Size)
	case c.Rates.Host <= 0 || c.Rates.Uplink <= 0 || c.Rates.Origin <= 0 || c.SlowRate <= 0:
		return fmt.Errorf("testbed: rates must be positive")
	case c.MTU < 1280 || c.MTU > 65000:
		return fmt.Errorf("testbed: MTU %d: want 1280 to 65000", c.MTU)
	case c.Delay < 0 || c.Delay > 10*time.Second:
		return fmt.Errorf("testbed: delay %v: want 0 to 10s", c.Delay)
	}
	if _, err := NewPlan(c.Sites); err != nil {
		return err
	}
	for _, r := range c.Runs {
		if !slices.Contains(AllRuns, r) {
			return fmt.Errorf("testbed: run %q: want one of %s", r, strings.Join(AllRuns, ", "))
		}
	}
	return nil
}

// hosts is the number of hosts.
func (c Config) hosts() int {
	n := 0
	for _, h := range c.Sites {
		n += h
	}
	return n
}

// httpSeconds is how long every host takes to pull the package from the
// origin alone at its rate.
func (c Config) httpSeconds() float64 {
	return float64(c.hosts()) * float64(c.Size) * 8 / float64(c.Rates.Origin)
}

func (c Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	slow := float64(c.Size) * 8 / float64(c.SlowRate)
	return time.Duration(3*max(c.httpSeconds(), slow)*float64(time.Second)) + time.Minute
}

func (c Config) stall() time.Duration {
	if c.Stall > 0 {
		return c.Stall
	}
	return time.Minute
}

// ParseBits reads a rate in bits/s: "100mbit", "1gbit", "64kbit" or a
// number of bits/s.
func ParseBits(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "/s"), "bit")
	mult := 1.0
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1e3, strings.TrimSuffix(t, "k")
	case strings.HasSuffix(t, "m"):
		mult, t = 1e6, strings.TrimSuffix(t, "m")
	case strings.HasSuffix(t, "g"):
		mult, t = 1e9, strings.TrimSuffix(t, "g")
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("rate %q: want e.g. 100mbit, 1gbit or bits/s", s)
	}
	return int64(v * mult), nil
}

// FormatBits writes a rate as ParseBits reads it.
func FormatBits(b int64) string {
	switch {
	case b%1e9 == 0:
		return strconv.FormatInt(b/1e9, 10) + "gbit"
	case b%1e6 == 0:
		return strconv.FormatInt(b/1e6, 10) + "mbit"
	case b%1e3 == 0:
		return strconv.FormatInt(b/1e3, 10) + "kbit"
	}
	return strconv.FormatInt(b, 10) + "bit"
}
