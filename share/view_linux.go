package share

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// MountView shows the package tree at into with the given mode, creating
// into if needed. upper is the VM-private directory ViewOverlay keeps its
// upper and work directories in (upper/upper, upper/work); the other modes
// ignore it. For ViewLink, tree and into must be on one file system and
// into must not exist or be empty.
func MountView(tree, into string, mode ViewMode, upper string) error {
	st, err := os.Stat(tree)
	if err != nil {
		return fmt.Errorf("view of %s: %w", tree, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("view of %s: %w: not a directory", tree, ErrInvalid)
	}
	switch mode {
	case ViewBind:
		return mountBind(tree, into)
	case ViewOverlay:
		return mountOverlay(tree, into, upper)
	case ViewLink:
		return linkFarm(tree, into)
	}
	return fmt.Errorf("view of %s: mode %q: %w", tree, mode, ErrInvalid)
}

func mountBind(tree, into string) error {
	if err := os.MkdirAll(into, 0o755); err != nil {
		return fmt.Errorf("bind view at %s: %w", into, err)
	}
	if err := unix.Mount(tree, into, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind view of %s at %s: mount: %w", tree, into, err)
	}
	// A bind mount ignores MS_RDONLY on creation: remount to apply it.
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	if err := unix.Mount("", into, "", flags, ""); err != nil {
		_ = unix.Unmount(into, unix.MNT_DETACH)
		return fmt.Errorf("bind view of %s at %s: remount read-only: %w", tree, into, err)
	}
	return nil
}

func mountOverlay(tree, into, upper string) error {
	if upper == "" {
		return fmt.Errorf("overlay view at %s: %w: no upper directory", into, ErrInvalid)
	}
	up, work := filepath.Join(upper, "upper"), filepath.Join(upper, "work")
	for _, p := range []string{tree, up, work} {
		if strings.ContainsAny(p, ",:\\") {
			return fmt.Errorf("overlay view at %s: %w: path %q has ',', ':' or '\\'", into, ErrInvalid, p)
		}
	}
	for _, d := range []string{into, up, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("overlay view at %s: %w", into, err)
		}
	}
	opts := "lowerdir=" + tree + ",upperdir=" + up + ",workdir=" + work
	if err := unix.Mount("overlay", into, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("overlay view of %s at %s: mount: %w", tree, into, err)
	}
	return nil
}

// linkFarm mirrors tree at into: directories with the tree's modes, hard
// links to the tree's files (so to the objects), and copies of symlinks.
func linkFarm(tree, into string) error {
	if des, err := os.ReadDir(into); err == nil && len(des) > 0 {
		return fmt.Errorf("link view at %s: %w: directory not empty", into, ErrInvalid)
	}
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var dirs []dirMode
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(tree, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(into, rel)
		switch {
		case d.IsDir():
			info, err := d.Info()
			if err != nil {
				return err
			}
			dirs = append(dirs, dirMode{dst, info.Mode()})
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return err
			}
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, dst)
		default:
			return os.Link(p, dst)
		}
		return nil
	})
	if err == nil {
		for i := len(dirs) - 1; i >= 0; i-- {
			if err = os.Chmod(dirs[i].path, dirs[i].mode&(fs.ModePerm|fs.ModeSetgid|fs.ModeSticky)); err != nil {
				break
			}
		}
	}
	if err != nil {
		_ = removeAll(into)
		if errors.Is(err, unix.EXDEV) {
			return fmt.Errorf("link view of %s at %s: %w (the view must be on the store's file system)", tree, into, err)
		}
		return fmt.Errorf("link view of %s at %s: %w", tree, into, err)
	}
	return nil
}

// UnmountView undoes MountView: it unmounts a bind or overlay view (lazily,
// MNT_DETACH, if it is busy) and removes the mount point if empty; it
// removes a link view's farm (never the objects: only the farm's links).
// An overlay's upper directory is the caller's to keep or remove.
func UnmountView(into string, mode ViewMode) error {
	switch mode {
	case ViewBind, ViewOverlay:
		err := unix.Unmount(into, 0)
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(into, unix.MNT_DETACH)
		}
		if err != nil {
			return fmt.Errorf("unmount view at %s: %w", into, err)
		}
		_ = os.Remove(into)
		return nil
	case ViewLink:
		if err := removeAll(into); err != nil {
			return fmt.Errorf("remove link view at %s: %w", into, err)
		}
		return nil
	}
	return fmt.Errorf("unmount view at %s: mode %q: %w", into, mode, ErrInvalid)
}
