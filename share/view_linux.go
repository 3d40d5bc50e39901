package share

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// MountView shows v.Tree at v.Root/v.Path in mode v.Mode, creating the
// missing directories on the way (0755) beneath the root. A bind or
// overlay view is a new mount made detached (open_tree or fsmount) and
// moved onto the descriptor of its mount point, then checked to be
// where the path leads; a link view is built through descriptors too.
// For ViewLink, the tree and the root must be on one file system and the
// view's directory must not exist or be empty.
func MountView(v View) error {
	if err := v.check(); err != nil {
		return err
	}
	st, err := os.Stat(v.Tree)
	if err != nil {
		return fmt.Errorf("view of %s: %w", v.Tree, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("view of %s: %w: not a directory", v.Tree, ErrInvalid)
	}
	if err := os.MkdirAll(v.Root, 0o755); err != nil {
		return fmt.Errorf("view root %s: %w", v.Root, err)
	}
	root, err := openRoot(v.Root)
	if err != nil {
		return fmt.Errorf("view root: %w", err)
	}
	defer unix.Close(root)
	parent, err := mkdirBeneath(root, filepath.Dir(v.Path), 0o755)
	if err != nil {
		return fmt.Errorf("%s view at %s: %w", v.Mode, v.At(), err)
	}
	defer unix.Close(parent)
	name := filepath.Base(v.Path)
	if v.Mode == ViewLink {
		return linkFarm(v.Tree, parent, name, v.At())
	}
	return v.mountAt(parent, name)
}

// mountAt mounts the view on parent/name.
func (v *View) mountAt(parent int, name string) error {
	if err := unix.Mkdirat(parent, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s view at %s: mkdir: %w", v.Mode, v.At(), err)
	}
	target, err := openDirBeneath(parent, name)
	if err != nil {
		return fmt.Errorf("%s view at %s: open mount point: %w", v.Mode, v.At(), err)
	}
	defer unix.Close(target)
	if _, isRoot, err := mountID(target); err != nil || isRoot {
		return fmt.Errorf("%s view at %s: %w: already a mount point", v.Mode, v.At(), unix.EBUSY)
	}
	mnt, err := v.detached()
	if err != nil {
		return err
	}
	defer unix.Close(mnt)
	if err := unix.MoveMount(mnt, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("%s view of %s at %s: move_mount: %w", v.Mode, v.Tree, v.At(), err)
	}
	if err := landed(parent, name, mnt); err != nil {
		_ = unix.Unmount(fdPath(mnt), unix.MNT_DETACH)
		return fmt.Errorf("%s view at %s: %w", v.Mode, v.At(), err)
	}
	return nil
}

// detached makes the view's mount, not yet attached anywhere.
func (v *View) detached() (int, error) {
	var mnt int
	var err error
	if v.Mode == ViewBind {
		mnt, err = bindTree(v.Tree, v.Setuid)
	} else {
		mnt, err = v.overlay()
	}
	if err != nil {
		return -1, fmt.Errorf("%s view of %s at %s: %w", v.Mode, v.Tree, v.At(), err)
	}
	return mnt, nil
}

// moveMountBeneath is MOVE_MOUNT_BENEATH (Linux 6.5): the mount moved
// goes beneath the top mount of the target, on the same mount point.
const moveMountBeneath = 0x200

// ReplaceView switches the bind or overlay view old to nw, at the same
// place, in one step: the new mount is moved beneath the old one on the
// same mount point (MOVE_MOUNT_BENEATH), then the old one is detached, so
// that a path lookup meets the old tree or the new, never a mix and never
// nothing. A process that has a file or directory of the old view open
// keeps it: the detached mount lives until its last user lets go. The
// mount there must be old (isThisView); a link view, or a view that is
// not mounted, is ErrInvalid or ErrNotFound and the caller replaces it
// the slow way (UnmountView, MountView).
func ReplaceView(old, nw View) error {
	if err := old.check(); err != nil {
		return err
	}
	if err := nw.check(); err != nil {
		return err
	}
	if old.At() != nw.At() || old.Mode == ViewLink || nw.Mode == ViewLink {
		return fmt.Errorf("replace view at %s: %w: only a bind or overlay view at the same place is switched in place", old.At(), ErrInvalid)
	}
	parent, name, err := old.openParent()
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	target, err := openDirBeneath(parent, name)
	if err != nil {
		return fmt.Errorf("replace view at %s: %w (%w)", old.At(), ErrNotFound, err)
	}
	defer unix.Close(target)
	if _, isRoot, err := mountID(target); err != nil {
		return fmt.Errorf("replace view at %s: %w", old.At(), err)
	} else if !isRoot {
		return fmt.Errorf("replace view at %s: %w: not mounted", old.At(), ErrNotFound)
	}
	if err := old.isThisView(target); err != nil {
		return fmt.Errorf("replace view at %s: %w; left it mounted", old.At(), err)
	}
	mnt, err := nw.detached()
	if err != nil {
		return err
	}
	defer unix.Close(mnt)
	if err := unix.MoveMount(mnt, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH|moveMountBeneath); err != nil {
		return fmt.Errorf("replace view at %s: move_mount beneath: %w", old.At(), err)
	}
	// target still names the old mount: detaching it uncovers the new.
	if err := unix.Unmount(fdPath(target), unix.MNT_DETACH); err != nil {
		_ = unix.Unmount(fdPath(mnt), unix.MNT_DETACH)
		return fmt.Errorf("replace view at %s: detach the old view: %w", old.At(), err)
	}
	if err := landed(parent, name, mnt); err != nil {
		return fmt.Errorf("replace view at %s: %w", nw.At(), err)
	}
	return nil
}

// bindTree returns a detached read-only, nodev bind mount of tree, nosuid
// unless setuid.
func bindTree(tree string, setuid bool) (int, error) {
	mnt, err := unix.OpenTree(unix.AT_FDCWD, tree, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open_tree: %w", err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV | suidAttr(setuid)}
	if setuid {
		// A clone keeps the attributes of the mount it was cloned from.
		attr.Attr_clr = unix.MOUNT_ATTR_NOSUID
	}
	if err := unix.MountSetattr(mnt, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(mnt)
		return -1, fmt.Errorf("mount_setattr read-only: %w", err)
	}
	return mnt, nil
}

// overlay returns a detached nodev overlayfs, nosuid unless v.Setuid,
// whose only lower layer is the tree, with v.Upper/upper and v.Upper/work. v.Upper is made
// private (0700): the VM's changes are its own business.
func (v *View) overlay() (int, error) {
	up, work := filepath.Join(v.Upper, "upper"), filepath.Join(v.Upper, "work")
	if err := os.MkdirAll(v.Upper, 0o700); err != nil {
		return -1, err
	}
	if err := os.Chmod(v.Upper, 0o700); err != nil {
		return -1, err
	}
	for _, d := range []string{up, work} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return -1, err
		}
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	set := func(key, val string) error {
		if err := unix.FsconfigSetString(fsfd, key, val); err != nil {
			return fmt.Errorf("overlay %s=%s: %w%s", key, val, err, fsLog(fsfd))
		}
		return nil
	}
	// lowerdir+ takes one path as it is; plain lowerdir (kernels before
	// 6.8) splits at ':' and unescapes '\'.
	if err := set("lowerdir+", v.Tree); err != nil {
		if strings.ContainsAny(v.Tree, ":\\") {
			return -1, err
		}
		if err := set("lowerdir", v.Tree); err != nil {
			return -1, err
		}
	}
	if err := set("upperdir", up); err != nil {
		return -1, err
	}
	if err := set("workdir", work); err != nil {
		return -1, err
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("create overlay: %w%s", err, fsLog(fsfd))
	}
	mnt, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, int(unix.MOUNT_ATTR_NODEV|suidAttr(v.Setuid)))
	if err != nil {
		return -1, fmt.Errorf("fsmount overlay: %w%s", err, fsLog(fsfd))
	}
	return mnt, nil
}

