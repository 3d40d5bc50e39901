package share

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Path operations beneath a VM's root. The VM controls every name below
// its root and may change any of them at any moment, so no path below the
// root is ever resolved as a string: each step opens one component
// relative to the descriptor of the directory above it with openat2 and
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS, and every
// create, chmod, link, unlink and mount acts on such descriptors. A
// symlink anywhere below the root fails the operation (ELOOP) instead of
// being followed; a directory the VM renames after it was opened is
// still the same directory, and it can only have moved inside the root.

// resolveBeneath is how every path below a VM's root is resolved.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// maxRemoveDepth bounds how deep removeBeneath descends into a directory
// tree the VM may have built (each level holds one descriptor).
const maxRemoveDepth = 256

// openRoot opens the trusted directory dir (the VM's root as the operator
// registered it, or a directory of the store). Symlinks in dir itself are
// the operator's and are followed.
func openRoot(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// openBeneath opens rel below the directory dirfd without following any
// symlink and without leaving dirfd. flags are open(2) flags; O_CLOEXEC is
// added.
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: resolveBeneath}
	for {
		fd, err := unix.Openat2(dirfd, rel, &how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue // EAGAIN: a rename raced the lookup; retry it
		}
		return fd, err
	}
}

// openDirBeneath opens the directory rel below dirfd (O_PATH).
func openDirBeneath(dirfd int, rel string) (int, error) {
	return openBeneath(dirfd, rel, unix.O_PATH|unix.O_DIRECTORY)
}

// checkRel reports whether rel is a clean relative path that stays below
// its root ("a/b", not "", ".", "/a", "a/../b" or "../a").
func checkRel(rel string) error {
	if rel == "" || rel == "." || !filepath.IsLocal(rel) || filepath.Clean(rel) != rel {
		return fmt.Errorf("view path %q: %w: want a clean relative path below the root", rel, ErrInvalid)
	}
	return nil
}

// mkdirBeneath opens the directory rel below dirfd, creating each missing
// component with mode perm, one component at a time: a component that is
// a symlink or not a directory fails with ELOOP or ENOTDIR. It returns an
// O_PATH descriptor of the last directory. rel "." opens dirfd again.
func mkdirBeneath(dirfd int, rel string, perm uint32) (int, error) {
	cur, err := unix.Dup(dirfd)
	if err != nil {
		return -1, err
	}
	if rel == "." {
		return cur, nil
	}
	for _, name := range strings.Split(rel, "/") {
		if err := unix.Mkdirat(cur, name, perm); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(cur)
			return -1, fmt.Errorf("mkdir %s: %w", name, err)
		}
		next, err := openDirBeneath(cur, name)
		unix.Close(cur)
		if err != nil {
			return -1, fmt.Errorf("open %s: %w", name, err)
		}
		cur = next
	}
	return cur, nil
}

// removeBeneath removes name in the directory dirfd and, if it is a
// directory, everything in it, without following symlinks (a symlink is
// removed, never its target) and without crossing into another mount.
// A missing name is not an error.
func removeBeneath(dirfd int, name string) error {
	return removeBeneathDepth(dirfd, name, 0)
}

func removeBeneathDepth(dirfd int, name string, depth int) error {
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveBeneath | unix.RESOLVE_NO_XDEV}
	fd, err := unix.Openat2(dirfd, name, &how)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		// A symlink or a file: remove the name itself.
		if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unlink %s: %w", name, err)
		}
		return nil
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("remove %s: %w: a mount point; left in place", name, unix.EBUSY)
	case err != nil:
		return fmt.Errorf("open %s: %w", name, err)
	}
	if depth >= maxRemoveDepth {
		unix.Close(fd)
		return fmt.Errorf("remove %s: %w: deeper than %d directories", name, ErrInvalid, maxRemoveDepth)
	}
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	for {
		names, rerr := d.Readdirnames(1024)
		for _, n := range names {
			if err := removeBeneathDepth(fd, n, depth+1); err != nil {
				return fmt.Errorf("%s/%w", name, err)
			}
		}
		if rerr != nil || len(names) == 0 {
			break
		}
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("rmdir %s: %w", name, err)
	}
	return nil
}

// isEmptyDir reports whether the directory dirfd/name holds no entries.
func isEmptyDir(dirfd int, name string) (bool, error) {
	fd, err := openBeneath(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return false, err
	}
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	names, err := d.Readdirnames(1)
	if len(names) > 0 {
		return false, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return true, nil
}

// mountID returns the ID of the mount fd is on, and whether fd is the
// root of that mount.
func mountID(fd int) (id uint64, root bool, err error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, false, err
	}
	return stx.Mnt_id, stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// fdPath is the /proc path that names what fd refers to; system calls
// that take a path act on exactly that file (or mount) through it.
func fdPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// lstatBeneath stats rel below dirfd without following any symlink, on
// the way or at its end (a symlink there is stat'ed itself).
func lstatBeneath(dirfd int, rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := openBeneath(dirfd, rel, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	err = unix.Fstat(fd, &st)
	return st, err
}

// readlinkBeneath reads the target of the symlink rel below dirfd,
// following no symlink on the way.
func readlinkBeneath(dirfd int, rel string) (string, error) {
	fd, err := openBeneath(dirfd, rel, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	return readlinkat(fd, "")
}
