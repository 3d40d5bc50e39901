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
	"github.com/storkpm/stork/transfer/swarm"
)

// Progress receives bytes done and total of a request's packages.
type Progress func(done, total int64)

// flight is one download of one package, shared by every request for it.
type flight struct {
	name, version string
	started       time.Time
	done          chan struct{}
	err           error
	have, total   atomic.Int64
}

// flights coalesces concurrent requests for the same package: one download
// per manifest CID however many requests wait on it.
type flights struct {
	mu sync.Mutex
	m  map[cid.Cid]*flight
	// slots admits MaxDownloads downloads at once (made on first use).
	slots chan struct{}
}

// MaxDownloads bounds the packages a daemon downloads at once; the others
// wait their turn, in the order they were asked for. A download opens a
// session with every peer that has the package and asks fetchers and the
// origin for its chunks: an upgrade of hundreds of packages started all at
// once overloads the host and its peers (pull-through requests go
// unanswered and to the origin), while hosts that take a closure in the
// same order, a few packages at a time, share each package as they fetch
// it.
const MaxDownloads = 16

// slot waits for a download slot and returns the function that frees it.
func (fl *flights) slot(ctx context.Context) (func(), error) {
	fl.mu.Lock()
	if fl.slots == nil {
		fl.slots = make(chan struct{}, MaxDownloads)
	}
	slots := fl.slots
	fl.mu.Unlock()
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ensurePackage makes the package r present and complete in the store,
// downloading what is missing. Concurrent calls for one package share one
// download, which runs on the daemon's context so that a requester going
// away does not cancel it for the others.
func (d *Daemon) ensurePackage(ctx context.Context, r *metadata.Resolved) (*flight, error) {
	// A complete package is checked before use: a damaged one is partial
	// again and downloaded below (repair.go).
	if info, err := d.store.Package(r.ManifestCID); err == nil && info.State == share.StateComplete && d.intact(r.ManifestCID) {
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
		f = &flight{name: r.Name, version: r.Version, started: time.Now(), done: make(chan struct{})}
		f.total.Store(r.Manifest.TotalSize())
		started := d.background(func(bg context.Context) {
			if free, err := d.fl.slot(bg); err != nil {
				f.err = fmt.Errorf("download %s@%s: %w", r.Name, r.Version, err)
			} else {
				f.err = d.fillPackage(bg, r, f)
				free()
			}
			d.metrics.observeDownload(f.err)
			d.fl.mu.Lock()
			delete(d.fl.m, r.ManifestCID)
			d.fl.mu.Unlock()
			close(f.done)
		})
		if !started {
			d.fl.mu.Unlock()
			return nil, fmt.Errorf("download %s@%s: %w", r.Name, r.Version, ErrClosed)
		}
		d.fl.m[r.ManifestCID] = f
	}
	d.fl.mu.Unlock()
	return f, nil
}

// fillPackage has the swarm bring the missing chunks of r into the
// package's share.Partial, commits it and announces it, and logs one line
// at info when it ends (complete or failed).
func (d *Daemon) fillPackage(ctx context.Context, r *metadata.Resolved, f *flight) error {
	start := time.Now()
	part, err := d.store.BeginPackage(r.Name, r.Version, r.ManifestCID, r.ManifestBytes)
	if err != nil {
		return err
	}
	// A failed download is no longer open: `stork gc --partial` may drop
	// what it stored (a retry before that resumes from it).
	defer part.Close()
	have, total := part.Bytes()
	f.have.Store(have)
	f.total.Store(total)
	d.log.Debug("download started", "package", r.Name+"@"+r.Version, "manifest", r.ManifestCID, "have", have, "total", total)
	stats, err := d.swarm.Download(ctx, swarm.DownloadRequest{
		Manifest: r.ManifestCID,
		M:        r.Manifest,
		Have:     part.Have,
		Sink:     part,
		Progress: func(done, total int64) {
			f.have.Store(done)
			f.total.Store(total)
		},
	})
	if err != nil {
		d.log.Warn("download failed", "package", r.Name+"@"+r.Version, "err", err)
		return fmt.Errorf("download %s@%s: %w", r.Name, r.Version, err)
	}
	if err := part.Commit(); err != nil {
		return fmt.Errorf("commit %s@%s: %w", r.Name, r.Version, err)
	}
	// A fetched package stays until an operator removes it; installs pin it too.
	if err := d.store.SetKeep(r.ManifestCID, true); err != nil {
		return err
	}
	d.swarm.Announce(r.ManifestCID)
	d.log.Info("downloaded", "package", r.Name+"@"+r.Version, "bytes", total-have, "from_peers", stats.FromPeers, "from_origin", stats.FromOrigin,
		"peers", stats.Peers, "banned", len(stats.Banned), "seconds", time.Since(start).Seconds())
	return nil
}

// Fetch brings ref and its dependency closure into the store and returns
// them, the requested package first.
func (d *Daemon) Fetch(ctx context.Context, ref string, progress Progress) ([]*share.PackageInfo, error) {
	return d.fetch(ctx, ref, false, progress)
}

// fetch is Fetch; noDeps brings ref alone.
func (d *Daemon) fetch(ctx context.Context, ref string, noDeps bool, progress Progress) ([]*share.PackageInfo, error) {
	var pkgs []*metadata.Resolved
	var err error
	// A closure's downloads start as its manifests come in, in the
	// closure's order, rather than once all of them are in: hundreds of
	// manifests take many round trips.
	started := map[cid.Cid]*flight{}
	var startErr error
	start := func(r *metadata.Resolved) {
		if _, ok := started[r.ManifestCID]; ok || startErr != nil {
			return
		}
		started[r.ManifestCID], startErr = d.ensurePackage(ctx, r)
	}
	if noDeps {
		var r *metadata.Resolved
		if r, err = d.meta.resolve(ctx, ref); err == nil {
			pkgs = []*metadata.Resolved{r}
		}
	} else {
		pkgs, err = d.meta.closure(ctx, ref, start)
	}
	if err != nil {
		return nil, err
	}
	fls := make([]*flight, len(pkgs))
	for i, p := range pkgs {
		start(p)
		if startErr != nil {
			return nil, startErr
		}
		fls[i] = started[p.ManifestCID]
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
		// The same content may have been stored under another name:
		// record this one too, and answer with it.
		if err := d.store.AddName(p.Name, p.Version, p.ManifestCID); err != nil {
			return nil, err
		}
		if infos[i], err = d.store.Package(p.ManifestCID); err != nil {
			return nil, err
		}
		infos[i].Name, infos[i].Version = p.Name, p.Version
	}
	return infos, nil
}

// InstallRequest asks for ref (and its closure) in a VM's view.
type InstallRequest struct {
	VM   string `json:"vm"`
	Ref  string `json:"ref"`
	Into string `json:"into,omitempty"` // directory; each package appears as INTO/NAME; default the VM's root
	// Mode is bind, overlay or link; "" is the mode the VM was
	// registered with (bind for a VM never registered).
	Mode string `json:"mode"`
	// NoDeps installs ref alone, as dpkg -i would, without resolving its
	// dependencies (admin requests only).
	NoDeps bool `json:"no_deps,omitempty"`
}

// Installed is one package in one VM's view.
type Installed struct {
	VM          string `json:"vm"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	ManifestCID string `json:"manifest"`
	Path        string `json:"path"`
	Mode        string `json:"mode"`
	// State is what is really there: "ok", or "broken" with Reason (the
	// view is missing, or was replaced, and could not be restored).
	State  string `json:"state,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Setuid says, for a package with setuid or setgid files, whether the
	// view applies those bits ("applied") or shows the files without them
	// ("dropped": the VM's policy does not allow setuid, or a link view).
	Setuid string `json:"setuid,omitempty"`
}

// Setuid states of a view (Installed.Setuid).
const (
	setuidApplied = "applied"
	setuidDropped = "dropped"
)

// Install fetches ref's closure and exposes each package read-only at
// INTO/NAME in the given view mode, NAME being the name the package was
// asked for (content published under two names is installed under the
// name asked for). INTO defaults to the VM's registered root; it must be
// at or below that root, and every path below the root is resolved
// without following symlinks (the VM controls it). A VM has one view per
// package name: installing a name it has at another path is refused,
// saying where; installing another version or mode of it at the same path
// replaces the view (an upgrade); installing what is already there is a
// no-op, or restores the view if it went missing.
func (d *Daemon) Install(ctx context.Context, req InstallRequest, progress Progress) ([]Installed, error) {
	start := time.Now()
	defer func() { d.metrics.installSeconds.Observe(time.Since(start).Seconds()) }()
	if err := validVMID(req.VM); err != nil {
		return nil, err
	}
	if v, ok := d.vms.get(req.VM); ok && req.Mode == "" {
		req.Mode = v.Mode
	}
	mode, err := parseViewMode(req.Mode)
	if err != nil {
		return nil, err
	}
	root, rel, err := d.installTarget(req.VM, req.Into, mode)
	if err != nil {
		return nil, err
	}
	pkgs, err := d.fetch(ctx, req.Ref, req.NoDeps, progress)
	if err != nil {
		return nil, err
	}
	d.serveM.Lock() // views of one host change one at a time
	defer d.serveM.Unlock()
	var out []Installed
	for _, p := range pkgs {
		inst, err := d.installOne(req.VM, root, rel, p, mode)
		if err != nil {
			return out, err
		}
		out = append(out, inst)
	}
	return out, nil
}

// installOne puts one package's view at ROOT/REL/NAME.
func (d *Daemon) installOne(vm, root, rel string, p *share.PackageInfo, mode share.ViewMode) (Installed, error) {
	view := share.View{Tree: p.TreePath, Root: root, Path: filepath.Join(rel, p.Name), Mode: mode}
	inst := Installed{VM: vm, Name: p.Name, Version: p.Version, ManifestCID: p.ManifestCID.String(), Path: view.At(), Mode: string(mode), State: viewOK}
	what := fmt.Sprintf("install %s@%s for vm %s", p.Name, p.Version, vm)
	if p.TreePath == "" {
		return inst, fmt.Errorf("%s: %w: the package is not complete", what, share.ErrNotFound)
	}
	if p.Setuid > 0 {
		inst.Setuid = setuidDropped
		if v, ok := d.vms.get(vm); ok && v.AllowSetuid && mode != share.ViewLink {
			tree, err := d.store.SetuidTree(p.ManifestCID)
			if err != nil {
				return inst, fmt.Errorf("%s: %w", what, err)
			}
			view.Tree, view.Setuid, inst.Setuid = tree, true, setuidApplied
		}
	}
	if mode == share.ViewOverlay {
		upper, err := d.upperDir(vm, p.ManifestCID)
		if err != nil {
			return inst, fmt.Errorf("%s: %w", what, err)
		}
		view.Upper = upper
	}
	old, had := d.installOf(vm, p.Name)
	if had && old.Into != view.At() {
		return inst, fmt.Errorf("%s at %s: %w: vm %s has %s@%s at %s (one view per VM and package); uninstall it first or install into %s",
			what, view.At(), ErrBadRequest, vm, old.Name, old.Version, old.Into, filepath.Dir(old.Into))
	}
	same := had && old.ManifestCID.Equals(p.ManifestCID) && old.Mode == string(mode) && old.Setuid == view.Setuid
	if same && share.CheckView(view) == nil {
		d.views.clear(vm, p.Name)
		return inst, nil
	}
	switched, err := d.switchView(old, had && !same, view)
	if err != nil {
		return inst, fmt.Errorf("%s: %w", what, err)
	}
	if had && !switched {
		// A new mode, a view that went missing, or a view that cannot be
		// switched in place: the old view goes first (what the VM put in
		// its place is removed, never followed). The same overlay keeps
		// its upper layer.
		if err := d.removeView(old, !same); err != nil {
			return inst, fmt.Errorf("%s: replace the view at %s: %w", what, old.Into, err)
		}
	}
	if !switched {
		if err := share.MountView(view); err != nil {
			return inst, fmt.Errorf("%s at %s: %w", what, view.At(), err)
		}
	}
	rec := share.Install{VM: vm, Name: p.Name, Version: p.Version, ManifestCID: p.ManifestCID, Root: root, Into: view.At(), Mode: string(mode), Setuid: view.Setuid}
	if err := d.store.RecordInstall(rec); err != nil {
		_ = share.UnmountView(view)
		return inst, err
	}
	d.views.clear(vm, p.Name)
	if had && !old.ManifestCID.Equals(p.ManifestCID) {
		d.log.Info("installed", "vm", vm, "package", p.Name+"@"+p.Version, "path", view.At(), "mode", mode, "setuid", inst.Setuid, "upgraded_from", old.Version)
	} else {
		d.log.Info("installed", "vm", vm, "package", p.Name+"@"+p.Version, "path", view.At(), "mode", mode, "setuid", inst.Setuid)
	}
	if inst.Setuid == setuidDropped {
		d.noteSetuidDropped(vm, p, mode)
	}
	return inst, nil
}

// noteSetuidDropped logs, once per package, that a view shows its setuid
// and setgid files without those bits.
func (d *Daemon) noteSetuidDropped(vm string, p *share.PackageInfo, mode share.ViewMode) {
	if _, seen := d.setuidNoted.LoadOrStore(p.ManifestCID, true); seen {
		return
	}
	why := "the vm's policy does not allow setuid (stork vm add --allow-setuid)"
	if mode == share.ViewLink {
		why = "link views never apply setuid"
	}
	d.log.Warn("setuid and setgid dropped in a view", "vm", vm, "package", p.Name+"@"+p.Version, "files", p.Setuid, "why", why)
}

// installsByName returns vm's installs by package name (none when they
// cannot be read, as installOf).
func (d *Daemon) installsByName(vm string) map[string]share.Install {
	insts, _ := d.store.Installs(vm)
	out := make(map[string]share.Install, len(insts))
	for _, in := range insts {
		out[in.Name] = in
	}
	return out
}

// installOf returns vm's install of the package called name, if any.
func (d *Daemon) installOf(vm, name string) (share.Install, bool) {
	insts, err := d.store.Installs(vm)
	if err != nil {
		return share.Install{}, false
	}
	for _, in := range insts {
		if in.Name == name {
			return in, true
		}
	}
	return share.Install{}, false
}

// Uninstall removes vm's view of the package called name.
func (d *Daemon) Uninstall(ctx context.Context, vm, name string) ([]Installed, error) {
	if err := validVMID(vm); err != nil {
		return nil, err
	}
	d.serveM.Lock()
	defer d.serveM.Unlock()
	in, ok := d.installOf(vm, name)
	if !ok {
		return nil, fmt.Errorf("uninstall %s: %w: vm %s has no such package", name, share.ErrNotFound, vm)
	}
	if err := d.removeView(in, true); err != nil {
		return nil, fmt.Errorf("uninstall %s from vm %s: %w", name, vm, err)
	}
	if err := d.store.DropInstall(vm, name); err != nil {
		return nil, err
	}
	d.views.clear(vm, name)
	d.log.Info("uninstalled", "vm", vm, "package", in.Name+"@"+in.Version, "path", in.Into)
	return []Installed{{VM: vm, Name: in.Name, Version: in.Version, ManifestCID: in.ManifestCID.String(), Path: in.Into, Mode: in.Mode}}, nil
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
