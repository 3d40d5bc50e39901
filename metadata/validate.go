package metadata

import (
	"crypto/sha256"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// entryError returns the one-line error "entry "P": <sentinel>: <reason>".
func entryError(p string, sentinel error, format string, args ...any) error {
	return fmt.Errorf("entry %q: %w: %s", p, sentinel, fmt.Sprintf(format, args...))
}

// ValidatePath checks that p is an entry path: relative, slash-separated,
// clean (path.Clean(p) == p: no empty, "." or trailing element), not "."
// (the root is implicit), with no ".." element, no NUL and at most
// DefaultLimits().MaxPathLen bytes. Every other byte is allowed, as a Linux
// file system allows it: backslashes, control characters, bytes that are
// not UTF-8. The error wraps ErrInvalidPath and names the path.
func ValidatePath(p string) error {
	return validatePath(p, DefaultLimits().MaxPathLen)
}

func validatePath(p string, maxLen int) error {
	reason := ""
	switch {
	case p == "":
		reason = "empty path"
	case len(p) > maxLen:
		return entryError(shorten(p), ErrInvalidPath, "path is %d bytes, limit %d", len(p), maxLen)
	case strings.IndexByte(p, 0) >= 0:
		reason = "path contains NUL"
	case p[0] == '/':
		reason = "absolute path"
	case p == ".":
		reason = "the root is implicit and not an entry"
	case p == ".." || strings.HasPrefix(p, "../") || strings.HasSuffix(p, "/..") || strings.Contains(p, "/../"):
		reason = `path contains ".."`
	case path.Clean(p) != p:
		reason = fmt.Sprintf("path is not clean (want %q)", path.Clean(p))
	default:
		return nil
	}
	return entryError(p, ErrInvalidPath, "%s", reason)
}

// validateTarget checks the text of a symlink: not empty, no NUL, at most
// maxLen bytes. Anything else is kept as written, absolute targets and
// targets that climb out of the tree included: a target is data, resolved
// where the tree is used (inside a VM's view), never by whoever stores or
// moves the tree.
func validateTarget(p, target string, maxLen int) error {
	switch {
	case target == "":
		return entryError(p, ErrMalformed, "symlink has an empty target")
	case len(target) > maxLen:
		return entryError(p, ErrTooLarge, "symlink target is %d bytes, limit %d", len(target), maxLen)
	case strings.IndexByte(target, 0) >= 0:
		return entryError(p, ErrMalformed, "symlink target contains NUL")
	}
	return nil
}

// MaxOwnerName bounds the bytes of an entry's User or Group.
const MaxOwnerName = 256

// noID is the uid and gid (uint32 -1) that chown(2) reads as "leave
// unchanged": no file can be owned by it.
const noID = 1<<32 - 1

// validateOwner checks an entry's owner: ids other than noID, names valid
// UTF-8 without NUL or control characters, at most MaxOwnerName bytes.
func validateOwner(e *Entry) error {
	if e.UID == noID || e.GID == noID {
		return entryError(e.Path, ErrMalformed, "owner %d:%d: id %d is not an owner", e.UID, e.GID, uint32(noID))
	}
	for _, n := range []string{e.User, e.Group} {
		if len(n) > MaxOwnerName || !utf8.ValidString(n) || strings.IndexFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			return entryError(e.Path, ErrMalformed, "owner name %q: want at most %d bytes of UTF-8 without control characters", shorten(n), MaxOwnerName)
		}
	}
	return nil
}

// Validate checks every invariant of the content model (see the package
// documentation) against lim (zero fields take their defaults). The error
// names the first offending entry and wraps the sentinel that says why.
func (m *Manifest) Validate(lim Limits) error {
	lim = lim.withDefaults()
	if m.Format != ManifestFormat {
		return fmt.Errorf("manifest: %w: format %d, want %d", ErrMalformed, m.Format, ManifestFormat)
	}
	if m.ChunkSize < MinChunkSize || m.ChunkSize > MaxChunkSize {
		return fmt.Errorf("manifest: %w: chunk size %d outside [%d, %d]", ErrMalformed, m.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if len(m.Entries) > lim.MaxEntries {
		return fmt.Errorf("manifest: %w: %d entries, limit %d", ErrTooLarge, len(m.Entries), lim.MaxEntries)
	}
	dirs := make(map[string]bool)
	var total int64
	digests := sha256.New()
	var digest []byte
	for i := range m.Entries {
		e := &m.Entries[i]
		if err := validatePath(e.Path, lim.MaxPathLen); err != nil {
			return err
		}
		if i > 0 {
			prev := m.Entries[i-1].Path
			if prev == e.Path {
				return entryError(e.Path, ErrDuplicatePath, "listed twice")
			}
			if prev > e.Path {
				return entryError(e.Path, ErrMalformed, "entries not sorted by path (after %q)", prev)
			}
		}
		if dir := path.Dir(e.Path); dir != "." && !dirs[dir] {
			return entryError(e.Path, ErrInvalidPath, "parent %q is not a directory entry", dir)
		}
		if e.Mode&^0o7777 != 0 {
			return entryError(e.Path, ErrMalformed, "mode %#o has bits outside 0o7777", e.Mode)
		}
		if err := validateOwner(e); err != nil {
			return err
		}
		switch e.Type {
		case TypeFile:
			if e.Target != "" {
				return entryError(e.Path, ErrMalformed, "file has a symlink target")
			}
			if e.Size < 0 {
				return entryError(e.Path, ErrMalformed, "negative size %d", e.Size)
			}
			if e.Size > lim.MaxFileSize {
				return entryError(e.Path, ErrTooLarge, "size %d, limit %d", e.Size, lim.MaxFileSize)
			}
			if total += e.Size; total > lim.MaxTotalSize {
				return entryError(e.Path, ErrTooLarge, "total size passes limit %d", lim.MaxTotalSize)
			}
			want := (e.Size + m.ChunkSize - 1) / m.ChunkSize
			if int64(len(e.Chunks)) != want {
				return entryError(e.Path, ErrMalformed, "%d chunks, want %d for size %d", len(e.Chunks), want, e.Size)
			}
			digests.Reset()
			for j, s := range e.Chunks {
				_, d, err := ParseCID(s)
				if err != nil {
					return entryError(e.Path, ErrMalformed, "chunk %d: %v", j, err)
				}
				digests.Write(d)
			}
			h, _, err := ParseCID(e.Hash)
			if err != nil {
				return entryError(e.Path, ErrMalformed, "hash: %v", err)
			}
			digest = digests.Sum(digest[:0])
			if want := CIDFromSHA256(digest); !h.Equals(want) {
				return entryError(e.Path, ErrHashMismatch, "hash %s, chunk list gives %s", e.Hash, want)
			}
		case TypeDir, TypeSymlink:
			if e.Size != 0 || e.Hash != "" || len(e.Chunks) != 0 {
				return entryError(e.Path, ErrMalformed, "%s has a size, hash or chunks", e.Type)
			}
			if e.Type == TypeDir {
				if e.Target != "" {
					return entryError(e.Path, ErrMalformed, "dir has a symlink target")
				}
				dirs[e.Path] = true
				break
			}
			if err := validateTarget(e.Path, e.Target, lim.MaxPathLen); err != nil {
				return err
			}
		default:
			return entryError(e.Path, ErrUnsupportedEntry, "unknown type %q", e.Type)
		}
	}
	return nil
}

// shorten cuts an overlong path for an error message.
func shorten(p string) string {
	if len(p) <= 64 {
		return p
	}
	return p[:64] + "..."
}
