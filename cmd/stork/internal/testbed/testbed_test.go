package testbed

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/storkpm/stork/simulations"
)

func TestParseSent(t *testing.T) {
	t.Parallel()
	out := "qdisc tbf 8001: root refcnt 2 rate 100Mbit burst 128Kb lat 50ms \n Sent 123456 bytes 789 pkt (dropped 1, overlimits 2 requeues 0) \n backlog 0b 0p requeues 0\n"
	got, err := parseSent(out)
	if err != nil || got != (Counter{Bytes: 123456, Packets: 789, Dropped: 1}) {
		t.Fatalf("parseSent = %+v, %v, want {123456 789 1}", got, err)
	}
	if _, err := parseSent("qdisc noqueue 0: root refcnt 2\n"); err == nil {
		t.Fatal("parseSent of a qdisc without counters: no error")
	}
	if p := (Counter{Bytes: 1514*10 + 66*5, Packets: 15}).Payload(); p != 1448*10 {
		t.Fatalf("Payload of 10 full segments and 5 ACKs = %d, want %d", p, 1448*10)
	}
}

func TestParseBits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want int64
	}{{"100mbit", 100e6}, {"1gbit", 1e9}, {"1Gbit/s", 1e9}, {"64kbit", 64e3}, {"1.5mbit", 1.5e6}, {"2500", 2500}} {
		got, err := ParseBits(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseBits(%q) = %d, %v, want %d", c.in, got, err, c.want)
		}
		if back, err := ParseBits(FormatBits(got)); err != nil || back != got {
			t.Errorf("ParseBits(FormatBits(%d)) = %d, %v", got, back, err)
		}
	}
	for _, bad := range []string{"", "fast", "-1mbit", "0"} {
		if _, err := ParseBits(bad); err == nil {
			t.Errorf("ParseBits(%q): no error", bad)
		}
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	p, err := NewPlan([]int{3, 2})
	if err != nil {
		t.Fatal(err)
	}
	hs := p.Hosts()
	if len(hs) != 5 || hs[0].Name != "s1h1" || hs[3].Name != "s2h1" || hs[3].IP != "10.77.2.1" || hs[2].Site != 1 {
		t.Fatalf("Hosts() = %+v", hs)
	}
	seen := map[string]bool{}
	for _, ns := range p.Namespaces() {
		if seen[ns] || runOf(ns) != os.Getpid() {
			t.Fatalf("namespace %q: duplicate or not named for this process", ns)
		}
		seen[ns] = true
	}
	for _, name := range []string{"stk-x-r", "stk--r", "other-12-r", "stk-12"} {
		if runOf(name) != 0 {
			t.Errorf("runOf(%q) = %d, want 0", name, runOf(name))
		}
	}
	if _, err := NewPlan([]int{2, 0}); err == nil {
		t.Error("NewPlan with an empty site: no error")
	}
}

// TestOverlayNote: the report says when a run's fetches began before every
// daemon saw every other, and says nothing for a whole overlay or a run
// without daemons.
func TestOverlayNote(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		fewest, hosts int
		want          string
	}{{9, 12, "saw 9 of the 11 others"}, {0, 5, "saw 0 of the 4 others"}, {11, 12, ""}, {-1, 12, ""}, {0, 1, ""}, {0, 0, ""}} {
		got := overlayNote(c.fewest, c.hosts)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("overlayNote(%d, %d) = %q, want %q", c.fewest, c.hosts, got, c.want)
		}
	}
	r := &RunResult{Name: RunSwarm, FewestPeers: 2, Hosts: make([]HostResult, 5)}
	b := &bed{result: &Result{Runs: []*RunResult{r}}}
	var w bytes.Buffer
	b.reportRuns(&w)
	if !strings.Contains(w.String(), "- swarm: the fetches began with the overlay incomplete") {
		t.Errorf("the runs' section does not say the overlay was incomplete:\n%s", w.String())
	}
}

// TestDaemonSiteFlags: --site and --no-site-inference are found in `stork
// daemon --help` as flags, not as parts of other flags' names or text.
func TestDaemonSiteFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		help          string
		site, noInfer bool
	}{
		{"   --scrub-rate RATE  scrub at RATE\n   --seed ADDR  ...", false, false},
		{"   --site NAME  this host's site (NAME) [$STORK_SITE]\n", true, false},
		{"   --site NAME  the site\n   --no-site-inference  no site when none is given\n", true, true},
		{"   --site-cache DIR  (a --site-like name)\n   --no-site-inference-x", false, false},
	} {
		if site, noInfer := daemonSiteFlags(c.help); site != c.site || noInfer != c.noInfer {
			t.Errorf("daemonSiteFlags(%q) = %v, %v, want %v, %v", c.help, site, noInfer, c.site, c.noInfer)
		}
	}
}

