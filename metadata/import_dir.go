package metadata

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// importDir walks the directory root without following symlinks (os.Lstat
// semantics). Regular files, directories and symlinks are kept with their
// permission bits and numeric owners (a directory has no owner names);
// devices, fifos and sockets are refused. Directories are
// read in batches, so the entry limit holds before a huge directory is
// listed in full.
func (b *builder) importDir(root string) error {
	stack := []string{""} // directories to read, relative slash paths
	for len(stack) > 0 {
		rel := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		subdirs, err := b.readDir(root, rel)
		if err != nil {
			return err
		}
		stack = append(stack, subdirs...)
	}
	return nil
}

// readDir adds the entries of the directory rel and returns its
// subdirectories.
func (b *builder) readDir(root, rel string) ([]string, error) {
	f, err := os.Open(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		return nil, fmt.Errorf("entry %q: %w", rel, err)
	}
	defer f.Close()
	var subdirs []string
	for {
		des, rerr := f.ReadDir(256)
		for _, de := range des {
			p := de.Name()
			if rel != "" {
				p = rel + "/" + p
			}
			isDir, err := b.addDirEntry(root, p)
			if err != nil {
				return nil, err
			}
			if isDir {
				subdirs = append(subdirs, p)
			}
		}
		if rerr == io.EOF {
			return subdirs, nil
		}
		if rerr != nil {
			return nil, fmt.Errorf("entry %q: %w", rel, rerr)
		}
	}
}

// addDirEntry adds the file system object at p (relative to root).
func (b *builder) addDirEntry(root, p string) (isDir bool, err error) {
	if err := b.ctx.Err(); err != nil {
		return false, err
	}
	if err := validatePath(p, b.lim.MaxPathLen); err != nil {
		return false, err
	}
	full := filepath.Join(root, filepath.FromSlash(p))
	fi, err := os.Lstat(full)
	if err != nil {
		return false, fmt.Errorf("entry %q: %w", p, err)
	}
	mode := fileMode(fi.Mode())
	own := statOwner(fi)
	switch t := fi.Mode().Type(); {
	case t == 0:
		return false, b.addDiskFile(p, full, fi, mode, own)
	case t == os.ModeDir:
		return true, b.addDir(p, mode, own)
	case t == os.ModeSymlink:
		target, err := os.Readlink(full)
		if err != nil {
			return false, fmt.Errorf("entry %q: %w", p, err)
		}
		return false, b.addSymlink(p, target, own)
	default:
		return false, entryError(p, ErrUnsupportedEntry, "%s", describeType(t))
	}
}

// addDiskFile reads the regular file at full. The open file must still be
// the object Lstat saw (not swapped for a symlink meanwhile).
func (b *builder) addDiskFile(p, full string, fi os.FileInfo, mode uint32, own Owner) error {
	if err := b.count(p, fi.Size()); err != nil {
		return err
	}
	f, err := os.Open(full)
	if err != nil {
		return fmt.Errorf("entry %q: %w", p, err)
	}
	defer f.Close()
	ofi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("entry %q: %w", p, err)
	}
	if !ofi.Mode().IsRegular() || !os.SameFile(fi, ofi) {
		return entryError(p, ErrUnsupportedEntry, "changed while being read")
	}
	return b.addFile(p, mode, own, f, fi.Size())
}

func describeType(t os.FileMode) string {
	switch {
	case t&os.ModeCharDevice != 0:
		return "character device"
	case t&os.ModeDevice != 0:
		return "block device"
	case t&os.ModeNamedPipe != 0:
		return "fifo"
	case t&os.ModeSocket != 0:
		return "socket"
	case t&os.ModeIrregular != 0:
		return "irregular file"
	}
	return fmt.Sprintf("unsupported file type %v", t)
}
