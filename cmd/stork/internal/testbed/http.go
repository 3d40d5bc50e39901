package testbed

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"
)

// httpRun: no daemons; every host runs `stork get` from the origin at
// once, as hosts did before a swarm. A host's bytes from the origin are
// what its link carried in; `stork get` verifies every chunk and file, so
// a host that completed verified.
func (b *bed) httpRun(ctx context.Context) *RunResult {
	r := &RunResult{Name: RunHTTP, OriginSent: -1, FewestPeers: -1, Size: b.pkg.Bytes, RTTSite: math.NaN(), RTTWAN: math.NaN()}
	origin, err := b.startOrigin(ctx, RunHTTP)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer origin.stop(5 * time.Second)
	dir := filepath.Join(b.work, RunHTTP)
	defer os.RemoveAll(dir)
	c0, err := b.net.ReadCounters(ctx)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	ocpu0, w0, dcpu0 := origin.cpu(), writtenBytes(origin.pid()), b.net.DelayCPU()
	hosts := b.plan.Hosts()
	gets := make([]*proc, len(hosts))
	done := make([]float64, len(hosts))
	t0 := time.Now()
	for i, h := range hosts {
		done[i] = math.NaN()
		state, out := filepath.Join(dir, h.Name, "state"), filepath.Join(dir, h.Name, "out")
		if err := os.MkdirAll(state, 0o755); err != nil {
			r.Err = err.Error()
			break
		}
		gets[i], err = startProc("get "+h.Name, filepath.Join(b.logs, RunHTTP+"-"+h.Name+".log"), "ip", "netns", "exec", h.NS,
			b.cfg.Stork, "get", "--repo", b.originURL(), "--root", b.root, "--state", state, "--out", out, b.pkg.Name)
		if err != nil {
			r.Err = err.Error()
			break
		}
	}
	deadline := t0.Add(b.cfg.timeout())
	for i, p := range gets {
		if p == nil {
			continue
		}
		if !p.wait(time.Until(deadline)) {
			r.Err = fmt.Sprintf("timeout after %v", b.cfg.timeout())
			p.stop(5 * time.Second)
			continue
		}
		if p.err == nil {
			done[i] = p.end.Sub(t0).Seconds()
		}
	}
	r.Wall = time.Since(t0).Seconds()
	if w := writtenBytes(origin.pid()); w >= 0 && w0 >= 0 {
		r.OriginSent = w - w0
	}
	r.CPU = origin.cpu() - ocpu0
	r.DelayCPU = b.net.DelayCPU() - dcpu0
	c1, err := b.net.ReadCounters(ctx)
	if err == nil {
		r.Links = c1.Sub(c0)
	}
	for i, h := range hosts {
		hr := HostResult{Host: h, Done: done[i], In: r.Links.HostIn[h.Name], Out: r.Links.HostOut[h.Name]}
		hr.FromOrigin = hr.In.Payload()
		if p := gets[i]; p != nil {
			hr.CPU = p.cpu()
			if p.err != nil {
				hr.Err = tail(filepath.Join(b.logs, RunHTTP+"-"+h.Name+".log"), 1)
			} else {
				hr.Verified = verifiedOK
			}
		}
		if hr.complete() {
			hr.Have = r.Size
			r.Makespan = max(r.Makespan, hr.Done)
		}
		r.CPU += hr.CPU
		r.Hosts = append(r.Hosts, hr)
	}
	return r
}
