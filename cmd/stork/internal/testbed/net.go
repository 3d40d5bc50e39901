package testbed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Rates are link capacities in bits/s, each applied in both directions by
// a tbf qdisc on the sending end of the link.
type Rates struct {
	Host   int64 // every host's link to its site switch
	Uplink int64 // every site's link to the router
	Origin int64 // the repository's link to the router
}

// NetConfig configures Build.
type NetConfig struct {
	Plan  Plan
	Rates Rates
	// MTU of every link.
	MTU int
	// Delay is the one-way delay a packet takes crossing the router (site
	// to site, site to origin); 0: none. It runs as `STORK testbed delay`
	// in the router namespace.
	Delay time.Duration
	Stork string // the stork binary (for the delay forwarder)
	Logs  string // directory for the forwarder's log
	Log   *slog.Logger
}

// Net is a built testbed network.
type Net struct {
	cfg   NetConfig
	made  []string // namespaces created, in order
	delay *proc
	cuts  map[int]bool
}

// delayTable is the routing table that sends every routed packet of the
// router namespace into the delay device.
const delayTable = "100"

// Build creates the network of cfg.Plan. On failure it removes whatever it
// made before returning.
func Build(ctx context.Context, cfg NetConfig) (n *Net, err error) {
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	n = &Net{cfg: cfg, cuts: map[int]bool{}}
	defer func() {
		if err != nil {
			n.Close()
			n = nil
		}
	}()
	p := cfg.Plan
	for _, ns := range p.Namespaces() {
		if err := ip(ctx, "netns", "add", ns); err != nil {
			return nil, err
		}
		n.made = append(n.made, ns)
		if err := ip(ctx, "-n", ns, "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
	}
	if err := n.buildRouter(ctx); err != nil {
		return nil, err
	}
	for s := range p.Sites {
		if err := n.buildSite(ctx, s+1); err != nil {
			return nil, err
		}
	}
	if cfg.Delay > 0 {
		if err := n.startDelay(ctx); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// buildRouter makes the router namespace, its link to the origin and the
// origin's address.
func (n *Net) buildRouter(ctx context.Context) error {
	p, r, mtu := n.cfg.Plan, n.cfg.Plan.RouterNS(), strconv.Itoa(n.cfg.MTU)
	for _, kv := range []string{"net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		"net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0"} {
		if err := run(ctx, "ip", "netns", "exec", r, "sysctl", "-qw", kv); err != nil {
			return err
		}
	}
	if err := ip(ctx, "-n", r, "link", "add", "o", "mtu", mtu, "type", "veth", "peer", "name", "eth0", "netns", p.OriginNS(), "mtu", mtu); err != nil {
		return err
	}
	steps := [][]string{
		{"-n", r, "addr", "add", "10.77.0.254/24", "dev", "o"},
		{"-n", r, "link", "set", "o", "up"},
		{"-n", p.OriginNS(), "addr", "add", p.OriginIP() + "/24", "dev", "eth0"},
		{"-n", p.OriginNS(), "link", "set", "eth0", "up"},
		{"-n", p.OriginNS(), "route", "add", "default", "via", "10.77.0.254"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	if err := tbf(ctx, r, "o", n.cfg.Rates.Origin, n.cfg.MTU); err != nil {
		return err
	}
	return tbf(ctx, p.OriginNS(), "eth0", n.cfg.Rates.Origin, n.cfg.MTU)
}

// buildSite makes site s: its switch (a bridge), its uplink to the router
// and its hosts' links.
func (n *Net) buildSite(ctx context.Context, s int) error {
	p, r, sw, mtu := n.cfg.Plan, n.cfg.Plan.RouterNS(), n.cfg.Plan.SwitchNS(s), strconv.Itoa(n.cfg.MTU)
	dev := "s" + strconv.Itoa(s)
	steps := [][]string{
		{"-n", sw, "link", "add", "br0", "mtu", mtu, "type", "bridge"},
		{"-n", sw, "link", "set", "br0", "up"},
		{"-n", r, "link", "add", dev, "mtu", mtu, "type", "veth", "peer", "name", "uplink", "netns", sw, "mtu", mtu},
		{"-n", sw, "link", "set", "uplink", "master", "br0", "up"},
		{"-n", r, "addr", "add", fmt.Sprintf("10.77.%d.254/24", s), "dev", dev},
		{"-n", r, "link", "set", dev, "up"},
	}
	for _, h := range p.Hosts() {
		if h.Site != s {
			continue
		}
		port := "h" + strconv.Itoa(h.Index)
		steps = append(steps,
			[]string{"-n", h.NS, "link", "add", "eth0", "mtu", mtu, "type", "veth", "peer", "name", port, "netns", sw, "mtu", mtu},
			[]string{"-n", sw, "link", "set", port, "master", "br0", "up"},
			[]string{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
			[]string{"-n", h.NS, "link", "set", "eth0", "up"},
			[]string{"-n", h.NS, "route", "add", "default", "via", fmt.Sprintf("10.77.%d.254", s)},
		)
	}
	for _, st := range steps {
		if err := ip(ctx, st...); err != nil {
			return err
		}
	}
	if err := tbf(ctx, r, dev, n.cfg.Rates.Uplink, n.cfg.MTU); err != nil {
		return err
	}
	if err := tbf(ctx, sw, "uplink", n.cfg.Rates.Uplink, n.cfg.MTU); err != nil {
		return err
	}
	for _, h := range p.Hosts() {
		if h.Site == s {
			if err := n.SetHostRate(ctx, h, n.cfg.Rates.Host); err != nil {
				return err
			}
		}
	}
	return nil
}

// startDelay starts the delay forwarder in the router namespace and sends
// every routed packet through it: packets that come out of the device are
// routed by the main table, every other one into the device.
func (n *Net) startDelay(ctx context.Context) error {
	r := n.cfg.Plan.RouterNS()
	logf := filepath.Join(n.cfg.Logs, "delay.log")
	p, err := startProc("delay", logf, "ip", "netns", "exec", r, n.cfg.Stork, "testbed", "delay",
		"--dev", "tun0", "--delay", n.cfg.Delay.String(), "--mtu", strconv.Itoa(n.cfg.MTU))
	if err != nil {
		return err
	}
	n.delay = p
	deadline := time.Now().Add(10 * time.Second)
	for ; ; time.Sleep(50 * time.Millisecond) {
		if ip(ctx, "-n", r, "link", "show", "tun0") == nil {
			break
		}
		if time.Now().After(deadline) || p.exited() {
			return fmt.Errorf("delay forwarder: tun0 not up within 10s: %s", tail(logf, 3))
		}
	}
	steps := [][]string{
		{"-n", r, "link", "set", "tun0", "mtu", strconv.Itoa(n.cfg.MTU), "up"},
		{"-n", r, "route", "add", "default", "dev", "tun0", "table", delayTable},
		{"-n", r, "rule", "add", "pref", "100", "iif", "tun0", "lookup", "main"},
		{"-n", r, "rule", "add", "pref", "200", "lookup", delayTable},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return run(ctx, "ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.conf.tun0.rp_filter=0")
}

// Close stops the delay forwarder and deletes every namespace Build made
// (with them their links, bridges and qdiscs). Processes started in the
// namespaces must be stopped first.
func (n *Net) Close() {
	if n.delay != nil {
		n.delay.stop(5 * time.Second)
		n.delay = nil
	}
	for i := len(n.made) - 1; i >= 0; i-- {
		if err := ip(context.Background(), "netns", "del", n.made[i]); err != nil {
			n.cfg.Log.Warn("testbed: delete namespace", "ns", n.made[i], "err", err)
		}
	}
	n.made = nil
}

// DelayCPU is the CPU seconds the delay forwarder has used (0 without one).
func (n *Net) DelayCPU() float64 {
	if n.delay == nil {
		return 0
	}
	return n.delay.cpu()
}

// Reset undoes every fault: all links up with their default routes, host
// links at their rate, no site cut off.
func (n *Net) Reset(ctx context.Context) error {
	for _, h := range n.cfg.Plan.Hosts() {
		if err := n.SetLink(ctx, h, true); err != nil {
			return err
		}
		if err := n.SetHostRate(ctx, h, n.cfg.Rates.Host); err != nil {
			return err
		}
	}
	for s := range n.cfg.Plan.Sites {
		n.cuts[s+1] = true // delete the rules whether or not they are there
		_ = n.CutSite(ctx, s+1, false)
		n.cuts[s+1] = false
	}
	return nil
}

// SetHostRate caps host h's link at bits/s both ways.
func (n *Net) SetHostRate(ctx context.Context, h Host, bits int64) error {
	if err := tbf(ctx, h.NS, "eth0", bits, n.cfg.MTU); err != nil {
		return err
	}
	return tbf(ctx, n.cfg.Plan.SwitchNS(h.Site), "h"+strconv.Itoa(h.Index), bits, n.cfg.MTU)
}

// SetLink takes host h's link down or up (its end: the switch sees no
// carrier). Taking a link down drops the routes through it; up restores
// the default route, as a host's network configuration would.
func (n *Net) SetLink(ctx context.Context, h Host, up bool) error {
	if !up {
		return ip(ctx, "-n", h.NS, "link", "set", "eth0", "down")
	}
	if err := ip(ctx, "-n", h.NS, "link", "set", "eth0", "up"); err != nil {
		return err
	}
	return ip(ctx, "-n", h.NS, "route", "replace", "default", "via", fmt.Sprintf("10.77.%d.254", h.Site))
}

// CutSite drops every packet between site s and the repository site (not
// those between s and other sites) in the router, silently, as a broken
// WAN path does; cut false restores the path.
func (n *Net) CutSite(ctx context.Context, s int, cut bool) error {
	if n.cuts[s] == cut {
		return nil
	}
	op := "add"
	if !cut {
		op = "del"
	}
	site, origin := fmt.Sprintf("10.77.%d.0/24", s), "10.77.0.0/24"
	for i, fromTo := range [][2]string{{site, origin}, {origin, site}} {
		pref := strconv.Itoa(10 + 2*s + i)
		if err := ip(ctx, "-n", n.cfg.Plan.RouterNS(), "rule", op, "pref", pref, "from", fromTo[0], "to", fromTo[1], "blackhole"); err != nil {
			return err
		}
	}
	n.cuts[s] = cut
	return nil
}

// Counter is what a qdisc has sent: bytes on the wire (Ethernet, IP and
// TCP headers included) and packets; and the packets it dropped (its
// queue full), which TCP sends again.
type Counter struct {
	Bytes, Packets, Dropped int64
}

// Sub returns c - o.
func (c Counter) Sub(o Counter) Counter {
	return Counter{c.Bytes - o.Bytes, c.Packets - o.Packets, c.Dropped - o.Dropped}
}

// wireOverhead is the bytes of headers a TCP segment carries on these
// links: Ethernet 14, IPv4 20, TCP 20 plus the timestamp option 12.
const wireOverhead = 66

// Payload estimates the TCP payload in c: its bytes less one set of
// headers per packet (pure ACKs carry none).
func (c Counter) Payload() int64 { return max(0, c.Bytes-wireOverhead*c.Packets) }

// Counters is a snapshot of the links' counters.
type Counters struct {
	SiteIn, SiteOut []Counter // per site (index site-1): into it over its uplink, out of it
	OriginOut       Counter
	HostIn, HostOut map[string]Counter // by host name
}

// Sub returns c - o.
func (c Counters) Sub(o Counters) Counters {
	d := Counters{OriginOut: c.OriginOut.Sub(o.OriginOut), HostIn: map[string]Counter{}, HostOut: map[string]Counter{}}
	for i := range c.SiteIn {
		d.SiteIn = append(d.SiteIn, c.SiteIn[i].Sub(o.SiteIn[i]))
		d.SiteOut = append(d.SiteOut, c.SiteOut[i].Sub(o.SiteOut[i]))
	}
	for k, v := range c.HostIn {
		d.HostIn[k] = v.Sub(o.HostIn[k])
		d.HostOut[k] = c.HostOut[k].Sub(o.HostOut[k])
	}
	return d
}

// ReadCounters reads every link's tbf counters. A host's counters survive
// SetHostRate only if read before it: callers snapshot after changing
// rates.
func (n *Net) ReadCounters(ctx context.Context) (Counters, error) {
	p := n.cfg.Plan
	c := Counters{HostIn: map[string]Counter{}, HostOut: map[string]Counter{}}
	var err error
	if c.OriginOut, err = qdiscSent(ctx, p.OriginNS(), "eth0"); err != nil {
		return c, err
	}
	for s := range p.Sites {
		in, err := qdiscSent(ctx, p.RouterNS(), "s"+strconv.Itoa(s+1))
		if err != nil {
			return c, err
		}
		out, err := qdiscSent(ctx, p.SwitchNS(s+1), "uplink")
		if err != nil {
			return c, err
		}
		c.SiteIn, c.SiteOut = append(c.SiteIn, in), append(c.SiteOut, out)
	}
	for _, h := range p.Hosts() {
		in, err := qdiscSent(ctx, p.SwitchNS(h.Site), "h"+strconv.Itoa(h.Index))
		if err != nil {
			return c, err
		}
		out, err := qdiscSent(ctx, h.NS, "eth0")
		if err != nil {
			return c, err
		}
		c.HostIn[h.Name], c.HostOut[h.Name] = in, out
	}
	return c, nil
}

// tbf sets (or replaces) dev's root qdisc in ns to a token bucket of bits/s.
// The bucket holds 5 ms at the rate and at least 128 KiB, so that a 64 KiB
// segmentation-offload packet passes whole; the queue holds 50 ms.
func tbf(ctx context.Context, ns, dev string, bits int64, mtu int) error {
	burst := max(bits/8/200, 128<<10, int64(2*mtu))
	return run(ctx, "tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", strconv.FormatInt(bits, 10)+"bit", "burst", strconv.FormatInt(burst, 10), "latency", "50ms")
}

var sentRe = regexp.MustCompile(`Sent (\d+) bytes (\d+) pkt \(dropped (\d+)`)

// parseSent reads the first "Sent N bytes M pkt (dropped D" of `tc -s
// qdisc show`.
func parseSent(out string) (Counter, error) {
	m := sentRe.FindStringSubmatch(out)
	if m == nil {
		return Counter{}, fmt.Errorf("no counters in %q", firstLine(out))
	}
	b, _ := strconv.ParseInt(m[1], 10, 64)
	p, _ := strconv.ParseInt(m[2], 10, 64)
	d, _ := strconv.ParseInt(m[3], 10, 64)
	return Counter{Bytes: b, Packets: p, Dropped: d}, nil
}

func qdiscSent(ctx context.Context, ns, dev string) (Counter, error) {
	out, err := output(ctx, "tc", "-n", ns, "-s", "qdisc", "show", "dev", dev)
	if err != nil {
		return Counter{}, err
	}
	c, err := parseSent(out)
	if err != nil {
		return c, fmt.Errorf("tc %s %s: %w", ns, dev, err)
	}
	return c, nil
}

func ip(ctx context.Context, args ...string) error { return run(ctx, "ip", args...) }

func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

// output runs a command and returns its standard output; an error names
// the command and carries its first line of error output.
func output(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, firstLine(stderr.String()))
	}
	return string(out), nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

// tail returns the last n lines of a file, joined by "; ".
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "; ")
}

// Clean deletes the namespaces of testbed runs whose process is gone (all
// of them with force, the live ones included) and returns their names.
func Clean(ctx context.Context, force bool) ([]string, error) {
	out, err := output(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var gone []string
	var errs []error
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		name, _, _ := strings.Cut(sc.Text(), " ")
		pid := runOf(name)
		if pid == 0 || (!force && alive(pid)) {
			continue
		}
		if err := ip(ctx, "netns", "del", name); err != nil {
			errs = append(errs, err)
			continue
		}
		gone = append(gone, name)
	}
	return gone, errors.Join(errs...)
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}
