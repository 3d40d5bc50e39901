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
// clean (path.Clean(p) == p), not "." (the root is implicit), with no ".."
// element, no NUL, no backslash (ambiguous across systems), valid UTF-8 (JSON
// would rewrite anything else) and at most DefaultLimits().MaxPathLen bytes.
// The error wraps ErrInvalidPath and names the path.
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
	case !utf8.ValidString(p):
		reason = "path is not valid UTF-8"
	case strings.IndexByte(p, 0) >= 0:
		reason = "path contains NUL"
	case strings.IndexByte(p, '\\') >= 0:
		reason = "path contains a backslash"
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

// validateTarget checks the text of a symlink: not empty, not absolute, no
// NUL, valid UTF-8, at most maxLen bytes. Whether it stays inside the tree is
// checked by the caller, which knows the tree.
func validateTarget(p, target string, maxLen int) error {
	switch {
	case target == "":
		return entryError(p, ErrMalformed, "symlink has an empty target")
	case len(target) > maxLen:
		return entryError(p, ErrTooLarge, "symlink target is %d bytes, limit %d", len(target), maxLen)
	case !utf8.ValidString(target):
		return entryError(p, ErrMalformed, "symlink target is not valid UTF-8")
	case strings.IndexByte(target, 0) >= 0:
		return entryError(p, ErrMalformed, "symlink target contains NUL")
	case target[0] == '/':
		return entryError(p, ErrSymlinkEscape, "absolute target %q", target)
	}
	// Quick lexical check; the full check (through other symlinks) is in
	// checkSymlinks.
	if t := path.Join(path.Dir(p), target); t == ".." || strings.HasPrefix(t, "../") {
		return entryError(p, ErrSymlinkEscape, "target %q resolves to %q", target, t)
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
	symlinks := false
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
			symlinks = true
		default:
			return entryError(e.Path, ErrUnsupportedEntry, "unknown type %q", e.Type)
		}
	}
	if symlinks {
		return checkSymlinks(m.Entries)
	}
	return nil
}

// checkSymlinks resolves every symlink of entries (sorted, paths valid,
// parents present) the way the kernel would, following symlinks met on the
// way, and refuses any that climbs above the root at any step. Each symlink
// is resolved once (memoised), so the cost is linear in the total length of
// the targets.
func checkSymlinks(entries []Entry) error {
	type key struct {
		parent int // index of the parent entry, -1 for the root
		name   string
	}
	const (
		unvisited = iota
		visiting
		done
	)
	type link struct {
		state int
		node  int // where it points: an entry index, or -1 for the root
		extra int // further components below node that name nothing
		err   error
	}
	byPath := make(map[string]int, len(entries))
	parent := make([]int, len(entries))
	children := make(map[key]int, len(entries))
	for i, e := range entries {
		byPath[e.Path] = i
		dir, name := path.Split(e.Path)
		p := -1
		if dir != "" {
			p = byPath[strings.TrimSuffix(dir, "/")]
		}
		parent[i] = p
		children[key{p, name}] = i
	}
	links := make(map[int]*link)
	var resolve func(i int) (int, int, error)
	resolve = func(i int) (int, int, error) {
		l := links[i]
		if l == nil {
			l = &link{}
			links[i] = l
		}
		switch l.state {
		case done:
			return l.node, l.extra, l.err
		case visiting:
			return 0, 0, entryError(entries[i].Path, ErrSymlinkEscape, "symlink loop")
		}
		l.state = visiting
		cur, extra := parent[i], 0
		for _, c := range strings.Split(entries[i].Target, "/") {
			switch {
			case c == "" || c == ".":
			case c == "..":
				switch {
				case extra > 0:
					extra--
				case cur == -1:
					l.err = entryError(entries[i].Path, ErrSymlinkEscape, "target %q climbs above the root", entries[i].Target)
				default:
					cur = parent[cur]
				}
			case extra > 0:
				extra++
			default:
				child, ok := children[key{cur, c}]
				if !ok {
					extra++
					break
				}
				switch entries[child].Type {
				case TypeDir:
					cur = child
				case TypeSymlink:
					n, x, err := resolve(child)
					if err != nil {
						l.err = entryError(entries[i].Path, ErrSymlinkEscape, "target %q goes through %q: %v", entries[i].Target, entries[child].Path, err)
					}
					cur, extra = n, x
				default:
					extra++ // a file used as a directory resolves to nothing
				}
			}
			if l.err != nil {
				break
			}
		}
		l.state, l.node, l.extra = done, cur, extra
		return l.node, l.extra, l.err
	}
	for i, e := range entries {
		if e.Type != TypeSymlink {
			continue
		}
		if _, _, err := resolve(i); err != nil {
			return err
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
