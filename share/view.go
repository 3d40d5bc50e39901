package share

import (
	"fmt"
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
