package testbed

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/storkpm/stork/node"
)

// daemon is one host's `stork daemon` in a run.
type daemon struct {
	host Host
	data string
	p    *proc
	c    *node.Client
	cpu0 float64
}

// runState is what a fault sees of a run while it lasts.
type runState struct {
	t0         time.Time
	origin     *proc
	originLog  string // its log: a line per request (--debug)
	originSent int64  // the origin's wchar when last read (before it stopped)
	ds         []*daemon
	have       map[string]int64 // bytes of the package each host holds
	fromOrigin map[string]int64
}

func (s *runState) since() float64 { return time.Since(s.t0).Seconds() }

// originPort is where `stork repo serve` listens in the repository site.
const originPort = "8080"

func (b *bed) originURL() string { return "http://" + b.plan.OriginIP() + ":" + originPort }

// startOrigin starts `stork repo serve` in the repository site, logging
// every request, and waits (at most 10 s) until it serves.
func (b *bed) startOrigin(ctx context.Context, run string) (*proc, error) {
	logf := b.originLog(run)
	p, err := startProc("origin", logf, "ip", "netns", "exec", b.plan.OriginNS(), b.cfg.Stork,
		"--debug", "repo", "serve", "--dir", b.repo, "--listen", b.plan.OriginIP()+":"+originPort)
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if b, _ := os.ReadFile(logf); strings.Contains(string(b), "serving") {
			return p, nil
		}
		if p.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			p.stop(5 * time.Second)
			return nil, fmt.Errorf("testbed: origin did not start within 10s: %s", tail(logf, 3))
		}
	}
}

func (b *bed) originLog(run string) string { return filepath.Join(b.logs, run+"-origin.log") }

// startDaemons starts a daemon on every host, the first one alone and the
// others bootstrapping from it, and waits until each answers (at most 30 s).
func (b *bed) startDaemons(ctx context.Context, run string, sites bool) ([]*daemon, error) {
	var ds []*daemon
	start := func(h Host, boot string) error {
		d := &daemon{host: h, data: filepath.Join(b.work, run, h.Name)}
		if err := os.MkdirAll(d.data, 0o755); err != nil {
			return fmt.Errorf("testbed: %w", err)
		}
		args := []string{"netns", "exec", h.NS, b.cfg.Stork, "daemon", "--data", d.data,
			"--listen", "/ip4/" + h.IP + "/tcp/4001", "--repo", b.originURL(), "--root", b.root,
			"--no-nat", "--refresh-interval", "1h", "--scrub-rate", "0"}
		if sites {
			args = append(args, "--site", fmt.Sprintf("s%d", h.Site))
		} else if b.noInfer {
			args = append(args, "--no-site-inference")
		}
		if boot != "" {
			args = append(args, "--bootstrap", boot)
		}
		args = append(args, b.cfg.DaemonArgs...)
		p, err := startProc("daemon "+h.Name, filepath.Join(b.logs, run+"-"+h.Name+".log"), "ip", args...)
		if err != nil {
			return err
		}
		d.p, d.c = p, node.NewClient(d.data)
		ds = append(ds, d)
		return nil
	}
	hosts := b.plan.Hosts()
	if err := start(hosts[0], ""); err != nil {
		return ds, err
	}
	st, err := waitStatus(ctx, ds[0], 30*time.Second)
	if err != nil {
		return ds, err
	}
	boot := ""
	for _, a := range st.Addrs {
		if strings.HasPrefix(a, "/ip4/"+hosts[0].IP+"/tcp/") {
			boot = a
		}
	}
	if boot == "" {
		return ds, fmt.Errorf("testbed: %s has no address on %s: %v", hosts[0].Name, hosts[0].IP, st.Addrs)
	}
	for _, h := range hosts[1:] {
		if err := start(h, boot); err != nil {
			return ds, err
		}
	}
	for _, d := range ds[1:] {
		if _, err := waitStatus(ctx, d, 30*time.Second); err != nil {
			return ds, err
		}
	}
	return ds, nil
}

