package metadata

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// arMagic opens every ar archive, and so every .deb.
const arMagic = "!<arch>\n"

// arHeaderLen is the size of an ar member header.
const arHeaderLen = 60

// maxDebMember bounds a member other than data.tar.* (skipped unread).
const maxDebMember = 1 << 30

// importDeb reads a Debian binary package: an ar archive whose first member
// is debian-binary ("2.x"), then control.tar.*, then data.tar, data.tar.gz,
// data.tar.xz or data.tar.zst, whose tree is imported. Members before the
// data member are skipped; nothing after it is read.
func (b *builder) importDeb(r io.Reader) error {
	ar := &arReader{r: r}
	if err := ar.start(); err != nil {
		return err
	}
	for i := 0; ; i++ {
		name, size, err := ar.next()
		if err == io.EOF {
			return fmt.Errorf("deb: %w: no data.tar member", ErrMalformed)
		}
		if err != nil {
			return err
		}
		body := io.LimitReader(r, size)
		if i == 0 {
			if name != "debian-binary" || size > 64 {
				return fmt.Errorf("deb: %w: first member is %q (%d bytes), want debian-binary", ErrMalformed, name, size)
			}
			v, err := io.ReadAll(body)
			if err != nil || int64(len(v)) != size || !strings.HasPrefix(string(v), "2.") {
				return fmt.Errorf("deb: %w: debian-binary is %q, want 2.x", ErrMalformed, v)
			}
			if err := ar.pad(size); err != nil {
				return err
			}
			continue
		}
		if !strings.HasPrefix(name, "data.tar") {
			if size > maxDebMember {
				return fmt.Errorf("deb: %w: member %q is %d bytes, limit %d", ErrTooLarge, name, size, maxDebMember)
			}
			if err := ar.skip(size); err != nil {
				return err
			}
			continue
		}
		// The member's own bounds stop a decompressor from reading past it.
		body = &exactReader{r: body, left: size}
		switch name {
		case "data.tar":
			return b.importTar(body)
		case "data.tar.gz":
			return b.importTarGz(body)
		case "data.tar.zst":
			return b.importTarZst(body)
		case "data.tar.xz":
			xr, err := newXZReader(body)
			if err != nil {
				return err
			}
			return b.importTar(xr)
		default:
			return fmt.Errorf("deb: %w: data member %q (compression not supported)", ErrUnsupportedEntry, name)
		}
	}
}

// arReader walks the members of an ar archive (common format: 8-byte global
// header, 60-byte member headers, member data padded to an even length).
// Member sizes are at most ten decimal digits by the format.
type arReader struct {
	r   io.Reader
	hdr [arHeaderLen]byte
}

func (a *arReader) start() error {
	var magic [len(arMagic)]byte
	if _, err := io.ReadFull(a.r, magic[:]); err != nil || string(magic[:]) != arMagic {
		return fmt.Errorf("deb: %w: not an ar archive", ErrMalformed)
	}
	return nil
}

// next reads the next member header; io.EOF at the clean end.
func (a *arReader) next() (name string, size int64, err error) {
	n, err := io.ReadFull(a.r, a.hdr[:])
	if n == 0 && err == io.EOF {
		return "", 0, io.EOF
	}
	if err != nil {
		return "", 0, fmt.Errorf("deb: %w: truncated ar header", ErrMalformed)
	}
	h := a.hdr[:]
	if string(h[58:60]) != "`\n" {
		return "", 0, fmt.Errorf("deb: %w: bad ar header magic", ErrMalformed)
	}
	name = strings.TrimSuffix(strings.TrimRight(string(h[0:16]), " "), "/")
	s := strings.TrimRight(string(h[48:58]), " ")
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return "", 0, fmt.Errorf("deb: %w: member %q: bad size %q", ErrMalformed, name, s)
	}
	size, err = strconv.ParseInt(s, 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("deb: %w: member %q: bad size %q", ErrMalformed, name, s)
	}
	return name, size, nil
}

// skip discards a member of size bytes and its padding.
func (a *arReader) skip(size int64) error {
	if n, err := io.CopyN(io.Discard, a.r, size); err != nil {
		return fmt.Errorf("deb: %w: member truncated at %d of %d bytes", ErrMalformed, n, size)
	}
	return a.pad(size)
}

// pad reads the padding byte that follows a member of odd size.
func (a *arReader) pad(size int64) error {
	if size%2 == 0 {
		return nil
	}
	var p [1]byte
	if _, err := io.ReadFull(a.r, p[:]); err != nil {
		return fmt.Errorf("deb: %w: missing ar padding", ErrMalformed)
	}
	return nil
}

// exactReader reads r, which must hold exactly left more bytes: ending
// early is io.ErrUnexpectedEOF, not a silent short member.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