// suidAttr is MOUNT_ATTR_NOSUID unless setuid.
func suidAttr(setuid bool) uint64 {
	if setuid {
		return 0
	}
	return unix.MOUNT_ATTR_NOSUID
}

// fsLog returns the file system context's messages, if any, as ": msg".
func fsLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 512)
	for range 8 {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return ": " + strings.Join(msgs, "; ")
}

// landed checks that parent/name now leads to the mount mnt: that the VM
// did not move the mount point away between its lookup and the move.
func landed(parent int, name string, mnt int) error {
	want, _, err := mountID(mnt)
	if err != nil {
		return err
	}
	fd, err := openDirBeneath(parent, name)
	if err != nil {
		return fmt.Errorf("mount point moved while mounting: %w", err)
	}
	defer unix.Close(fd)
	got, _, err := mountID(fd)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: mount point moved while mounting", unix.EBUSY)
	}
	return nil
}

// linkFarm mirrors tree at parent/name: directories with the tree's modes
// and owners, hard links to the tree's files (so to the objects; refused
// for a file anyone but root may write, see ViewLink), and copies of
// symlinks with their owners. at names the farm in messages.
func linkFarm(tree string, parent int, name, at string) error {
	src, err := unix.Open(tree, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("link view of %s: %w", tree, err)
	}
	defer unix.Close(src)
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return fmt.Errorf("link view of %s: %w", tree, err)
	}
	if err := unix.Mkdirat(parent, name, 0o700); errors.Is(err, unix.EEXIST) {
		empty, err := isEmptyDir(parent, name)
		if err != nil {
			return fmt.Errorf("link view at %s: %w", at, err)
		}
		if !empty {
			return fmt.Errorf("link view at %s: %w: directory not empty", at, ErrInvalid)
		}
	} else if err != nil {
		return fmt.Errorf("link view at %s: mkdir: %w", at, err)
	}
	dst, err := openBeneath(parent, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err == nil {
		err = farmDir(src, dst)
		if err == nil {
			err = unix.Fchmod(dst, st.Mode&0o7777)
		}
		unix.Close(dst)
	}
	if err != nil {
		_ = removeBeneath(parent, name)
		if errors.Is(err, unix.EXDEV) {
			return fmt.Errorf("link view of %s at %s: %w (the view must be on the store's file system)", tree, at, err)
		}
		return fmt.Errorf("link view of %s at %s: %w", tree, at, err)
	}
	return nil
}