// waitStatus waits until d's admin API answers.
func waitStatus(ctx context.Context, d *daemon, limit time.Duration) (*node.Status, error) {
	deadline := time.Now().Add(limit)
	for {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := d.c.Status(c)
		cancel()
		if err == nil {
			return st, nil
		}
		if d.p.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("testbed: daemon %s did not answer within %v: %w", d.host.Name, limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitOverlay waits, at most limit, until every daemon sees every other;
// it returns the fewest peers a daemon sees.
func waitOverlay(ctx context.Context, ds []*daemon, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	for {
		low := len(ds)
		for _, d := range ds {
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := d.c.Status(c)
			cancel()
			if err != nil {
				low = 0
				continue
			}
			low = min(low, st.Peers)
		}
		if low >= len(ds)-1 || time.Now().After(deadline) || ctx.Err() != nil {
			return low
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// swarmRun: fresh daemons on every host (with --site if sites), the fault
// f if any, every host fetching the package at once.
func (b *bed) swarmRun(ctx context.Context, name string, sites bool, f *fault) *RunResult {
	r := &RunResult{Name: name, Sites: sites, OriginSent: -1, Size: b.pkg.Bytes, RTTSite: math.NaN(), RTTWAN: math.NaN()}
	origin, err := b.startOrigin(ctx, name)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	s := &runState{origin: origin, originLog: b.originLog(name), have: map[string]int64{}, fromOrigin: map[string]int64{}}
	defer origin.stop(5 * time.Second)
	ds, err := b.startDaemons(ctx, name, sites)
	s.ds = ds
	defer func() {
		for _, d := range ds {
			d.p.stop(10 * time.Second)
		}
		_ = os.RemoveAll(filepath.Join(b.work, name))
	}()
	if err != nil {
		r.Err = err.Error()
		return r
	}
	r.FewestPeers = waitOverlay(ctx, ds, time.Minute)
	if note := overlayNote(r.FewestPeers, len(ds)); note != "" {
		b.log.Warn("testbed: "+note, "run", name)
	}
	r.RTTSite, r.RTTWAN = peerRTTs(ctx, ds)
	if f != nil && f.before != nil {
		if err := f.before(ctx, s); err != nil {
			r.Err = err.Error()
			return r
		}
	}
	b.fetchAll(ctx, r, s, f)
	if f != nil {
		if f.after != nil {
			f.after(context.WithoutCancel(ctx), s)
		}
		r.Fault = strings.Join(f.log, "; ")
		for i := range r.Hosts {
			r.Hosts[i].Faulted = f.targets[r.Hosts[i].Name]
		}
	}
	for _, d := range ds {
		d.p.stop(10 * time.Second)
	}
	origin.stop(5 * time.Second)
	b.verifyStores(ctx, r, ds)
	return r
}

// fetchAll has every daemon fetch the package at once and watches the
// run until every fetch ended, no host gained a byte for cfg.Stall, or
// the run's timeout; then it fills r.
func (b *bed) fetchAll(ctx context.Context, r *RunResult, s *runState, f *fault) {
	c0, err := b.net.ReadCounters(ctx)
	if err != nil {
		r.Err = err.Error()
		return
	}
	for _, d := range s.ds {
		d.cpu0 = d.p.cpu()
	}
	ocpu0, w0, dcpu0 := s.origin.cpu(), writtenBytes(s.origin.pid()), b.net.DelayCPU()
	s.originSent = w0
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make([]float64, len(s.ds))
	errs := make([]error, len(s.ds))
	var wg sync.WaitGroup
	s.t0 = time.Now()
	for i, d := range s.ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done[i] = math.NaN()
			if _, errs[i] = d.c.Fetch(fctx, b.pkg.Name, nil); errs[i] == nil {
				done[i] = time.Since(s.t0).Seconds()
			}
		}()
	}
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	r.Err = b.watch(ctx, r, s, f, all)
	cancel()
	<-all
	r.Wall = time.Since(s.t0).Seconds()
	b.fillSwarm(ctx, r, s, c0, done, errs)
	if !s.origin.exited() {
		s.originSent = writtenBytes(s.origin.pid())
	}
	if w0 >= 0 && s.originSent >= 0 {
		r.OriginSent = s.originSent - w0
	}
	r.CPU += s.origin.cpu() - ocpu0
	r.DelayCPU = b.net.DelayCPU() - dcpu0
}

// watch polls every daemon twice a second, records progress, drives the
// fault, and returns when every fetch ended ("") or why it gave up.
func (b *bed) watch(ctx context.Context, r *RunResult, s *runState, f *fault, all <-chan struct{}) string {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	deadline := s.t0.Add(b.cfg.timeout())
	var best int64
	lastGain := time.Now()
	for {
		select {
		case <-all:
			return ""
		case <-ctx.Done():
			return "interrupted"
		case <-tick.C:
		}
		total := b.poll(ctx, r, s)
		if f != nil && f.tick != nil {
			if err := f.tick(ctx, s); err != nil {
				return "fault: " + err.Error()
			}
		}
		if total > best {
			best, lastGain = total, time.Now()
		}
		switch {
		case time.Since(lastGain) > b.cfg.stall():
			return fmt.Sprintf("no host gained a byte for %v: gave up", b.cfg.stall())
		case time.Now().After(deadline):
			return fmt.Sprintf("timeout after %v", b.cfg.timeout())
		}
	}
}

// poll reads every daemon's status at once, records it in s and r.Progress
// and returns the bytes all hosts hold.
func (b *bed) poll(ctx context.Context, r *RunResult, s *runState) int64 {
	type got struct {
		have, origin int64
		ok           bool
	}
	res := make([]got, len(s.ds))
	var wg sync.WaitGroup
	for i, d := range s.ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			st, err := d.c.Status(c)
			if err != nil {
				return
			}
			res[i] = got{have: packageHave(st, b.pkg.Name), origin: st.BytesFromOrigin, ok: true}
		}()
	}
	wg.Wait()
	t := s.since()
	var total int64
	for i, d := range s.ds {
		if res[i].ok {
			s.have[d.host.Name], s.fromOrigin[d.host.Name] = res[i].have, res[i].origin
		}
		total += s.have[d.host.Name]
		r.Progress = append(r.Progress, Sample{T: t, Host: d.host.Name, Have: s.have[d.host.Name]})
	}
	if !s.origin.exited() {
		if w := writtenBytes(s.origin.pid()); w >= 0 {
			s.originSent = w
		}
	}
	return total
}

// peerRTTs returns the mean round trip the daemons measured (libp2p ping)
// to peers in their own site and to peers in other sites, in seconds (NaN
// where there is none).
func peerRTTs(ctx context.Context, ds []*daemon) (site, wan float64) {
	var sum [2]float64
	var n [2]int
	for _, d := range ds {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		peers, err := d.c.Peers(c)
		cancel()
		if err != nil {
			continue
		}
		prefix := fmt.Sprintf("/ip4/10.77.%d.", d.host.Site)
		for _, p := range peers {
			if p.Latency <= 0 || len(p.Addrs) == 0 {
				continue
			}
			k := 1
			if strings.HasPrefix(p.Addrs[0], prefix) {
				k = 0
			}
			sum[k] += p.Latency.Seconds()
			n[k]++
		}
	}
	site, wan = math.NaN(), math.NaN()
	if n[0] > 0 {
		site = sum[0] / float64(n[0])
	}
	if n[1] > 0 {
		wan = sum[1] / float64(n[1])
	}
	return site, wan
}

// packageHave is the bytes of package name the daemon holds.
func packageHave(st *node.Status, name string) int64 {
	for _, p := range st.Packages {
		if p.Name == name {
			return p.Have
		}
	}
	return 0
}

// fillSwarm fills r's per-host figures once the fetches have ended.
func (b *bed) fillSwarm(ctx context.Context, r *RunResult, s *runState, c0 Counters, done []float64, errs []error) {
	c1, err := b.net.ReadCounters(ctx)
	if err == nil {
		r.Links = c1.Sub(c0)
	} else if r.Err == "" {
		r.Err = err.Error()
	}
	for i, d := range s.ds {
		h := HostResult{Host: d.host, Done: done[i], CPU: d.p.cpu() - d.cpu0, In: r.Links.HostIn[d.host.Name], Out: r.Links.HostOut[d.host.Name]}
		if errs[i] != nil {
			h.Err = firstLine(errs[i].Error())
		}
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		if st, err := d.c.Status(c); err == nil {
			h.FromOrigin, h.FromPeers, h.Uploaded = st.BytesFromOrigin, st.BytesFromPeers, st.BytesUploaded
			h.Have = packageHave(st, b.pkg.Name)
		}
		cancel()
		if h.complete() {
			r.Makespan = max(r.Makespan, h.Done)
		}
		r.CPU += h.CPU
		r.Hosts = append(r.Hosts, h)
	}
}

// verifyStores runs `stork verify` on every host's store (daemons
// stopped).
func (b *bed) verifyStores(ctx context.Context, r *RunResult, ds []*daemon) {
	for i, d := range ds {
		if i >= len(r.Hosts) {
			break
		}
		if err := run(ctx, b.cfg.Stork, "verify", "--data", d.data); err != nil {
			r.Hosts[i].Verified = firstLine(err.Error())
		} else {
			r.Hosts[i].Verified = verifiedOK
		}
	}
}
