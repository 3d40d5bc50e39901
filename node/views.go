package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/share"
)

// Views are state the daemon owns: every install is recorded in the store
// with the root it is resolved beneath, and the daemon restores recorded
// views at start (restoreViews) and reports what is really there (list,
// status). A view that is missing or replaced and cannot be restored is
// "broken", with the reason.

// View states in Installed.State.
const (
	viewOK     = "ok"
	viewBroken = "broken"
)

// viewStates remembers why views could not be restored, by VM and name,
// until they are installed or uninstalled again.
type viewStates struct {
	mu     sync.Mutex
	reason map[string]string
}

func (v *viewStates) set(vm, name, reason string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.reason == nil {
		v.reason = map[string]string{}
	}
	v.reason[vm+"\x00"+name] = reason
}

func (v *viewStates) get(vm, name string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.reason[vm+"\x00"+name]
}

func (v *viewStates) clear(vm, name string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.reason, vm+"\x00"+name)
}

// installTarget returns the root an install for vm is resolved beneath and
// the directory below it (relative, "." for the root itself) that the
// packages go in. A registered VM's views go at or below its root (into ""
// is the root). For a VM never registered, into is required and is the
// root. Link views need a VM registered as unprivileged.
func (d *Daemon) installTarget(vm, into string, mode share.ViewMode) (root, rel string, err error) {
	v, registered := d.vms.get(vm)
	if mode == share.ViewLink && !(registered && v.Unprivileged) {
		return "", "", fmt.Errorf("install for vm %s: %w: link views give root inside the VM write access to the shared objects; "+
			"register the VM as unprivileged (stork vm add --unprivileged) if none of its processes runs as root, or use --mode bind or overlay", vm, ErrForbidden)
	}
	switch {
	case into == "" && !registered:
		return "", "", fmt.Errorf("install for vm %s: %w: vm %s is not registered: run stork vm add --data DATA %s --allow PATTERN --root DIR, or give --into",
			vm, ErrUnknownVM, vm, vm)
	case into == "":
		root, rel = v.Root, "."
	case !filepath.IsAbs(into):
		return "", "", fmt.Errorf("install: --into %q: %w: want an absolute directory", into, ErrBadRequest)
	case registered:
		root = v.Root
		if rel, err = filepath.Rel(root, filepath.Clean(into)); err != nil || !filepath.IsLocal(rel) {
			return "", "", fmt.Errorf("install for vm %s: --into %s: %w: outside the VM's root %s", vm, into, ErrBadRequest, root)
		}
	default:
		root, rel = filepath.Clean(into), "."
	}
	if err := d.checkViewRoot(root); err != nil {
		return "", "", fmt.Errorf("install for vm %s: %w", vm, err)
	}
	return root, rel, nil
}

// checkViewRoot refuses a VM root that is the data directory, inside it
// (the store, its trees and objects, the overlays; DATA/views, where VM
// roots go by default, is allowed), or holds it. Paths are compared
// after resolving symlinks in the operator's part of them.
func (d *Daemon) checkViewRoot(root string) error {
	data, err := realPath(d.cfg.DataDir)
	if err != nil {
		return err
	}
	r, err := realPath(root)
	if err != nil {
		return err
	}
	views := filepath.Join(data, "views")
	switch {
	case r == data || within(data, r):
		return fmt.Errorf("view root %s: %w: it holds the data directory %s", root, ErrBadRequest, d.cfg.DataDir)
	case within(r, data) && !within(r, views):
		return fmt.Errorf("view root %s: %w: inside the data directory %s (the store, its trees and objects)", root, ErrBadRequest, d.cfg.DataDir)
	}
	return nil
}

// within reports whether p is strictly below dir.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && filepath.IsLocal(rel)
}

// realPath resolves the symlinks of the longest existing prefix of p.
func realPath(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for {
		r, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) || filepath.Dir(p) == p {
			return "", fmt.Errorf("resolve %s: %w", p, err)
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = filepath.Dir(p)
	}
}