// farmDir fills the farm directory dst with what the tree directory src
// holds. New directories are 0700 until they are full, then take the
// tree's mode.
func farmDir(src, dst int) error {
	dup, err := unix.Dup(src)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(dup), "tree")
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(src, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			err = farmSubdir(src, dst, n, &st)
		case unix.S_IFLNK:
			var t string
			if t, err = readlinkat(src, n); err == nil {
				err = unix.Symlinkat(t, dst, n)
			}
			if err == nil && ownersApply {
				err = unix.Fchownat(dst, n, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
			}
		case unix.S_IFREG:
			if who := writableBy(&st); who != "" {
				err = fmt.Errorf("%w: writable by %s: a link view would let that user change the shared object (use a bind or overlay view)", ErrInvalid, who)
				break
			}
			err = unix.Linkat(src, n, dst, n, 0)
		default:
			err = fmt.Errorf("%w: not a file, directory or symlink", ErrInvalid)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
	}
	return nil
}

// writableBy says who other than root and the store's own user and group
// (whom a link view's VM must not run as, see ViewLink) may write the file
// st describes ("" if no one): its owner, its group, or everyone.
func writableBy(st *unix.Stat_t) string {
	switch {
	case st.Mode&0o002 != 0:
		return "everyone"
	case st.Uid != 0 && st.Uid != uint32(os.Geteuid()) && st.Mode&0o200 != 0:
		return fmt.Sprintf("its owner (uid %d)", st.Uid)
	case st.Gid != 0 && st.Gid != uint32(os.Getegid()) && st.Mode&0o020 != 0:
		return fmt.Sprintf("its group (gid %d)", st.Gid)
	}
	return ""
}

