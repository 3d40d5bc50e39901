package share

import (
	"fmt"
	"path/filepath"
)

// ViewMode says how a VM sees a package tree.
type ViewMode string

// View modes.
const (
	// ViewBind is a read-only bind mount of the tree (nodev; nosuid unless
	// the view applies setuid): every write, chmod, unlink, rename or
	// create fails with EROFS, even for root inside the VM. The tree shows
	// the archive's modes and owners; read-only-ness comes from the mount.
	ViewBind ViewMode = "bind"
	// ViewOverlay is an overlayfs with the tree as its only lower layer and
	// a VM-private upper and work directory (nodev; nosuid unless the view
	// applies setuid): the VM sees the archive's modes and owners and may
	// write where they let it; every change is copied up into its upper
	// directory; the tree and its objects are never written.
	ViewOverlay ViewMode = "overlay"
	// ViewLink is a hard-link farm for file systems where mounting is not
	// possible: real directories and hard links to the very object inodes.
	// Unlinking or renaming in the farm only changes the farm. A linked
	// file shares its object's inode, mode and owner, so a farm is refused
	// for a tree with a file that anyone but root may write (owned by
	// another user with its owner write bit, by another group with its
	// group write bit, or writable by others): that user could change the
	// shared object. Objects owned by root (or by the store's own user, run
	// without root), even with write bits, cannot be changed by an
	// unprivileged VM. It is safe ONLY when the VM's
	// processes run unprivileged: root could chmod a linked file and then
	// write to the shared object, changing it for every package and VM on
	// the host. A farm never applies setuid or setgid. Prefer ViewBind or
	// ViewOverlay.
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
	// Setuid mounts the view without nosuid, so that setuid and setgid
	// bits of Tree (a setuid variant, see Store.SetuidTree) take effect.
	// Only for bind and overlay views of VMs whose policy allows it.
	Setuid bool
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
	case ViewBind:
	case ViewLink:
		if v.Setuid {
			return fmt.Errorf("link view at %s: %w: a link view never applies setuid", v.At(), ErrInvalid)
		}
	case ViewOverlay:
		if !filepath.IsAbs(v.Upper) {
			return fmt.Errorf("overlay view at %s: %w: upper directory %q is not absolute", v.At(), ErrInvalid, v.Upper)
		}
	default:
		return fmt.Errorf("view at %s: mode %q: %w", v.At(), v.Mode, ErrInvalid)
	}
	return nil
}
