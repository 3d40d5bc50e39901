// Package transfertest has test helpers for the packages under transfer:
// in-memory fakes of the swarm's interfaces (a Network of shaped streams,
// a Discovery table, a ChunkStore, a ChunkSource), hand-built manifests,
// hostile HTTP handlers, and the conformance suites every implementation
// of those interfaces must pass (conformance.go).
package transfertest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// Entry describes one entry of a tree for BuildManifest.
type Entry struct {
	Path   string
	Type   metadata.EntryType // default: file
	Mode   uint32             // default: 0o644 for files, 0o755 for dirs, 0o777 for symlinks
	Data   []byte             // file content
	Target string             // symlink target
	UID    uint32             // owner (0: root)
	GID    uint32
}

// BuildManifest builds a sorted manifest of entries, split into chunks of
// chunkSize, and returns it with every chunk's bytes by CID. It computes
// hashes the way metadata documents them: chunk CIDs, and Entry.Hash as the
// chunk-list hash (metadata.FileHash).
func BuildManifest(chunkSize int64, entries []Entry) (*metadata.Manifest, map[cid.Cid][]byte) {
	m := &metadata.Manifest{Format: metadata.ManifestFormat, ChunkSize: chunkSize}
	chunks := make(map[cid.Cid][]byte)
	for _, e := range entries {
		me := metadata.Entry{Path: e.Path, Type: e.Type, Mode: e.Mode, UID: e.UID, GID: e.GID}
		if me.Type == "" {
			me.Type = metadata.TypeFile
		}
		switch me.Type {
		case metadata.TypeFile:
			if me.Mode == 0 {
				me.Mode = 0o644
			}
			me.Size = int64(len(e.Data))
			var digests [][]byte
			for off := int64(0); off < me.Size; off += chunkSize {
				end := min(off+chunkSize, me.Size)
				b := e.Data[off:end]
				c := metadata.SumCID(b)
				chunks[c] = b
				me.Chunks = append(me.Chunks, c.String())
				sum := sha256.Sum256(b)
				digests = append(digests, sum[:])
			}
			me.Hash = metadata.FileHash(digests).String()
		case metadata.TypeDir:
			if me.Mode == 0 {
				me.Mode = 0o755
			}
		case metadata.TypeSymlink:
			if me.Mode == 0 {
				me.Mode = 0o777
			}
			me.Target = e.Target
		}
		m.Entries = append(m.Entries, me)
	}
	m.Sort()
	return m, chunks
}

// WriteChunks writes each chunk to dir/chunks/<cid>, the repository layout.
func WriteChunks(dir string, chunks map[cid.Cid][]byte) error {
	cdir := filepath.Join(dir, "chunks")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return err
	}
	for c, b := range chunks {
		if err := os.WriteFile(filepath.Join(cdir, c.String()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// FakeSource is an in-memory ChunkSource. It follows the contract (missing
// => metadata.ErrNotFound, longer than size => metadata.ErrTooLarge) and,
// like any source, need not verify. Hook, if set, runs before each fetch:
// it may return an error, or replacement bytes (corruption), or nil, nil.
type FakeSource struct {
	Hook func(ctx context.Context, c cid.Cid, attempt int) ([]byte, error)

	mu       sync.Mutex
	chunks   map[cid.Cid][]byte
	requests map[cid.Cid]int
}

// NewFakeSource returns a FakeSource holding chunks.
func NewFakeSource(chunks map[cid.Cid][]byte) *FakeSource {
	f := &FakeSource{chunks: make(map[cid.Cid][]byte), requests: make(map[cid.Cid]int)}
	for c, b := range chunks {
		f.chunks[c] = b
	}
	return f
}

// FetchChunk implements ChunkSource.
func (f *FakeSource) FetchChunk(ctx context.Context, c cid.Cid, size int64) ([]byte, error) {
	f.mu.Lock()
	f.requests[c]++
	attempt := f.requests[c]
	b, ok := f.chunks[c]
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.Hook != nil {
		nb, err := f.Hook(ctx, c, attempt)
		if err != nil {
			return nil, err
		}
		if nb != nil {
			b, ok = nb, true
		}
	}
	if !ok {
		return nil, fmt.Errorf("fake source: chunk %s: %w", c, metadata.ErrNotFound)
	}
	if int64(len(b)) > size {
		return nil, fmt.Errorf("fake source: chunk %s: %w: %d bytes, want %d", c, metadata.ErrTooLarge, len(b), size)
	}
	return append([]byte(nil), b...), nil
}

// Requests returns how many times chunk c was asked for.
func (f *FakeSource) Requests(c cid.Cid) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[c]
}

// TotalRequests returns how many fetches were made in all.
func (f *FakeSource) TotalRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.requests {
		n += v
	}
	return n
}

// EndlessHandler answers 200 and streams zeros until the client goes away.
func EndlessHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		rc := http.NewResponseController(w)
		for r.Context().Err() == nil {
			if _, err := w.Write(buf); err != nil {
				return
			}
			_ = rc.Flush()
		}
	})
}

// TrickleHandler answers 200 and sends one byte per interval until the
// client goes away: a slow-retrieval attack.
func TrickleHandler(interval time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if _, err := w.Write([]byte{'x'}); err != nil {
				return
			}
			_ = rc.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
		}
	})
}

// StallHandler answers 200 with a large Content-Length, sends a few bytes,
// then sends nothing more until the client goes away. With headersToo it
// stalls before sending even the headers.
func StallHandler(headersToo bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !headersToo {
			w.Header().Set("Content-Length", "1000000")
			_, _ = w.Write([]byte("partial"))
			_ = http.NewResponseController(w).Flush()
		}
		<-r.Context().Done()
	})
}

// DirSink is a metadata.ChunkSink writing each chunk to Dir/chunks/<cid>,
// the repository layout. It is safe for concurrent use.
type DirSink struct{ Dir string }

// PutChunk implements metadata.ChunkSink.
func (s DirSink) PutChunk(c cid.Cid, data []byte) error {
	p := filepath.Join(s.Dir, "chunks", c.String())
	if _, err := os.Lstat(p); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}
