package share

import (
	"fmt"
	"path/filepath"
)

// ViewMode says how a VM sees a package tree.
type ViewMode string

// View modes.
const (
	// ViewBind is a read-only bind mount of the tree (nosuid, nodev): every
	// write, chmod, unlink, rename or create fails with EROFS, even for root
	// inside the VM.
	ViewBind ViewMode = "bind"
	// ViewOverlay is an overlayfs with the tree as its only lower layer and
	// a VM-private upper and work directory: the VM may change its view,
	// and every change is copied up into its upper directory; the tree and
	// its objects are never written.
	ViewOverlay ViewMode = "overlay"
	// ViewLink is a hard-link farm for file systems where mounting is not
	// possible: real directories and hard links to the very object inodes.
	// Unlinking or renaming in the farm only changes the farm, and the
	// objects are read-only (0444 or 0555) and owned by the store's owner,
	// so an unprivileged VM cannot change them. It is safe ONLY when the
	// VM's processes run unprivileged: root (or the store's owner) could
	// chmod a linked file and then write to the shared object, changing it
	// for every package and VM on the host. Prefer ViewBind or ViewOverlay.
	ViewLink ViewMode = "link"
)

// ParseViewMode parses "bind", "overlay" or "link".
func ParseViewMode(s string) (ViewMode, error) {
	switch m := ViewMode(s); m {
	case ViewBind, ViewOverlay, ViewLink:
		return m, nil
	}
	return "", fmt.Errorf("view mode %q: %w: want bind, overlay or link", s, ErrInvalid)
}

// View is one package tree shown to one VM at Root/Path.
//
// Root is the directory the VM controls. The path up to and including
// Root is the operator's and is trusted; nothing below Root is: the VM may
// replace any directory there by a symlink, before or while a view is
// made or removed. Every operation on Path therefore stays beneath Root
// and follows no symlink (see beneath_linux.go).
type View struct {
	Tree  string   // the package tree in the store
	Root  string   // absolute: the directory the VM controls
	Path  string   // where the view appears, relative to Root ("opt/NAME")
	Mode  ViewMode // bind, overlay or link
	Upper string   // ViewOverlay: the VM-private directory for upper/ and work/ (trusted)
}

// At is the view's absolute path, for messages and records.
func (v *View) At() string { return filepath.Join(v.Root, v.Path) }

func (v *View) check() error {
	if !filepath.IsAbs(v.Root) {
		return fmt.Errorf("view root %q: %w: want an absolute directory", v.Root, ErrInvalid)
	}
	if err := checkRel(v.Path); err != nil {
		return err
	}
	switch v.Mode {
	case ViewBind, ViewLink:
	case ViewOverlay:
		if !filepath.IsAbs(v.Upper) {
			return fmt.Errorf("overlay view at %s: %w: upper directory %q is not absolute", v.At(), ErrInvalid, v.Upper)
		}
	default:
		return fmt.Errorf("view at %s: mode %q: %w", v.At(), v.Mode, ErrInvalid)
	}
	return nil
}