// farmSubdir makes the farm directory dst/n for the tree directory src/n
// (stat'ed as st), fills it, and gives it the tree directory's owner and
// mode.
func farmSubdir(src, dst int, n string, st *unix.Stat_t) error {
	if err := unix.Mkdirat(dst, n, 0o700); err != nil {
		return err
	}
	s, err := unix.Openat(src, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	d, err := openBeneath(dst, n, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(d)
	if err := farmDir(s, d); err != nil {
		return err
	}
	if ownersApply {
		if err := unix.Fchown(d, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	return unix.Fchmod(d, st.Mode&0o7777)
}

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// UnmountView undoes MountView. It unmounts a bind or overlay view
// (detaching it if it is busy) once it has checked that the mount there
// is this view, and removes the mount point if empty; it removes a link
// view's farm (never the objects: only the farm's links). What the VM
// put in the view's place is removed, never followed: a symlink where
// the view was is unlinked and reported with ErrViewReplaced. A view that
// is not there any more is not an error. An overlay's upper directory is
// the caller's to keep or remove.
func UnmountView(v View) error {
	if err := v.check(); err != nil {
		return err
	}
	parent, name, err := v.openParent()
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	if v.Mode == ViewLink {
		if err := removeBeneath(parent, name); err != nil {
			return fmt.Errorf("remove link view at %s: %w", v.At(), err)
		}
		return nil
	}
	target, err := openDirBeneath(parent, name)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		if err := unix.Unlinkat(parent, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("view at %s: %w: remove it: %w", v.At(), ErrViewReplaced, err)
		}
		return fmt.Errorf("view at %s: %w by a symlink or file: removed that, followed nothing", v.At(), ErrViewReplaced)
	case err != nil:
		return fmt.Errorf("unmount view at %s: %w", v.At(), err)
	}
	defer unix.Close(target)
	if _, isRoot, err := mountID(target); err != nil {
		return fmt.Errorf("unmount view at %s: %w", v.At(), err)
	} else if isRoot {
		if err := v.isThisView(target); err != nil {
			return fmt.Errorf("unmount view at %s: %w; left it mounted", v.At(), err)
		}
		// The descriptor itself keeps the mount busy: detach it; it goes
		// when the last user lets go.
		if err := unix.Unmount(fdPath(target), unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount view at %s: %w", v.At(), err)
		}
	}
	_ = unix.Unlinkat(parent, name, unix.AT_REMOVEDIR)
	return nil
}

// openParent opens the directory the view is in, beneath the root. It
// fails with ErrNotFound if it (or the root) is missing, and with
// ErrViewReplaced if a directory on the way is a symlink or a file.
func (v *View) openParent() (int, string, error) {
	root, err := openRoot(v.Root)
	if errors.Is(err, unix.ENOENT) {
		return -1, "", fmt.Errorf("view root %s: %w", v.Root, ErrNotFound)
	}
	if err != nil {
		return -1, "", err
	}
	defer unix.Close(root)
	parent, err := openDirBeneath(root, filepath.Dir(v.Path))
	switch {
	case errors.Is(err, unix.ENOENT):
		return -1, "", fmt.Errorf("view at %s: %w", v.At(), ErrNotFound)
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EXDEV):
		return -1, "", fmt.Errorf("view at %s: %w (%w): a directory on the way is a symlink or not a directory (%w); nothing followed", v.At(), ErrViewUnreachable, ErrViewReplaced, err)
	case err != nil:
		return -1, "", fmt.Errorf("view at %s: %w", v.At(), err)
	}
	return parent, filepath.Base(v.Path), nil
}

// isThisView checks that the mount whose root is fd is this view: for a
// bind view, the tree itself (same device and inode); for an overlay, an
// overlayfs with this view's upper directory.
func (v *View) isThisView(fd int) error {
	switch v.Mode {
	case ViewBind:
		var got, want unix.Stat_t
		if err := unix.Fstat(fd, &got); err != nil {
			return err
		}
		if err := unix.Stat(v.Tree, &want); err != nil {
			return err
		}
		if got.Dev != want.Dev || got.Ino != want.Ino {
			return fmt.Errorf("%w: the mount there is not the tree %s", ErrViewReplaced, v.Tree)
		}
		return nil
	case ViewOverlay:
		id, _, err := mountID(fd)
		if err != nil {
			return err
		}
		m, err := mountByID(id)
		if err != nil {
			return err
		}
		if m.FSType != "overlay" || m.Option("upperdir") != filepath.Join(v.Upper, "upper") {
			return fmt.Errorf("%w: the mount there (%s, upperdir %q) is not this view's overlay", ErrViewReplaced, m.FSType, m.Option("upperdir"))
		}
		return nil
	}
	return fmt.Errorf("view mode %q: %w", v.Mode, ErrInvalid)
}

// CheckView reports whether v is in place: nil if its mount (bind,
// overlay) is there and is this view, or its farm (link) is there as a
// directory. It fails with ErrNotFound if the view
// is missing, and with ErrViewReplaced if something else took its place.
func CheckView(v View) error {
	if err := v.check(); err != nil {
		return err
	}
	parent, name, err := v.openParent()
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	target, err := openDirBeneath(parent, name)
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("view at %s: %w", v.At(), ErrNotFound)
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EXDEV):
		return fmt.Errorf("view at %s: %w by a symlink or file", v.At(), ErrViewReplaced)
	case err != nil:
		return fmt.Errorf("view at %s: %w", v.At(), err)
	}
	defer unix.Close(target)
	if v.Mode == ViewLink {
		return nil // the farm's contents are the VM's to change
	}
	if _, isRoot, err := mountID(target); err != nil {
		return fmt.Errorf("view at %s: %w", v.At(), err)
	} else if !isRoot {
		return fmt.Errorf("view at %s: %w: not mounted", v.At(), ErrNotFound)
	}
	if err := v.isThisView(target); err != nil {
		return fmt.Errorf("view at %s: %w", v.At(), err)
	}
	return nil
}

// RemoveUpper removes an overlay view's upper directory (see View.Upper)
// and everything the VM wrote in it, without following the symlinks it
// may hold. The view must be unmounted first.
func RemoveUpper(upper string) error {
	parent, err := openRoot(filepath.Dir(upper))
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	if err := removeBeneath(parent, filepath.Base(upper)); err != nil {
		return fmt.Errorf("remove overlay upper %s: %w", upper, err)
	}
	return nil
}
