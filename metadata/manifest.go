package metadata

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"

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
// Path is slash-separated, relative, clean, and inside the tree. Mode holds
// the permission bits (0o7777 mask; setuid/setgid/sticky kept). For a file,
// Size is its length and Chunks the CIDs (CIDv1 raw sha2-256, the IPFS CID of
// the bytes) of its consecutive chunks of Manifest.ChunkSize bytes (the last
// one shorter; none for an empty file). Hash is the file's chunk-list hash
// (see FileHash): the sha2-256 of the concatenated 32-byte digests of its
// chunks, wrapped as a CIDv1 raw. It is NOT the IPFS CID of the file's
// content (except for an empty file), it depends on the chunk size, and it is
// computed in the same pass as the chunks at no extra cost. For a symlink,
// Target is the link text, which must resolve inside the tree.
type Entry struct {
	Path   string    `json:"path"`
	Type   EntryType `json:"type"`
	Mode   uint32    `json:"mode"`
	Size   int64     `json:"size,omitempty"`
	Hash   string    `json:"hash,omitempty"`
	Chunks []string  `json:"chunks,omitempty"`
	Target string    `json:"target,omitempty"`
}

// Manifest lists the entries of a package tree, sorted by Path, in a
// deterministic encoding (see Encode). Its CID names the package content.
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

// Encode returns the canonical encoding of m: compact JSON with the struct's
// field order, entries sorted by path, no HTML escaping, no trailing newline.
// The same tree always gives the same bytes, and so the same CID.
func (m *Manifest) Encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if m.Entries == nil {
		// An empty tree has one encoding, "entries":[], never null.
		c := *m
		c.Entries = []Entry{}
		m = &c
	}
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
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
