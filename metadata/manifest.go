package metadata

import (
	"bytes"
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
// Size is its length, Hash the CID (CIDv1 raw sha2-256) of its whole content
// and Chunks the CIDs of its consecutive chunks of Manifest.ChunkSize bytes
// (the last one shorter; none for an empty file). For a symlink, Target is
// the link text, which must resolve inside the tree.
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