func TestRoundRobin(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		sites []int
		want  bool
	}{{[]int{4, 4, 4}, true}, {[]int{3, 2}, true}, {[]int{4, 4, 3}, true}, {[]int{2, 3}, false}, {[]int{5, 1}, false}, {[]int{1}, true}} {
		if got := roundRobin(c.sites); got != c.want {
			t.Errorf("roundRobin(%v) = %v, want %v", c.sites, got, c.want)
		}
	}
}

func TestPayloadFraction(t *testing.T) {
	t.Parallel()
	if got, want := payloadFraction(1500), 1448.0/1514; math.Abs(got-want) > 1e-12 {
		t.Fatalf("payloadFraction(1500) = %v, want %v", got, want)
	}
}

// TestSimFiguresSites: the simulator's per-site copies add up to what
// crossed into the sites, and the HTTP-only strategy pulls one copy per
// host through each site's uplink.
func TestSimFiguresSites(t *testing.T) {
	t.Parallel()
	b := &bed{cfg: DefaultConfig(), pkg: PackageInfo{Bytes: 8 << 20, Chunks: 8}}
	b.cfg.Sites = []int{3, 2}
	fig, err := simFigures(b.scenario(), "origin-per-host", 1, b.cfg.Sites)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(fig.OriginCopies-5) > 0.01 || math.Abs(fig.SiteCopies[0]-3) > 0.01 || math.Abs(fig.SiteCopies[1]-2) > 0.01 {
		t.Fatalf("origin-per-host: origin %.3f copies, sites %v; want 5, [3 2]", fig.OriginCopies, fig.SiteCopies)
	}
}

// needRoot skips a test that builds namespaces where it cannot.
func needRoot(t *testing.T) {
	t.Helper()
	if err := Check(false); err != nil {
		t.Skipf("testbed network: %v", err)
	}
}

