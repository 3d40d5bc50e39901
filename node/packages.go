package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/share"
	"github.com/storkpm/stork/transfer"
)

// Progress receives bytes done and total of a request's packages.
type Progress func(done, total int64)

// flight is one download of one package, shared by every request for it.
type flight struct {
	done        chan struct{}
	err         error
	have, total atomic.Int64
}

// flights coalesces concurrent requests for the same package: one download
// per manifest CID however many requests wait on it.
type flights struct {
	mu sync.Mutex
	m  map[cid.Cid]*flight
}

// ensurePackage makes the package r present and complete in the store,
// downloading what is missing. Concurrent calls for one package share one
// download, which runs on the daemon's context so that a requester going
// away does not cancel it for the others.
func (d *Daemon) ensurePackage(ctx context.Context, r *metadata.Resolved) (*flight, error) {
	if info, err := d.store.Package(r.ManifestCID); err == nil && info.State == share.StateComplete {
		f := &flight{done: make(chan struct{})}
		f.have.Store(info.Size)
		f.total.Store(info.Size)
		close(f.done)
		return f, nil
	}
	d.fl.mu.Lock()
	if d.fl.m == nil {
		d.fl.m = map[cid.Cid]*flight{}
	}
	f, ok := d.fl.m[r.ManifestCID]
	if !ok {
		f = &flight{done: make(chan struct{})}
		f.total.Store(r.Manifest.TotalSize())
		d.fl.m[r.ManifestCID] = f
		d.bgWG.Add(1)
		go func() {
			defer d.bgWG.Done()
			f.err = d.download(d.bg, r, f)
			d.fl.mu.Lock()
			delete(d.fl.m, r.ManifestCID)
			d.fl.mu.Unlock()
			close(f.done)
		}()
	}
	d.fl.mu.Unlock()
	return f, nil
}

// download fetches the missing chunks of r into the store and commits it.
func (d *Daemon) download(ctx context.Context, r *metadata.Resolved, f *flight) error {
	start := time.Now()
	dl, err := d.store.BeginPackage(r.Name, r.Version, r.ManifestCID, r.ManifestBytes)
	if err != nil {
		return err
	}
	have, total := dl.Bytes()
	f.have.Store(have)
	f.total.Store(total)
	missing := dl.Missing()
	d.log.Info("download started", "package", r.Name+"@"+r.Version, "manifest", r.ManifestCID, "missing_chunks", len(missing), "have", have, "total", total)
	if d.swarm != nil {
		stats, err := d.swarm.Download(ctx, transfer.DownloadRequest{
			Manifest: r.ManifestCID,
			M:        r.Manifest,
			Have:     dl.Have,
			Sink:     dl,
			Progress: func(done, total int64) {
				f.have.Store(done)
				f.total.Store(total)
			},
		})
		if err != nil {
			d.log.Warn("download failed", "package", r.Name+"@"+r.Version, "err", err)
			return fmt.Errorf("download %s@%s: %w", r.Name, r.Version, err)
		}
		d.log.Info("swarm download", "package", r.Name+"@"+r.Version, "from_peers", stats.FromPeers, "from_origin", stats.FromOrigin, "peers", stats.Peers, "banned", len(stats.Banned))
	} else {
		sink := &countingSink{dl: dl, f: f, counter: &d.bytesFromOrigin}
		if _, err := transfer.Fetch(ctx, transfer.FetchOptions{
			Chunks:   missing,
			Source:   d.source,
			Sink:     sink,
			Parallel: d.cfg.Parallel,
		}); err != nil {
			d.log.Warn("download failed", "package", r.Name+"@"+r.Version, "err", err)
			return fmt.Errorf("download %s@%s: %w", r.Name, r.Version, err)
		}
	}
	if err := dl.Commit(); err != nil {
		return fmt.Errorf("commit %s@%s: %w", r.Name, r.Version, err)
	}
	// A fetched package stays until an operator removes it; installs pin it too.
	if err := d.store.SetKeep(r.ManifestCID, true); err != nil {
		return err
	}
	if d.swarm != nil {
		d.swarm.Announce(r.ManifestCID)
	}
	d.log.Info("download complete", "package", r.Name+"@"+r.Version, "seconds", time.Since(start).Seconds())
	return nil
}

// countingSink writes verified chunks into a store download and counts them.
type countingSink struct {
	dl      *share.Download
	f       *flight
	counter *atomic.Int64
}

func (s *countingSink) PutChunk(c cid.Cid, data []byte) error {
	if err := s.dl.PutChunk(c, data); err != nil {
		return err
	}
	s.counter.Add(int64(len(data)))
	have, _ := s.dl.Bytes()
	s.f.have.Store(have)
	return nil
}

