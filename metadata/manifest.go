package metadata

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
)

// ManifestFormat is the format version written into every manifest.
const ManifestFormat = 1

// DefaultChunkSize is the chunk size used when none is configured.
const DefaultChunkSize = 1 << 20

// EntryType says what an Entry is.
type EntryType string

// Entry types.
const (
	TypeFile    EntryType = "file"
	TypeDir     EntryType = "dir"
	TypeSymlink EntryType = "symlink"
)

// Entry is one file, directory or symlink of a package tree.
//
// Path is slash-separated, relative, clean, and inside the tree; its
// elements may hold any byte but NUL and '/' (backslashes, bytes that are
// not UTF-8), exactly as the archive names them. Mode holds the archive's
// permission bits (0o7777 mask: write bits, setuid, setgid and sticky
// kept). UID and GID own the entry (0, root, when the archive says
// nothing); User and Group are the owner names where the archive has them.
// For a file, Size is its length and Chunks the CIDs (CIDv1 raw sha2-256,
// the IPFS CID of the bytes) of its consecutive chunks of
// Manifest.ChunkSize bytes (the last one shorter; none for an empty file).
// Hash is the file's chunk-list hash (see FileHash): the sha2-256 of the
// concatenated 32-byte digests of its chunks, wrapped as a CIDv1 raw. It
// is NOT the IPFS CID of the file's content (except for an empty file), it
// depends on the chunk size, and it is computed in the same pass as the
// chunks at no extra cost. For a symlink, Target is the link text exactly
// as the archive has it (absolute, or climbing out of the tree, alike): it
// is data, resolved only where the tree is used.
//
// Entry encodes to JSON through entryWire (see there): a path or target
// that is not valid UTF-8 is carried in base64.
type Entry struct {
	Path   string
	Type   EntryType
	Mode   uint32
	UID    uint32
	GID    uint32
	User   string
	Group  string
	Size   int64
	Hash   string
	Chunks []string
	Target string
}

// entryWire is an Entry as the manifest encodes it, in this field order.
// Path and Target are JSON strings when they are valid UTF-8 (JSON would
// rewrite anything else); otherwise path_b64 and target_b64 carry their
// bytes in standard base64 and path or target is absent. Which one is used
// is a function of the bytes, so the canonical encoding stays unique. The
// owner fields are omitted when zero, so a tree of root-owned entries with
// UTF-8 names encodes exactly as manifests did before owners and raw names
// were carried, with the same CID.
type entryWire struct {
	Path      string    `json:"path,omitempty"`
	PathB64   string    `json:"path_b64,omitempty"`
	Type      EntryType `json:"type"`
	Mode      uint32    `json:"mode"`
	UID       uint32    `json:"uid,omitempty"`
	GID       uint32    `json:"gid,omitempty"`
	User      string    `json:"user,omitempty"`
	Group     string    `json:"group,omitempty"`
	Size      int64     `json:"size,omitempty"`
	Hash      string    `json:"hash,omitempty"`
	Chunks    []string  `json:"chunks,omitempty"`
	Target    string    `json:"target,omitempty"`
	TargetB64 string    `json:"target_b64,omitempty"`
}

// toWire fills w with e's encoding.
func (e *Entry) toWire(w *entryWire) {
	*w = entryWire{Type: e.Type, Mode: e.Mode, UID: e.UID, GID: e.GID, User: e.User, Group: e.Group,
		Size: e.Size, Hash: e.Hash, Chunks: e.Chunks}
	w.Path, w.PathB64 = splitUTF8(e.Path)
	w.Target, w.TargetB64 = splitUTF8(e.Target)
}

// fromWire sets e from its encoding.
func (e *Entry) fromWire(w *entryWire) error {
	p, err := joinUTF8("path", w.Path, w.PathB64)
	if err != nil {
		return err
	}
	t, err := joinUTF8("target", w.Target, w.TargetB64)
	if err != nil {
		return fmt.Errorf("entry %q: %w", p, err)
	}
	*e = Entry{Path: p, Type: w.Type, Mode: w.Mode, UID: w.UID, GID: w.GID, User: w.User, Group: w.Group,
		Size: w.Size, Hash: w.Hash, Chunks: w.Chunks, Target: t}
	return nil
}

// splitUTF8 returns s as a JSON string if it is valid UTF-8, else in base64.
func splitUTF8(s string) (text, b64 string) {
	if utf8.ValidString(s) {
		return s, ""
	}
	return "", base64.StdEncoding.EncodeToString([]byte(s))
}

// joinUTF8 is the inverse of splitUTF8; at most one of text and b64 may be
// set. Whether b64 was needed is checked by the canonical encoding.
func joinUTF8(field, text, b64 string) (string, error) {
	if b64 == "" {
		return text, nil
	}
	if text != "" {
		return "", fmt.Errorf("%w: both %s and %s_b64", ErrMalformed, field, field)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("%w: %s_b64: %v", ErrMalformed, field, err)
	}
	return string(b), nil
}

// MarshalJSON encodes e as the manifest does.
func (e Entry) MarshalJSON() ([]byte, error) {
	var w entryWire
	e.toWire(&w)
	return json.Marshal(&w)
}

// UnmarshalJSON decodes e as the manifest encodes it; unknown fields are
// refused.
func (e *Entry) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var w entryWire
	if err := dec.Decode(&w); err != nil {
		return err
	}
	return e.fromWire(&w)
}

// Manifest lists the entries of a package tree, sorted by Path (byte
// order), in a deterministic encoding (see Encode). Its CID names the
// package content.
type Manifest struct {
	Format    int     `json:"stork_manifest"`
	ChunkSize int64   `json:"chunk_size"`
	Entries   []Entry `json:"entries"`
}