// upperDir returns the VM-private directory an overlay view of the package
// keeps its upper and work directories in: DATA/overlays/VM/CID, with
// DATA/overlays and DATA/overlays/VM private to root (0700).
func (d *Daemon) upperDir(vm string, c cid.Cid) (string, error) {
	base := filepath.Join(d.cfg.DataDir, "overlays")
	for _, dir := range []string{base, filepath.Join(base, vm)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("overlay directory: %w", err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return "", fmt.Errorf("overlay directory: %w", err)
		}
	}
	return filepath.Join(base, vm, c.String()), nil
}

// viewOf is the share.View an install record describes.
func (d *Daemon) viewOf(in share.Install) (share.View, error) {
	mode, err := share.ParseViewMode(in.Mode)
	if err != nil {
		return share.View{}, err
	}
	rel, err := filepath.Rel(in.Root, in.Into)
	if err != nil || !filepath.IsLocal(rel) {
		return share.View{}, fmt.Errorf("install record of %s in vm %s: %w: %s is not below %s", in.Name, in.VM, share.ErrInvalid, in.Into, in.Root)
	}
	v := share.View{Tree: d.store.TreePath(in.ManifestCID), Root: in.Root, Path: rel, Mode: mode, Setuid: in.Setuid}
	if in.Setuid {
		v.Tree = d.store.SetuidTreePath(in.ManifestCID)
	}
	if mode == share.ViewOverlay {
		v.Upper = filepath.Join(d.cfg.DataDir, "overlays", in.VM, in.ManifestCID.String())
	}
	return v, nil
}

// removeView removes the view an install record describes, and an
// overlay's upper layer with it if dropUpper. What the VM put in the
// view's place is removed, never followed, and logged.
func (d *Daemon) removeView(in share.Install, dropUpper bool) error {
	v, err := d.viewOf(in)
	if err != nil {
		return err
	}
	err = share.UnmountView(v)
	if errors.Is(err, share.ErrViewReplaced) && !errors.Is(err, share.ErrViewUnreachable) {
		d.log.Warn("view replaced by the vm", "vm", in.VM, "package", in.Name, "path", in.Into, "err", err)
		err = nil
	}
	if err != nil {
		return err
	}
	if v.Mode == share.ViewOverlay && dropUpper {
		if err := share.RemoveUpper(v.Upper); err != nil {
			d.log.Warn("overlay upper layer not removed", "vm", in.VM, "package", in.Name, "dir", v.Upper, "err", err)
		}
	}
	return nil
}

// viewState says whether the view of in is really there.
func (d *Daemon) viewState(in share.Install) (state, reason string) {
	v, err := d.viewOf(in)
	if err == nil {
		err = share.CheckView(v)
	}
	if err == nil {
		return viewOK, ""
	}
	if r := d.views.get(in.VM, in.Name); r != "" {
		return viewBroken, r
	}
	return viewBroken, err.Error()
}

// restoreViews brings back every recorded view that is not there (after a
// restart or a reboot): it remounts missing bind and overlay views and
// rebuilds missing link farms. A view that cannot be restored is left
// recorded and marked broken with the reason.
func (d *Daemon) restoreViews() {
	d.serveM.Lock()
	defer d.serveM.Unlock()
	insts, err := d.store.Installs("")
	if err != nil {
		d.log.Error("views not restored", "err", err)
		return
	}
	restored, broken := 0, 0
	for _, in := range insts {
		if err := d.restoreView(in); err != nil {
			broken++
			d.views.set(in.VM, in.Name, err.Error())
			d.log.Warn("view broken", "vm", in.VM, "package", in.Name+"@"+in.Version, "path", in.Into, "err", err)
		} else {
			restored++
		}
	}
	if len(insts) > 0 {
		d.log.Info("views checked", "views", len(insts), "broken", broken)
	}
}

// restoreView makes in's view be there, if it is not.
func (d *Daemon) restoreView(in share.Install) error {
	v, err := d.viewOf(in)
	if err != nil {
		return err
	}
	err = share.CheckView(v)
	if err == nil {
		return nil
	}
	if !errors.Is(err, share.ErrNotFound) {
		return fmt.Errorf("not restored: %w", err)
	}
	info, perr := d.store.Package(in.ManifestCID)
	if perr != nil {
		return fmt.Errorf("not restored: %w", perr)
	}
	if info.State != share.StateComplete {
		return fmt.Errorf("not restored: package %s is %s", in.ManifestCID, info.State)
	}
	if err := d.checkViewRoot(v.Root); err != nil {
		return fmt.Errorf("not restored: %w", err)
	}
	if v.Setuid {
		if v.Tree, err = d.store.SetuidTree(in.ManifestCID); err != nil {
			return fmt.Errorf("not restored: %w", err)
		}
	}
	if err := share.MountView(v); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	d.log.Info("view restored", "vm", in.VM, "package", in.Name+"@"+in.Version, "path", in.Into, "mode", in.Mode)
	return nil
}