// Fetch brings ref and its dependency closure into the store and returns
// them, the requested package first.
func (d *Daemon) Fetch(ctx context.Context, ref string, progress Progress) ([]*share.PackageInfo, error) {
	pkgs, err := d.meta.closure(ctx, ref)
	if err != nil {
		return nil, err
	}
	fls := make([]*flight, len(pkgs))
	for i, p := range pkgs {
		if fls[i], err = d.ensurePackage(ctx, p); err != nil {
			return nil, err
		}
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	report := func() {
		if progress == nil {
			return
		}
		var done, total int64
		for _, f := range fls {
			done += f.have.Load()
			total += f.total.Load()
		}
		progress(done, total)
	}
	for _, f := range fls {
	wait:
		for {
			select {
			case <-f.done:
				break wait
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-tick.C:
				report()
			}
		}
		if f.err != nil {
			return nil, f.err
		}
	}
	report()
	infos := make([]*share.PackageInfo, len(pkgs))
	for i, p := range pkgs {
		if infos[i], err = d.store.Package(p.ManifestCID); err != nil {
			return nil, err
		}
	}
	return infos, nil
}

// InstallRequest asks for ref (and its closure) in a VM's view.
type InstallRequest struct {
	VM   string `json:"vm"`
	Ref  string `json:"ref"`
	Into string `json:"into"` // directory; each package appears as INTO/NAME
	Mode string `json:"mode"` // bind (default), overlay or link
}

// Installed is one package in one VM's view.
type Installed struct {
	VM          string `json:"vm"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	ManifestCID string `json:"manifest"`
	Path        string `json:"path"`
	Mode        string `json:"mode"`
}

// Install fetches ref's closure and exposes each package read-only at
// INTO/NAME in the given view mode. Installing what is already installed
// there is a no-op.
func (d *Daemon) Install(ctx context.Context, req InstallRequest, progress Progress) ([]Installed, error) {
	if err := validVMID(req.VM); err != nil {
		return nil, err
	}
	if req.Into == "" || !filepath.IsAbs(req.Into) {
		return nil, fmt.Errorf("install: --into %q: %w: want an absolute directory", req.Into, ErrBadRequest)
	}
	mode, err := parseViewMode(req.Mode)
	if err != nil {
		return nil, err
	}
	pkgs, err := d.Fetch(ctx, req.Ref, progress)
	if err != nil {
		return nil, err
	}
	d.serveM.Lock() // views of one host change one at a time
	defer d.serveM.Unlock()
	var out []Installed
	for _, p := range pkgs {
		target := filepath.Join(req.Into, p.Name)
		inst := Installed{VM: req.VM, Name: p.Name, Version: p.Version, ManifestCID: p.ManifestCID.String(), Path: target, Mode: string(mode)}
		if existing, ok := d.findInstall(req.VM, target); ok {
			if existing.ManifestCID.Equals(p.ManifestCID) {
				out = append(out, inst)
				continue
			}
			return nil, fmt.Errorf("install %s@%s for vm %s: %s already holds %s@%s; uninstall it first",
				p.Name, p.Version, req.VM, target, existing.Name, existing.Version)
		}
		upper := ""
		if mode == share.ViewOverlay {
			upper = filepath.Join(d.cfg.DataDir, "overlays", req.VM, p.ManifestCID.String())
		}
		view := share.View{Tree: p.TreePath, Root: req.Into, Path: p.Name, Mode: mode, Upper: upper}
		if err := share.MountView(view); err != nil {
			return nil, fmt.Errorf("install %s@%s for vm %s at %s: %w", p.Name, p.Version, req.VM, target, err)
		}
		if err := d.store.AddInstall(req.VM, p.ManifestCID, target, string(mode)); err != nil {
			_ = share.UnmountView(view)
			return nil, err
		}
		d.log.Info("installed", "vm", req.VM, "package", p.Name+"@"+p.Version, "path", target, "mode", mode)
		out = append(out, inst)
	}
	return out, nil
}

// findInstall returns the install of vm at path, if any.
func (d *Daemon) findInstall(vm, path string) (*share.PackageInfo, bool) {
	insts, err := d.store.Installs(vm)
	if err != nil {
		return nil, false
	}
	for _, in := range insts {
		if in.Into == path {
			if info, err := d.store.Package(in.ManifestCID); err == nil {
				return info, true
			}
		}
	}
	return nil, false
}

// Uninstall removes vm's view of the package called name (every version).
func (d *Daemon) Uninstall(ctx context.Context, vm, name string) ([]Installed, error) {
	if err := validVMID(vm); err != nil {
		return nil, err
	}
	d.serveM.Lock()
	defer d.serveM.Unlock()
	insts, err := d.store.Installs(vm)
	if err != nil {
		return nil, err
	}
	var out []Installed
	for _, in := range insts {
		info, err := d.store.Package(in.ManifestCID)
		if err != nil || info.Name != name {
			continue
		}
		mode, _ := parseViewMode(in.Mode)
		view := share.View{Tree: info.TreePath, Root: filepath.Dir(in.Into), Path: filepath.Base(in.Into), Mode: mode,
			Upper: filepath.Join(d.cfg.DataDir, "overlays", vm, in.ManifestCID.String())}
		if err := share.UnmountView(view); err != nil {
			return out, fmt.Errorf("uninstall %s from vm %s: %w", name, vm, err)
		}
		if err := d.store.RemoveInstall(vm, in.ManifestCID); err != nil {
			return out, err
		}
		out = append(out, Installed{VM: vm, Name: info.Name, Version: info.Version, ManifestCID: info.ManifestCID.String(), Path: in.Into, Mode: in.Mode})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("uninstall %s: %w: vm %s has no such package", name, share.ErrNotFound, vm)
	}
	return out, nil
}

func parseViewMode(s string) (share.ViewMode, error) {
	switch s {
	case "", string(share.ViewBind):
		return share.ViewBind, nil
	case string(share.ViewOverlay):
		return share.ViewOverlay, nil
	case string(share.ViewLink):
		return share.ViewLink, nil
	}
	return "", fmt.Errorf("view mode %q: %w: want bind, overlay or link", s, ErrBadRequest)
}

// errorsIsAny reports whether err is any of targets.
func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