// ChunkRef locates one chunk of a manifest: which entry, which index within
// the entry, its byte offset in the file, its length and its CID.
type ChunkRef struct {
	CID    cid.Cid
	Entry  int   // index into Manifest.Entries
	Index  int   // chunk index within the entry
	Offset int64 // byte offset within the file
	Length int64
}

// Encode returns the canonical encoding of m: compact JSON with the
// fields in the order of Manifest and entryWire, entries in their order
// (sorted by path once Sort or Validate passed), no HTML escaping, no
// trailing newline. The same tree always gives the same bytes, and so the
// same CID. Entries are encoded one at a time, so encoding a large
// manifest holds no second copy of it.
func (m *Manifest) Encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	head := struct {
		Format    int   `json:"stork_manifest"`
		ChunkSize int64 `json:"chunk_size"`
	}{m.Format, m.ChunkSize}
	if err := enc.Encode(&head); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	// {"stork_manifest":F,"chunk_size":C}\n becomes {...,"entries":[
	buf.Truncate(buf.Len() - 2)
	buf.WriteString(`,"entries":[`)
	var w entryWire
	for i := range m.Entries {
		if i > 0 {
			buf.WriteByte(',')
		}
		m.Entries[i].toWire(&w)
		if err := enc.Encode(&w); err != nil {
			return nil, fmt.Errorf("encode manifest: entry %q: %w", m.Entries[i].Path, err)
		}
		buf.Truncate(buf.Len() - 1) // the encoder's newline
	}
	buf.WriteString("]}")
	return buf.Bytes(), nil
}

// manifestWire is a Manifest as it is decoded.
type manifestWire struct {
	Format    int         `json:"stork_manifest"`
	ChunkSize int64       `json:"chunk_size"`
	Entries   []entryWire `json:"entries"`
}

// CID returns the CID of m's canonical encoding.
func (m *Manifest) CID() (cid.Cid, error) {
	b, err := m.Encode()
	if err != nil {
		return cid.Undef, err
	}
	return SumCID(b), nil
}

// Sort puts the entries in canonical (path) order.
func (m *Manifest) Sort() {
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Path < m.Entries[j].Path })
}

// TotalSize is the sum of the sizes of all files.
func (m *Manifest) TotalSize() int64 {
	var n int64
	for _, e := range m.Entries {
		if e.Type == TypeFile {
			n += e.Size
		}
	}
	return n
}

// ChunkRefs lists every chunk of every file in manifest order. The same CID
// may appear more than once (identical chunks or files); see UniqueChunks.
// It assumes m has been validated (CIDs parse); an unparsable CID yields
// cid.Undef.
func (m *Manifest) ChunkRefs() []ChunkRef {
	var refs []ChunkRef
	for i, e := range m.Entries {
		if e.Type != TypeFile {
			continue
		}
		for j, s := range e.Chunks {
			c, _ := cid.Decode(s)
			off := int64(j) * m.ChunkSize
			n := m.ChunkSize
			if off+n > e.Size {
				n = e.Size - off
			}
			refs = append(refs, ChunkRef{CID: c, Entry: i, Index: j, Offset: off, Length: n})
		}
	}
	return refs
}

// UniqueChunks lists each distinct chunk once (first occurrence), in
// manifest order: what must be moved to rebuild the tree.
func (m *Manifest) UniqueChunks() []ChunkRef {
	seen := make(map[cid.Cid]bool)
	var out []ChunkRef
	for _, r := range m.ChunkRefs() {
		if seen[r.CID] {
			continue
		}
		seen[r.CID] = true
		out = append(out, r)
	}
	return out
}

// FileHash returns the chunk-list hash of a file whose chunks have the given
// sha2-256 digests, in order: the CIDv1 raw sha2-256 of the concatenation of
// the 32-byte digests. An empty file (no chunks) gets SumCID(nil). Two files
// share a FileHash exactly when they have the same chunk list, i.e. the same
// content cut at the same chunk size.
func FileHash(chunkDigests [][]byte) cid.Cid {
	h := sha256.New()
	for _, d := range chunkDigests {
		h.Write(d)
	}
	return CIDFromSHA256(h.Sum(nil))
}

// ChunkListHash recomputes e's chunk-list hash from e.Chunks (see FileHash).
func (e *Entry) ChunkListHash() (cid.Cid, error) {
	h := sha256.New()
	for j, s := range e.Chunks {
		_, d, err := ParseCID(s)
		if err != nil {
			return cid.Undef, entryError(e.Path, ErrMalformed, "chunk %d: %v", j, err)
		}
		h.Write(d)
	}
	return CIDFromSHA256(h.Sum(nil)), nil
}

// VerifyHash checks that e.Hash is the chunk-list hash of e.Chunks. With it,
// a file whose every chunk matched its CID (and length, see ChunkRef.Verify)
// is known to be the file the manifest names.
func (e *Entry) VerifyHash() error {
	want, err := e.ChunkListHash()
	if err != nil {
		return err
	}
	if e.Hash != want.String() {
		return entryError(e.Path, ErrHashMismatch, "hash %s, chunk list gives %s", e.Hash, want)
	}
	return nil
}

// Verify checks that data is the chunk r names: its length is r.Length and
// it hashes to r.CID. Both matter: a manifest does not promise that the
// chunk a CID names has the length Size and ChunkSize imply, and checking it
// keeps a rebuilt file at its declared size.
func (r ChunkRef) Verify(data []byte) error {
	if int64(len(data)) != r.Length {
		return fmt.Errorf("chunk %s (entry %d, index %d): %w: %d bytes, want %d", r.CID, r.Entry, r.Index, ErrHashMismatch, len(data), r.Length)
	}
	return VerifyCID(r.CID, data)
}
