package metadata

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"
)

// ChunkSink receives every chunk an import cuts, in order, duplicates
// included. data is only valid during the call: the importer reuses its
// buffer for the next chunk.
type ChunkSink interface {
	PutChunk(c cid.Cid, data []byte) error
}

// DiscardSink is a ChunkSink that keeps nothing (dry runs, tests, hashing).
type DiscardSink struct{}

// PutChunk does nothing.
func (DiscardSink) PutChunk(cid.Cid, []byte) error { return nil }

var _ ChunkSink = DiscardSink{}

// SourceKind names the form of a package source.
type SourceKind string

// Source kinds. The empty kind asks Import to detect it.
const (
	KindDir    SourceKind = "dir"
	KindTar    SourceKind = "tar"
	KindTarGz  SourceKind = "tar.gz"
	KindTarZst SourceKind = "tar.zst"
	KindDeb    SourceKind = "deb"
	KindFile   SourceKind = "file"
)

// ImportOptions configure Import and ImportReader. Zero fields take their
// defaults.
type ImportOptions struct {
	ChunkSize int64      // default DefaultChunkSize; within [MinChunkSize, MaxChunkSize]
	Limits    Limits     // zero fields: DefaultLimits
	Kind      SourceKind // "" = auto-detect (Import only)
}

// singleFileMode is the mode of the entry ImportReader makes for KindFile.
const singleFileMode = 0o644

// trailingLimit bounds the bytes read after the end of a tar archive (block
// padding, and the rest of a compressed stream, whose checksum is thereby
// verified).
const trailingLimit = 1 << 20

// Import turns the package source at path into a Manifest, pushing every
// chunk to sink. The kind is opts.Kind or, if empty, detected: a directory
// (path itself may be a symlink; nothing under it is followed) is KindDir; a
// name ending in .tar, .tar.gz or .tgz, .tar.zst or .tzst, or .deb picks that
// kind; otherwise the first bytes decide (gzip 1f 8b: tar.gz; zstd 28 b5 2f
// fd: tar.zst; "!<arch>\n": deb; "ustar" at offset 257: tar); anything else
// is a single file, which becomes a one-file tree whose only entry is the
// file's base name with its permission bits.
//
// The manifest returned is sorted and passes Validate(opts.Limits). Every
// refusal is one line naming the entry and the reason, wrapping one of
// ErrInvalidPath, ErrUnsupportedEntry, ErrDuplicatePath, ErrTooLarge or
// ErrMalformed; a cancelled ctx stops the import between
// chunks with ctx.Err().
func Import(ctx context.Context, path string, opts ImportOptions, sink ChunkSink) (*Manifest, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	kind := opts.Kind
	if fi.IsDir() {
		if kind != "" && kind != KindDir {
			return nil, fmt.Errorf("import %s: %w: a directory, not %s", path, ErrUnsupportedEntry, kind)
		}
		b, err := newBuilder(ctx, opts, sink)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
		if err := b.importDir(path); err != nil {
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
		return b.finish()
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("import %s: %w: not a regular file or directory (%s)", path, ErrUnsupportedEntry, fi.Mode().Type())
	}
	if kind == KindDir {
		return nil, fmt.Errorf("import %s: %w: not a directory", path, ErrUnsupportedEntry)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	defer f.Close()
	if kind == "" {
		if kind, err = detectKind(f, filepath.Base(path)); err != nil {
			return nil, fmt.Errorf("import %s: %w", path, err)
		}
	}
	b, err := newBuilder(ctx, opts, sink)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	if err := b.importStream(f, kind, filepath.Base(path), fileMode(fi.Mode())); err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	return b.finish()
}

// ImportReader imports an archive stream of the given kind (any but KindDir
// and ""). For KindFile the tree holds one file named name (a single path
// element) with mode 0644; for the other kinds name only labels errors.
func ImportReader(ctx context.Context, r io.Reader, kind SourceKind, name string, opts ImportOptions, sink ChunkSink) (*Manifest, error) {
	b, err := newBuilder(ctx, opts, sink)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", name, err)
	}
	if err := b.importStream(r, kind, name, singleFileMode); err != nil {
		return nil, fmt.Errorf("import %s: %w", name, err)
	}
	return b.finish()
}

// detectKind picks the kind of the regular file f by name, then by magic
// bytes, and seeks f back to its start.
func detectKind(f *os.File, name string) (SourceKind, error) {
	switch lower := strings.ToLower(name); {
	case strings.HasSuffix(lower, ".tar"):
		return KindTar, nil
	case strings.HasSuffix(lower, ".tar.gz"), strings.HasSuffix(lower, ".tgz"):
		return KindTarGz, nil
	case strings.HasSuffix(lower, ".tar.zst"), strings.HasSuffix(lower, ".tzst"):
		return KindTarZst, nil
	case strings.HasSuffix(lower, ".deb"):
		return KindDeb, nil
	}
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return "", err
	}
	head = head[:n]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		return KindTarGz, nil
	case len(head) >= 4 && string(head[:4]) == "\x28\xb5\x2f\xfd":
		return KindTarZst, nil
	case len(head) >= 8 && string(head[:8]) == arMagic:
		return KindDeb, nil
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return KindTar, nil
	}
	return KindFile, nil
}

