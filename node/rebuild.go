package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/share"
	httporigin "github.com/storkpm/stork/transfer/origin"
)

// storeConfig is the configuration of a data directory's store.
func storeConfig(dataDir string, log *slog.Logger) share.Config {
	return share.Config{
		Dir:            filepath.Join(dataDir, "store"),
		Logger:         log,
		RebuildCommand: "stork index rebuild --data " + dataDir,
	}
}

// RebuildOptions configures RebuildIndex.
type RebuildOptions struct {
	// RepoURL, if set, is the repository whose signed metadata (trusted
	// through DATA/tuf, as the daemon's) names trees the disk has no
	// manifest or name for.
	RepoURL string
	// Logger receives the rebuild's events (default: discard).
	Logger *slog.Logger
}

// RebuildReport says what RebuildIndex recovered.
type RebuildReport struct {
	share.RebuildReport
	// Installs lists the VM installs recovered from the mounts:
	// "VM NAME@VERSION at PATH (MODE)".
	Installs []string
	// Unattributed lists mounts of trees that no registered VM explains:
	// "TREE at PATH". Their packages are kept.
	Unattributed []string
}

// RebuildIndex rebuilds the index of a data directory's store while no
// daemon runs on it (see share.Rebuild), then recovers the VM installs
// that views mounted in this mount namespace show: an overlay whose upper
// directory is DATA/overlays/VM/..., or a bind mount at ROOT/NAME of a
// registered VM. Link views are not mounts and are not recovered; every
// package is kept, so none of them loses its files.
func RebuildIndex(ctx context.Context, dataDir string, opts RebuildOptions) (*RebuildReport, error) {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	unlock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lookup share.RebuildLookup
	if opts.RepoURL != "" {
		if lookup, err = repoLookup(dataDir, opts.RepoURL); err != nil {
			return nil, err
		}
	}
	cfg := storeConfig(dataDir, log)
	srep, err := share.Rebuild(ctx, cfg, lookup)
	if err != nil {
		return nil, err
	}
	rep := &RebuildReport{RebuildReport: *srep}
	store, err := share.Open(cfg)
	if err != nil {
		return rep, err
	}
	defer store.Close()
	vms, err := loadVMRegistry(filepath.Join(dataDir, "vms.json"))
	if err != nil {
		return rep, err
	}
	return rep, recoverInstalls(store, vms, dataDir, rep)
}

// recoverInstalls records an install for every mount of a tree that a
// registered VM's view explains: an overlay whose upper directory is
// DATA/overlays/VM/..., or a bind mount below a VM's root. The install is
// recorded under the package name the mount point is called, if the
// package has it, else under its first name.
func recoverInstalls(store *share.Store, vms *vmRegistry, dataDir string, rep *RebuildReport) error {
	mounts, err := store.TreeMounts()
	if err != nil {
		return err
	}
	pkgs, err := store.Packages()
	if err != nil {
		return err
	}
	names := make(map[string][]share.PackageInfo) // manifest CID → one entry per name
	for _, p := range pkgs {
		names[p.ManifestCID.String()] = append(names[p.ManifestCID.String()], p)
	}
	for _, tm := range mounts {
		c, err := cid.Decode(tm.Tree)
		if err != nil || len(names[tm.Tree]) == 0 {
			rep.Unattributed = append(rep.Unattributed, tm.Tree+" at "+tm.Point)
			continue
		}
		vm, root, mode := mountOwner(tm, vms, dataDir)
		if vm == "" || validVMID(vm) != nil {
			rep.Unattributed = append(rep.Unattributed, tm.Tree+" at "+tm.Point)
			continue
		}
		p := names[tm.Tree][0]
		for _, n := range names[tm.Tree] {
			if n.Name == filepath.Base(tm.Point) {
				p = n
			}
		}
		in := share.Install{VM: vm, Name: p.Name, Version: p.Version, ManifestCID: c, Root: root, Into: tm.Point, Mode: string(mode)}
		if err := store.RecordInstall(in); err != nil {
			return err
		}
		rep.Installs = append(rep.Installs, fmt.Sprintf("%s %s@%s at %s (%s)", vm, p.Name, p.Version, tm.Point, mode))
	}
	return nil
}

// mountOwner finds the VM whose view a mount of a tree is, the root its
// view is beneath, and the view's mode; vm is "" if no VM explains it.
func mountOwner(tm share.TreeMount, vms *vmRegistry, dataDir string) (vm, root string, mode share.ViewMode) {
	mode = share.ViewBind
	var owner *VM
	for _, v := range vms.list() {
		if rel, err := filepath.Rel(filepath.Clean(v.Root), tm.Point); err == nil && filepath.IsLocal(rel) && (owner == nil || len(v.Root) > len(owner.Root)) {
			owner = &v
		}
	}
	if tm.Overlay {
		mode = share.ViewOverlay
		rel, err := filepath.Rel(filepath.Join(dataDir, "overlays"), tm.UpperDir)
		if err != nil || !filepath.IsLocal(rel) {
			return "", "", mode
		}
		vm, _, _ = strings.Cut(rel, string(filepath.Separator))
		if owner != nil && owner.ID == vm {
			return vm, owner.Root, mode
		}
		return vm, filepath.Dir(tm.Point), mode
	}
	if owner == nil {
		return "", "", mode
	}
	return owner.ID, owner.Root, mode
}

// repoLookup finds a manifest CID in the signed metadata of the
// repository at url, trusted through the data directory's TUF state.
func repoLookup(dataDir, url string) (share.RebuildLookup, error) {
	origin, err := httporigin.NewClient(httporigin.Config{URL: url, StallTimeout: 15 * time.Second, UserAgent: "stork-index-rebuild"})
	if err != nil {
		return nil, err
	}
	meta, err := newMetaClient(Config{DataDir: dataDir, RefreshInterval: time.Minute, Now: time.Now}, origin)
	if err != nil {
		return nil, fmt.Errorf("repository metadata for the rebuild: %w", err)
	}
	var pkgs []metadata.PackageInfo
	return func(ctx context.Context, c cid.Cid) ([]share.NameVersion, []byte, error) {
		if pkgs == nil {
			list, err := meta.packages(ctx)
			if err != nil {
				return nil, nil, err
			}
			pkgs = list
		}
		var names []share.NameVersion
		var manifest []byte
		for _, p := range pkgs {
			if !p.ManifestCID.Equals(c) {
				continue
			}
			if manifest == nil {
				r, err := meta.resolve(ctx, p.Name+"@"+p.Version)
				if err != nil {
					return nil, nil, err
				}
				manifest = r.ManifestBytes
			}
			names = append(names, share.NameVersion{Name: p.Name, Version: p.Version})
		}
		if len(names) == 0 {
			return nil, nil, fmt.Errorf("manifest %s: %w in the repository's signed metadata", c, errors.Join(share.ErrNotFound, metadata.ErrNotFound))
		}
		return names, manifest, nil
	}, nil
}
