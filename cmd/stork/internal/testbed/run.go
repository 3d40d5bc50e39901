package testbed

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Result is what Run measured.
type Result struct {
	// SitesSupported: the binary's daemon takes --site.
	SitesSupported bool
	// Package: what was published.
	Package PackageInfo
	Runs    []*RunResult
	// Sim: the simulator on the same scenario.
	Sim []SimFigures
	// Failed lists what went wrong: a host that could complete and did
	// not, a store that did not verify, a run that could not start.
	Failed []string
	// Started and Took: the whole testbed.
	Started time.Time
	Took    time.Duration
}

// PackageInfo describes the package the runs fetch.
type PackageInfo struct {
	Name   string
	Source string // "random bytes" or "N .deb files from DIR"
	Bytes  int64
	Files  int
	Chunks int // each file cut into 1 MiB chunks, its last one shorter
}

// bed is one testbed while it runs.
type bed struct {
	cfg   Config
	plan  Plan
	net   *Net
	logs  string // Dir/logs
	work  string // Dir/work: repository, hosts' data
	repo  string
	root  string
	pkg   PackageInfo
	sites bool // daemon takes --site
	// noInfer: the daemon takes --no-site-inference; the runs without
	// --site give it, so they have no site preference at all.
	noInfer bool
	log     *slog.Logger
	out     io.Writer
	result  *Result
}

// Run builds the testbed of cfg, does its runs one after the other, runs
// the simulator on the same scenario, writes the report in cfg.Dir and
// removes the testbed, also when it fails or ctx ends. It needs root, ip,
// tc and (with a delay) /dev/net/tun.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := Check(cfg.Delay > 0); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	cfg.Dir = dir
	plan, err := NewPlan(cfg.Sites)
	if err != nil {
		return nil, err
	}
	b := &bed{cfg: cfg, plan: plan, log: cfg.Log, out: cfg.Progress, result: &Result{Started: time.Now()}}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.out == nil {
		b.out = io.Discard
	}
	b.logs, b.work = filepath.Join(cfg.Dir, "logs"), filepath.Join(cfg.Dir, "work")
	for _, d := range []string{b.logs, b.work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("testbed: %w", err)
		}
	}
	defer os.RemoveAll(b.work)
	b.sites, b.noInfer = siteSupport(ctx, cfg.Stork)
	b.result.SitesSupported = b.sites
	if err := b.publish(ctx); err != nil {
		return nil, err
	}
	b.result.Package = b.pkg
	b.say("network: %d sites (%s hosts), router, repository site; hosts %s, uplinks %s, origin %s, delay %v one way, MTU %d",
		len(cfg.Sites), joinInts(cfg.Sites), FormatBits(cfg.Rates.Host), FormatBits(cfg.Rates.Uplink), FormatBits(cfg.Rates.Origin), cfg.Delay, cfg.MTU)
	b.net, err = Build(ctx, NetConfig{Plan: plan, Rates: cfg.Rates, MTU: cfg.MTU, Delay: cfg.Delay, Stork: cfg.Stork, Logs: b.logs, Log: b.log})
	if err != nil {
		return nil, err
	}
	defer b.net.Close()
	for _, name := range AllRuns {
		if !slices.Contains(cfg.Runs, name) {
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r := b.runOne(ctx, name)
		b.result.Runs = append(b.result.Runs, r)
		b.say("%s", r.line())
	}
	b.net.Close()
	b.result.Sim, err = b.simulate()
	if err != nil {
		b.result.Failed = append(b.result.Failed, err.Error())
	}
	b.result.Took = time.Since(b.result.Started)
	b.collectFailures()
	if err := b.writeReport(); err != nil {
		return b.result, err
	}
	return b.result, nil
}

// Check reports what the testbed lacks on this machine: root, ip, tc and,
// with tun, the TUN device.
func Check(tun bool) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s (iproute2)", ErrMissingTool, tool)
		}
	}
	if tun {
		if _, err := os.Stat("/dev/net/tun"); err != nil {
			return fmt.Errorf("%w: /dev/net/tun", ErrMissingTool)
		}
	}
	return nil
}

// siteSupport reports whether the binary's daemon takes --site and
// --no-site-inference.
func siteSupport(ctx context.Context, stork string) (site, noInfer bool) {
	out, _ := exec.CommandContext(ctx, stork, "daemon", "--help").CombinedOutput()
	return daemonSiteFlags(string(out))
}

// daemonSiteFlags reads `stork daemon --help`: whether it lists --site and
// --no-site-inference.
func daemonSiteFlags(help string) (site, noInfer bool) {
	for _, f := range strings.Fields(help) {
		switch strings.TrimRight(f, ",") {
		case "--site":
			site = true
		case "--no-site-inference":
			noInfer = true
		}
	}
	return site, noInfer
}

func (b *bed) say(format string, args ...any) {
	fmt.Fprintf(b.out, "testbed: "+format+"\n", args...)
}

// runOne does one run; a run that cannot be done says why in Skipped.
func (b *bed) runOne(ctx context.Context, name string) *RunResult {
	b.say("run %s", name)
	if err := b.net.Reset(ctx); err != nil {
		return &RunResult{Name: name, Err: "reset the network: " + err.Error(), OriginSent: -1, Size: b.pkg.Bytes}
	}
	switch name {
	case RunHTTP:
		return b.httpRun(ctx)
	case RunSwarm:
		return b.swarmRun(ctx, name, false, nil)
	case RunSwarmSites:
		if !b.sites {
			return &RunResult{Name: name, Sites: true, Skipped: "sites not supported by this binary (`stork daemon --help` has no --site)"}
		}
		return b.swarmRun(ctx, name, true, nil)
	}
	f, why := b.fault(name)
	if f == nil {
		return &RunResult{Name: name, Sites: b.sites, Skipped: why}
	}
	return b.swarmRun(ctx, name, b.sites, f)
}

// collectFailures lists hosts that could complete and did not, and stores
// that failed verification.
func (b *bed) collectFailures() {
	for _, r := range b.result.Runs {
		if r.Skipped != "" {
			continue
		}
		if r.Err != "" {
			b.result.Failed = append(b.result.Failed, fmt.Sprintf("%s: %s", r.Name, r.Err))
		}
		for _, h := range r.Hosts {
			if !h.complete() && !h.CannotComplete {
				b.result.Failed = append(b.result.Failed, fmt.Sprintf("%s: %s did not complete (held %.1f%%): %s",
					r.Name, h.Name, 100*float64(h.Have)/float64(max(1, r.Size)), orNone(h.Err)))
			}
			if h.Verified != "" && h.Verified != verifiedOK {
				b.result.Failed = append(b.result.Failed, fmt.Sprintf("%s: %s: store: %s", r.Name, h.Name, h.Verified))
			}
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "no error reported"
	}
	return s
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, "+")
}