// applySetuidPolicy makes vm's views of packages with setuid or setgid
// files follow its policy now: a view made under the other policy is made
// again (a VM whose --allow-setuid was revoked loses the bits at once).
func (d *Daemon) applySetuidPolicy(vm string) error {
	d.serveM.Lock()
	defer d.serveM.Unlock()
	insts, err := d.store.Installs(vm)
	if err != nil {
		return err
	}
	v, _ := d.vms.get(vm)
	for _, in := range insts {
		mode, err := share.ParseViewMode(in.Mode)
		if err != nil {
			return err
		}
		if in.Setuid == (v.AllowSetuid && mode != share.ViewLink) {
			continue
		}
		p, err := d.store.Package(in.ManifestCID)
		if err != nil {
			return fmt.Errorf("vm %s: setuid policy for %s: %w", vm, in.Name, err)
		}
		if p.Setuid == 0 {
			continue
		}
		p.Name, p.Version = in.Name, in.Version
		rel, err := filepath.Rel(in.Root, filepath.Dir(in.Into))
		if err != nil {
			return fmt.Errorf("vm %s: setuid policy for %s: %w", vm, in.Name, err)
		}
		if _, err := d.installOne(vm, in.Root, rel, p, mode); err != nil {
			return fmt.Errorf("vm %s: setuid policy for %s: %w", vm, in.Name, err)
		}
		d.log.Info("view made again for the vm's setuid policy", "vm", vm, "package", in.Name+"@"+in.Version, "setuid", v.AllowSetuid)
	}
	return nil
}

// listInstalls lists vm's installs (every VM's for ""), each with the state
// of its view as it is now.
func (d *Daemon) listInstalls(vm string) ([]Installed, error) {
	if vm != "" {
		if err := validVMID(vm); err != nil {
			return nil, err
		}
	}
	insts, err := d.store.Installs(vm)
	if err != nil {
		return nil, err
	}
	out := []Installed{}
	for _, in := range insts {
		state, reason := d.viewState(in)
		inst := Installed{VM: in.VM, Name: in.Name, Version: in.Version, ManifestCID: in.ManifestCID.String(),
			Path: in.Into, Mode: in.Mode, State: state, Reason: reason}
		if info, err := d.store.Package(in.ManifestCID); err == nil && info.Setuid > 0 {
			inst.Setuid = setuidDropped
			if in.Setuid {
				inst.Setuid = setuidApplied
			}
		}
		out = append(out, inst)
	}
	return out, nil
}

// switchView upgrades the bind or overlay view of old to view in one step
// (share.ReplaceView), when upgrade is set and both are mounts of one
// mode at one place: a process in the VM sees the old tree or the new,
// and keeps the old files it has open. It reports false, with nothing
// changed, when the view cannot be switched so (a link view, another
// mode or place, a view that went missing); the caller then replaces it
// by removing and mounting.
func (d *Daemon) switchView(old share.Install, upgrade bool, view share.View) (bool, error) {
	if !upgrade || old.Mode != string(view.Mode) || old.Into != view.At() || view.Mode == share.ViewLink {
		return false, nil
	}
	ov, err := d.viewOf(old)
	if err != nil {
		return false, nil
	}
	err = share.ReplaceView(ov, view)
	if errorsIsAny(err, share.ErrNotFound, share.ErrInvalid, share.ErrViewReplaced) {
		d.log.Info("view not switched in place: replacing it", "vm", old.VM, "package", old.Name, "path", old.Into, "why", err)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if ov.Mode == share.ViewOverlay && ov.Upper != view.Upper {
		if err := share.RemoveUpper(ov.Upper); err != nil {
			d.log.Warn("overlay upper layer not removed", "vm", old.VM, "package", old.Name, "dir", ov.Upper, "err", err)
		}
	}
	return true, nil
}