// inNS runs f on a thread in network namespace ns (the thread is dropped
// afterwards).
func inNS(t *testing.T, ns string, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		fd, err := unix.Open(filepath.Join("/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("enter %s: %v", ns, err)
	}
}

// listen opens a TCP listener on addr inside ns.
func listen(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	inNS(t, ns, func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// dial connects from ns to addr within limit.
func dial(t *testing.T, ns, addr string, limit time.Duration) error {
	t.Helper()
	var err error
	inNS(t, ns, func() {
		var c net.Conn
		if c, err = net.DialTimeout("tcp", addr, limit); err == nil {
			c.Close()
		}
	})
	return err
}

// TestNetFaults builds a two-site network (no delay) and checks that hosts
// reach each other and the origin, that CutSite cuts a site from the
// repository site only and restores it, that SetLink takes a host off and
// back, that the counters count, and that Close leaves no namespace.
func TestNetFaults(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	plan, err := NewPlan([]int{2, 1})
	if err != nil {
		t.Fatal(err)
	}
	n, err := Build(ctx, NetConfig{Plan: plan, Rates: Rates{Host: 1e9, Uplink: 100e6, Origin: 100e6}, Logs: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			n.Close()
		}
	}()
	hs := plan.Hosts()
	origin := listen(t, plan.OriginNS(), plan.OriginIP()+":0").Addr().String()
	peer := listen(t, hs[0].NS, hs[0].IP+":0").Addr().String()
	c0, err := n.ReadCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 2 * time.Second
	if err := dial(t, hs[2].NS, origin, limit); err != nil {
		t.Fatalf("s2h1 to the origin: %v", err)
	}
	if err := n.CutSite(ctx, 2, true); err != nil {
		t.Fatal(err)
	}
	if err := dial(t, hs[2].NS, origin, limit); err == nil {
		t.Fatal("s2h1 reached the origin with site 2 cut off")
	}
	if err := dial(t, hs[2].NS, peer, limit); err != nil {
		t.Fatalf("s2h1 to s1h1 with site 2 cut off from the origin: %v", err)
	}
	if err := dial(t, hs[1].NS, origin, limit); err != nil {
		t.Fatalf("s1h2 to the origin with site 2 cut off: %v", err)
	}
	if err := n.CutSite(ctx, 2, false); err != nil {
		t.Fatal(err)
	}
	if err := dial(t, hs[2].NS, origin, limit); err != nil {
		t.Fatalf("s2h1 to the origin after the cut was undone: %v", err)
	}
	if err := n.SetLink(ctx, hs[1], false); err != nil {
		t.Fatal(err)
	}
	if err := dial(t, hs[1].NS, peer, limit); err == nil {
		t.Fatal("s1h2 reached s1h1 with its link down")
	}
	if err := n.SetLink(ctx, hs[1], true); err != nil {
		t.Fatal(err)
	}
	if err := dial(t, hs[1].NS, peer, limit); err != nil {
		t.Fatalf("s1h2 to s1h1 with its link up again: %v", err)
	}
	if err := dial(t, hs[1].NS, origin, limit); err != nil {
		t.Fatalf("s1h2 to the origin (through the router) with its link up again: %v", err)
	}
	c1, err := n.ReadCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := c1.Sub(c0)
	if d.SiteIn[1].Packets == 0 || d.SiteOut[1].Packets == 0 || d.OriginOut.Packets == 0 || d.HostOut["s2h1"].Packets == 0 {
		t.Fatalf("counters did not move: %+v", d)
	}
	n.Close()
	closed = true
	out, err := output(ctx, "ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, plan.Prefix) {
		t.Fatalf("namespaces left after Close:\n%s", out)
	}
}

// TestServedChunks reads the origin's request log as `stork --debug repo
// serve` writes it, as text or JSON: only whole GETs of chunks count, each
// chunk once.
func TestServedChunks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := &bed{repo: filepath.Join(dir, "repo")}
	if err := os.MkdirAll(filepath.Join(b.repo, "chunks"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"bafkreia", "bafkreib", "bafkreic"} {
		if err := os.WriteFile(filepath.Join(b.repo, "chunks", c), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	line := func(method, path string, status int) string {
		return "time=2026-01-01T00:00:00Z level=DEBUG msg=request component=repo-server method=" + method + " path=" + path + " status=" + strconv.Itoa(status) + " remote=10.77.1.1:5000\n"
	}
	log := filepath.Join(dir, "origin.log")
	body := line("GET", "/chunks/bafkreia", 200) + line("GET", "/chunks/bafkreia", 200) + line("HEAD", "/chunks/bafkreib", 200) +
		line("GET", "/chunks/bafkreic", 404) + line("GET", "/metadata/timestamp.json", 200) +
		`{"time":"2026-01-01T00:00:00Z","level":"DEBUG","msg":"request","component":"repo-server","method":"GET","path":"/chunks/bafkreib","status":200,"remote":"10.77.1.1:5000"}` + "\n" +
		`{"time":"2026-01-01T00:00:00Z","level":"DEBUG","msg":"request","component":"repo-server","method":"GET","path":"/chunks/bafkreic","status":206,"remote":"10.77.1.1:5000"}` + "\n"
	if err := os.WriteFile(log, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	served, want, err := b.servedChunks(log)
	if err != nil || served != 2 || want != 3 {
		t.Fatalf("servedChunks = %d, %d, %v; want 2 of 3", served, want, err)
	}
}

// TestDebPackage: whole .deb files, in name order, while they fit.
func TestDebPackage(t *testing.T) {
	t.Parallel()
	src, dst := t.TempDir(), t.TempDir()
	for name, size := range map[string]int{"a.deb": 300, "b.deb": 500, "c.deb": 100, "notes.txt": 50} {
		if err := os.WriteFile(filepath.Join(src, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	info, err := debPackage(src, dst, 450)
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dst)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if info.Files != 2 || info.Bytes != 400 || info.Chunks != 2 || strings.Join(names, ",") != "a.deb,c.deb" {
		t.Fatalf("debPackage(450) = %+v with %v, want a.deb and c.deb, 400 bytes", info, names)
	}
	if _, err := debPackage(src, t.TempDir(), 50); err == nil {
		t.Fatal("debPackage with no .deb small enough: no error")
	}
}

// TestScenarioModelsDaemons: the testbed's daemons run without an upload
// cap, so the scenario has the simulator send a cancelled chunk whole, as
// they do; they fetch from the origin cooperatively (pull-through), so
// the swarm run is modelled by swarm-coop, and given --site in two levels
// with the site rule, so the swarm-sites run is modelled by swarm-sites.
func TestScenarioModelsDaemons(t *testing.T) {
	t.Parallel()
	b := &bed{cfg: DefaultConfig(), pkg: PackageInfo{Bytes: 8 << 20, Chunks: 8}}
	if sc := b.scenario(); !sc.WriteAhead {
		t.Errorf("scenario().WriteAhead = false, want true (daemons without an upload cap)")
	}
	want := map[string]simulations.Strategy{RunHTTP: simulations.OriginPerHost, RunSwarm: simulations.SwarmCoop, RunSwarmSites: simulations.SwarmSites}
	for _, m := range simStrategies {
		if want[m.run] != m.strategy {
			t.Errorf("run %s modelled by %s, want %s", m.run, m.strategy, want[m.run])
		}
	}
}

// cpuRun is a run of 4 hosts that each received 8 MiB, 6 of the 32 MiB
// crossing into a site in copies of into, with CPU p per byte and q per
// byte into a site, and the forwarder's d per byte into a site.
func cpuRun(name string, into, p, q, d float64) *RunResult {
	const size = 8 << 20
	r := &RunResult{Name: name, Size: size, OriginSent: size, Makespan: 10}
	for k := range 4 {
		r.Hosts = append(r.Hosts, HostResult{Host: Host{Name: fmt.Sprintf("h%d", k)}, Done: 10, FromOrigin: size / 4, FromPeers: size - size/4})
	}
	in := int64(into * size)
	r.Links.SiteIn = []Counter{{Bytes: in/2 + wireOverhead, Packets: 1}, {Bytes: in - in/2 + wireOverhead, Packets: 1}}
	recv := float64(4 * size)
	r.CPU = p*recv + q*float64(in)
	r.DelayCPU = d * float64(in)
	return r
}

// TestSimulateWritesCPU: the scenario file carries the machine's cores
// and the CPU the swarm runs measured, split between every byte and the
// bytes into a site; each swarm run is simulated with the CPU of each
// calibration, and the report shows them beside the makespan without.
func TestSimulateWritesCPU(t *testing.T) {
	t.Parallel()
	const p, q, d = 100e-9, 150e-9, 40e-9
	b := &bed{cfg: DefaultConfig(), pkg: PackageInfo{Bytes: 8 << 20, Chunks: 8}, result: &Result{}}
	b.cfg.Sites = []int{2, 2}
	b.cfg.Dir = t.TempDir()
	b.cfg.Seeds = 1
	b.result.Runs = []*RunResult{cpuRun(RunSwarm, 2.5, p, q, d), cpuRun(RunSwarmSites, 1.2, p, q, d)}
	figs, err := b.simulate()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := simulations.LoadScenario(filepath.Join(b.cfg.Dir, ScenarioFile))
	if err != nil {
		t.Fatal(err)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-6*b }
	if c := sc.CPU; c.Cores != float64(runtime.NumCPU()) || !near(c.PerByte, p) || !near(c.PerOriginByte, p) || !near(c.PerWANByte, q+d) {
		t.Errorf("%s cpu %+v, want cores %d, per_byte and per_origin_byte %g, per_wan_byte %g", ScenarioFile, c, runtime.NumCPU(), p, q+d)
	}
	if len(figs) != 2 {
		t.Fatalf("%d strategies simulated, want 2 (the two swarm runs)", len(figs))
	}
	for _, f := range figs {
		if len(f.CPU) != 3 {
			t.Fatalf("%s: %d CPU calibrations, want 3 (this run, the other, both split)", f.Run, len(f.CPU))
		}
		for _, c := range f.CPU {
			if !(c.Makespan > f.Makespan) || !(c.Makespan >= c.Floor*0.95) || c.Floor <= 0 {
				t.Errorf("%s, CPU from %s: makespan %.3fs (floor %.3fs), without CPU %.3fs: want slower, above the floor", f.Run, c.Calibration, c.Makespan, c.Floor, f.Makespan)
			}
		}
	}
	b.result.Sim = figs
	var w bytes.Buffer
	b.reportSim(&w)
	if !strings.Contains(w.String(), "### The makespan with the machine's CPU") || !strings.Contains(w.String(), "| swarm-sites | swarm-sites | 10.0 |") {
		t.Errorf("report without the CPU table:\n%s", w.String())
	}
}

// TestRunCPU: a run's own costs are its CPU per byte received and its
// forwarder's per byte into a site; two runs whose crossing shares are
// alike do not split.
func TestRunCPU(t *testing.T) {
	t.Parallel()
	r := cpuRun(RunSwarm, 2, 20e-9, 0, 8e-9)
	c, ok := runCPU(r, 2)
	if !ok || c.Cores != 2 || math.Abs(c.PerByte-20e-9) > 1e-15 || math.Abs(c.PerWANByte-8e-9) > 1e-15 {
		t.Errorf("runCPU = %+v, %v; want cores 2, per_byte 20e-9, per_wan_byte 8e-9", c, ok)
	}
	if _, ok := splitCPU(r, cpuRun(RunSwarmSites, 2.02, 20e-9, 0, 8e-9), 2); ok {
		t.Errorf("splitCPU of two runs with the same crossing share: ok, want not")
	}
	if _, ok := runCPU(&RunResult{Name: RunSwarm, Size: 1}, 2); ok {
		t.Errorf("runCPU of a run that moved nothing: ok, want not")
	}
}
