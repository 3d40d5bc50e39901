package share

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// renameNoReplace renames oldpath to newpath atomically, failing with an
// error matching fs.ErrExist if newpath exists.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// The file system cannot: link (which never replaces) then unlink.
		if err := os.Link(oldpath, newpath); err != nil {
			return err
		}
		return os.Remove(oldpath)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// fdatasync flushes f's data (and the metadata needed to read it back).
func fdatasync(f *os.File) error {
	return control(f, unix.Fdatasync)
}

// control runs fn on f's descriptor and returns its error.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = fn(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// controlPath opens path read-only and runs fn on its descriptor.
func controlPath(path string, fn func(fd int) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return control(f, fn)
}

// syncFS flushes the whole file system holding path.
func syncFS(path string) error {
	return controlPath(path, unix.Syncfs)
}

// fileStamp identifies a file's inode and its last change: if a write,
// truncate or chmod by anyone touches the file, its change time moves (the
// kernel hands out a fine-grained time to the first change after a stat
// observed the previous one: multigrain timestamps, ext4 and others since
// Linux 6.13; older kernels tick at least every jiffy).
type fileStamp struct {
	dev, ino   uint64
	mode       uint32 // type and permission bits
	uid, gid   uint32
	size       int64
	ctime      unix.Timespec
	mtime      unix.Timespec
	ok         bool
	statFailed bool
}

func stampOf(st *unix.Stat_t) fileStamp {
	return fileStamp{dev: uint64(st.Dev), ino: st.Ino, mode: st.Mode, uid: st.Uid, gid: st.Gid, size: st.Size, ctime: st.Ctim, mtime: st.Mtim, ok: true}
}

// fstamp stamps an open file.
func fstamp(f *os.File) fileStamp {
	rc, err := f.SyscallConn()
	if err != nil {
		return fileStamp{statFailed: true}
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		return fileStamp{statFailed: true}
	}
	return stampOf(&st)
}

// ownersApply says whether this process can give files the owners
// their entries name: it runs as root. A store run by another user keeps
// every object, directory and symlink owned by that user, and compares no
// owners (its views then show that user's ownership).
var ownersApply = os.Geteuid() == 0

// lchown gives the file at p (a symlink itself, not its target) the
// owner uid:gid, where ownersApply.
func lchown(p string, uid, gid uint32) error {
	if !ownersApply {
		return nil
	}
	return os.Lchown(p, int(uid), int(gid))
}

// sameOwner reports whether a file owned by gotUID:gotGID has the owner
// uid:gid (always, where owners do not apply).
func sameOwner(gotUID, gotGID, uid, gid uint32) bool {
	return !ownersApply || (gotUID == uid && gotGID == gid)
}

// lstamp stamps the file at path (not following a symlink).
func lstamp(path string) fileStamp {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fileStamp{statFailed: true}
	}
	return stampOf(&st)
}

// same reports whether two good stamps name the same inode unchanged.
func (a fileStamp) same(b fileStamp) bool {
	return a.ok && b.ok && a == b
}

// sameContent reports whether two good stamps name the same inode with the
// same size and modification time: not written to or truncated in between
// (links, renames and chmod move only the change time).
func (a fileStamp) sameContent(b fileStamp) bool {
	return a.sameInode(b) && a.size == b.size && a.mtime == b.mtime
}

// sameInode reports whether two good stamps name the same inode.
func (a fileStamp) sameInode(b fileStamp) bool {
	return a.ok && b.ok && a.dev == b.dev && a.ino == b.ino
}

// fsTopDirFlag is FS_TOPDIR_FL (chattr +T): "the top of a directory
// hierarchy", for the block allocator.
const fsTopDirFlag = 0x00020000

// markTopDir asks the file system to spread the sub-directories of dir
// over its block groups, as it does for directories at its root (ext4's
// Orlov allocator), instead of packing them next to dir. A file's inode
// is taken from its directory's block group, and ext4 without a journal
// skips every inode of that group freed in the last minutes (up to six
// when its inode table is dirty), one buffer-cache lookup each: on a
// disk where a build or test run just deleted thousands of files near
// dir, each create pays for all of them (docs/figures.md has one
// measurement). The store creates its files (partial
// downloads, trees in tmp/) in sub-directories of partial/ and tmp/, so
// those two are marked. Best effort: file systems without the flag
// (ENOTTY, EOPNOTSUPP, EINVAL) keep their own placement.
func markTopDir(dir string) error {
	return controlPath(dir, func(fd int) error {
		flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
		if err != nil || flags&fsTopDirFlag != 0 {
			return err
		}
		return unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsTopDirFlag))
	})
}

// setStamp records st (a stamp of the verified object file) in r.
func (r *objRecord) setStamp(st fileStamp) {
	if st.ok {
		r.Ino, r.Mtime = st.ino, st.mtime.Nano()
	}
}

// regular reports whether the stamped file is a regular file.
func (a fileStamp) regular() bool { return a.ok && a.mode&unix.S_IFMT == unix.S_IFREG }

// stampMatches reports whether the object file stamped st is, by its
// metadata, the file r was verified as: a regular file with r's inode,
// size, mode, owner and modification time.
func (r *objRecord) stampMatches(st fileStamp) bool {
	return st.ok && r.Ino != 0 && st.ino == r.Ino && st.mtime.Nano() == r.Mtime &&
		st.size == r.Size && st.regular() && st.mode&0o7777 == r.Perm && sameOwner(st.uid, st.gid, r.UID, r.GID)
}
