package metadata

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// zstd decoder bounds: frames asking for a larger window are refused rather
// than allowed to allocate it. 32 MiB covers every level up to 19 and
// --long=25.
const (
	zstdMaxWindow = 32 << 20
	zstdMaxMemory = 64 << 20
)

// importTar reads a tar stream. Names lose one leading "./"; a "./" or "."
// directory (the root) is skipped; a directory name loses its trailing "/".
// Regular files, directories, symlinks and hard links to earlier regular
// files are kept; devices, fifos and every other type are refused.
func (b *builder) importTar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, ErrTooLarge) {
			return fmt.Errorf("tar: %w", err)
		}
		if err != nil {
			return fmt.Errorf("tar: %w: %v", ErrMalformed, err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		mode := uint32(hdr.Mode) & 0o7777
		own, err := tarOwner(name, hdr)
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeXGlobalHeader:
			// PAX global header: metadata for the archive, not an entry.
		case tar.TypeDir:
			if name == "" || name == "." {
				continue // the root is implicit
			}
			if err := b.addDir(strings.TrimSuffix(name, "/"), mode, own); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := b.addFile(name, mode, own, tr, hdr.Size); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := b.addSymlink(name, hdr.Linkname, own); err != nil {
				return err
			}
		case tar.TypeLink:
			if err := b.addHardLink(name, strings.TrimPrefix(hdr.Linkname, "./")); err != nil {
				return err
			}
		case tar.TypeChar, tar.TypeBlock:
			return entryError(name, ErrUnsupportedEntry, "device file")
		case tar.TypeFifo:
			return entryError(name, ErrUnsupportedEntry, "fifo")
		default:
			return entryError(name, ErrUnsupportedEntry, "tar entry type %q", hdr.Typeflag)
		}
	}
	// What follows the end-of-archive marker is block padding; reading it
	// through to the end also makes a compressor check its trailer.
	n, err := io.Copy(io.Discard, io.LimitReader(r, trailingLimit+1))
	if err != nil {
		return fmt.Errorf("tar: %w: after the archive: %v", ErrMalformed, err)
	}
	if n > trailingLimit {
		return fmt.Errorf("tar: %w: more than %d bytes after the archive", ErrMalformed, trailingLimit)
	}
	return nil
}

// tarOwner returns the owner a tar header gives: its uid and gid, which
// must fit an owner id, and its user and group names, except "root" for id
// 0, which the id says already (so that a tree of root-owned entries
// encodes as it did before owners were carried).
func tarOwner(name string, hdr *tar.Header) (Owner, error) {
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) >= noID || int64(hdr.Gid) >= noID {
		return Owner{}, entryError(name, ErrMalformed, "owner %d:%d out of range", hdr.Uid, hdr.Gid)
	}
	o := Owner{UID: uint32(hdr.Uid), GID: uint32(hdr.Gid), User: hdr.Uname, Group: hdr.Gname}
	if o.UID == 0 && o.User == "root" {
		o.User = ""
	}
	if o.GID == 0 && o.Group == "root" {
		o.Group = ""
	}
	return o, nil
}

func (b *builder) importTarGz(r io.Reader) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("gzip: %w: %v", ErrMalformed, err)
	}
	defer zr.Close()
	return b.importTar(zr)
}

func (b *builder) importTarZst(r io.Reader) error {
	zr, err := newZstdReader(r)
	if err != nil {
		return err
	}
	defer zr.Close()
	return b.importTar(zr)
}

func newZstdReader(r io.Reader) (*zstd.Decoder, error) {
	zr, err := zstd.NewReader(r,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow),
		zstd.WithDecoderMaxMemory(zstdMaxMemory))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w: %v", ErrMalformed, err)
	}
	return zr, nil
}