// importStream imports r as kind; mode is the mode of a KindFile entry.
func (b *builder) importStream(r io.Reader, kind SourceKind, name string, mode uint32) error {
	switch kind {
	case KindFile:
		if name == "" || strings.Contains(name, "/") {
			return entryError(name, ErrInvalidPath, "a single file needs a one-element name")
		}
		return b.addFile(name, mode, Owner{}, r, -1)
	case KindTar:
		return b.importTar(r)
	case KindTarGz:
		return b.importTarGz(r)
	case KindTarZst:
		return b.importTarZst(r)
	case KindDeb:
		return b.importDeb(r)
	case KindDir:
		return fmt.Errorf("%w: a directory cannot be read as a stream", ErrUnsupportedEntry)
	default:
		return fmt.Errorf("%w: unknown source kind %q", ErrUnsupportedEntry, kind)
	}
}

// fileMode converts an fs.FileMode to the manifest's 0o7777 bits.
func fileMode(m os.FileMode) uint32 {
	mode := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// node is one entry of a tree being built.
type node struct {
	Entry
	implicit bool // a parent directory made up because the source did not list it
}

// builder accumulates the entries of one import, enforcing the limits as it
// goes, and cuts and hashes file content with one reused buffer.
type builder struct {
	ctx       context.Context
	lim       Limits
	chunkSize int64
	sink      ChunkSink
	buf       []byte    // one chunk, reused for every chunk of the import
	piece     hash.Hash // the sha2-256 of the current chunk
	list      hash.Hash // the chunk-list hash of the current file
	sum       []byte
	nodes     map[string]*node
	total     int64
}

func newBuilder(ctx context.Context, opts ImportOptions, sink ChunkSink) (*builder, error) {
	cs := opts.ChunkSize
	if cs == 0 {
		cs = DefaultChunkSize
	}
	if cs < MinChunkSize || cs > MaxChunkSize {
		return nil, fmt.Errorf("%w: chunk size %d outside [%d, %d]", ErrMalformed, cs, MinChunkSize, MaxChunkSize)
	}
	if sink == nil {
		sink = DiscardSink{}
	}
	return &builder{
		ctx:       ctx,
		lim:       opts.Limits.withDefaults(),
		chunkSize: cs,
		sink:      sink,
		list:      sha256.New(),
		nodes:     make(map[string]*node),
	}, nil
}

// begin checks that an entry of type t may be added at p: valid path, not a
// duplicate, parents directories (made up as 0755 if missing), entry count.
// It returns true if p is an implicit directory an explicit one replaces.
func (b *builder) begin(p string, t EntryType) (replace bool, err error) {
	if err := b.ctx.Err(); err != nil {
		return false, err
	}
	if err := validatePath(p, b.lim.MaxPathLen); err != nil {
		return false, err
	}
	if n, ok := b.nodes[p]; ok {
		if n.implicit && t == TypeDir {
			return true, nil
		}
		return false, entryError(p, ErrDuplicatePath, "already in the tree as a %s", n.Type)
	}
	if err := b.parents(p); err != nil {
		return false, err
	}
	return false, b.room(p)
}

// room checks that one more entry fits.
func (b *builder) room(p string) error {
	if len(b.nodes) >= b.lim.MaxEntries {
		return entryError(p, ErrTooLarge, "more than %d entries", b.lim.MaxEntries)
	}
	return nil
}

// parents makes sure every parent directory of p is a directory entry.
func (b *builder) parents(p string) error {
	dir := path.Dir(p)
	if dir == "." {
		return nil
	}
	if n, ok := b.nodes[dir]; ok {
		if n.Type != TypeDir {
			return entryError(p, ErrInvalidPath, "parent %q is a %s", dir, n.Type)
		}
		return nil
	}
	if err := b.parents(dir); err != nil {
		return err
	}
	if err := b.room(dir); err != nil {
		return err
	}
	b.nodes[dir] = &node{Entry: Entry{Path: dir, Type: TypeDir, Mode: 0o755}, implicit: true}
	return nil
}

// Owner is who owns an entry: numeric ids (0 is root) and, where the
// source has them, names.
type Owner struct {
	UID, GID    uint32
	User, Group string
}

// set gives e the owner o.
func (o Owner) set(e *Entry) { e.UID, e.GID, e.User, e.Group = o.UID, o.GID, o.User, o.Group }

// entry makes an entry of type t at p with mode and owner o, checking the
// owner.
func (b *builder) entry(p string, t EntryType, mode uint32, o Owner) (Entry, error) {
	e := Entry{Path: p, Type: t, Mode: mode & 0o7777}
	o.set(&e)
	return e, validateOwner(&e)
}

func (b *builder) addDir(p string, mode uint32, o Owner) error {
	replace, err := b.begin(p, TypeDir)
	if err != nil {
		return err
	}
	e, err := b.entry(p, TypeDir, mode, o)
	if err != nil {
		return err
	}
	if replace {
		n := b.nodes[p]
		n.Entry, n.implicit = e, false
		return nil
	}
	b.nodes[p] = &node{Entry: e}
	return nil
}

func (b *builder) addSymlink(p, target string, o Owner) error {
	if _, err := b.begin(p, TypeSymlink); err != nil {
		return err
	}
	if err := validateTarget(p, target, b.lim.MaxPathLen); err != nil {
		return err
	}
	e, err := b.entry(p, TypeSymlink, 0o777, o)
	if err != nil {
		return err
	}
	e.Target = target
	b.nodes[p] = &node{Entry: e}
	return nil
}

// addHardLink adds p as a file with the content, mode and owner of target
// (a hard link is the same inode), which must be a regular file added
// earlier.
func (b *builder) addHardLink(p, target string) error {
	if _, err := b.begin(p, TypeFile); err != nil {
		return err
	}
	n, ok := b.nodes[target]
	if !ok || n.Type != TypeFile {
		return entryError(p, ErrUnsupportedEntry, "hard link to %q, which is not an earlier regular file in the tree", target)
	}
	if err := b.count(p, n.Size); err != nil {
		return err
	}
	b.total += n.Size
	e := n.Entry
	e.Path = p
	e.Chunks = slices.Clone(n.Chunks)
	b.nodes[p] = &node{Entry: e}
	return nil
}

// count checks a file of size bytes against the file and total limits.
func (b *builder) count(p string, size int64) error {
	if size > b.lim.MaxFileSize {
		return entryError(p, ErrTooLarge, "file passes %d bytes, limit %d", size, b.lim.MaxFileSize)
	}
	if b.total+size > b.lim.MaxTotalSize {
		return entryError(p, ErrTooLarge, "tree passes %d bytes, limit %d", b.total+size, b.lim.MaxTotalSize)
	}
	return nil
}

// addFile reads a file from r, cutting it into chunks for the sink. declared
// is the size the source announced (-1 if none): checked against the limits
// before reading, and against what r actually holds after.
func (b *builder) addFile(p string, mode uint32, o Owner, r io.Reader, declared int64) error {
	if _, err := b.begin(p, TypeFile); err != nil {
		return err
	}
	if declared >= 0 {
		if err := b.count(p, declared); err != nil {
			return err
		}
	}
	e, err := b.entry(p, TypeFile, mode, o)
	if err != nil {
		return err
	}
	if err := b.chunk(&e, r); err != nil {
		return err
	}
	if declared >= 0 && e.Size != declared {
		return entryError(p, ErrMalformed, "read %d bytes, source announced %d", e.Size, declared)
	}
	b.total += e.Size
	b.nodes[p] = &node{Entry: e}
	return nil
}

// chunk reads r to its end in chunks of b.chunkSize, pushing each to the
// sink and recording its CID, and sets e's Size, Chunks and Hash. Every byte
// is hashed once: the chunk's sha2-256 names the chunk, and the file's Hash
// hashes only the 32-byte chunk digests (see FileHash). Each chunk is read
// into the one reused buffer in pieces of readPiece bytes, each hashed while
// it is still in the CPU cache. Limits are checked after each piece, so a
// stream that never ends costs at most one piece past the limit.
func (b *builder) chunk(e *Entry, r io.Reader) error {
	if b.buf == nil {
		b.buf = make([]byte, b.chunkSize)
		b.piece = sha256.New()
	}
	b.list.Reset()
	for {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		b.piece.Reset()
		n, rerr := b.fill(e, r)
		if n > 0 {
			b.sum = b.piece.Sum(b.sum[:0])
			b.list.Write(b.sum)
			c := CIDFromSHA256(b.sum)
			if err := b.sink.PutChunk(c, b.buf[:n]); err != nil {
				return fmt.Errorf("entry %q: chunk %d: %w", e.Path, len(e.Chunks), err)
			}
			e.Chunks = append(e.Chunks, c.String())
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	b.sum = b.list.Sum(b.sum[:0])
	e.Hash = CIDFromSHA256(b.sum).String()
	return nil
}

// readPiece is how many bytes chunk reads and hashes at a time: small enough
// to stay in the CPU cache between the copy and the hash.
const readPiece = 64 << 10

// fill reads one chunk into b.buf, hashing it into b.piece as it goes, until
// the buffer is full or r fails. Unlike io.ReadFull it passes r's error
// through unchanged (io.EOF at the end), so a source's own
// io.ErrUnexpectedEOF (a truncated archive) is not mistaken for a short last
// chunk. It counts the bytes into e.Size and stops at the size limits. Its
// errors other than io.EOF name the entry.
func (b *builder) fill(e *Entry, r io.Reader) (int, error) {
	n := 0
	for n < len(b.buf) {
		end := min(n+readPiece, len(b.buf))
		m, err := r.Read(b.buf[n:end])
		if m > 0 {
			b.piece.Write(b.buf[n : n+m])
			n += m
			e.Size += int64(m)
			if lerr := b.count(e.Path, e.Size); lerr != nil {
				return 0, lerr
			}
		}
		switch {
		case err == io.EOF:
			return n, err
		case errors.Is(err, ErrTooLarge): // a bounded decompressor
			return n, fmt.Errorf("entry %q: %w", e.Path, err)
		case err != nil:
			return n, entryError(e.Path, ErrMalformed, "read: %v", err)
		}
	}
	return n, nil
}

// finish returns the sorted, validated manifest.
func (b *builder) finish() (*Manifest, error) {
	m := &Manifest{Format: ManifestFormat, ChunkSize: b.chunkSize, Entries: make([]Entry, 0, len(b.nodes))}
	for _, n := range b.nodes {
		m.Entries = append(m.Entries, n.Entry)
	}
	m.Sort()
	if err := m.Validate(b.lim); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	enc, err := m.Encode()
	if err != nil {
		return nil, err
	}
	if int64(len(enc)) > b.lim.MaxManifestSize {
		return nil, fmt.Errorf("import: %w: manifest is %d bytes, limit %d", ErrTooLarge, len(enc), b.lim.MaxManifestSize)
	}
	return m, nil
}
