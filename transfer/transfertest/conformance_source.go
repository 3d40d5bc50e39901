package transfertest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/swarm"
)

// NewSourceFunc returns a ChunkSource that serves exactly chunks.
type NewSourceFunc func(t *testing.T, chunks map[cid.Cid][]byte) swarm.ChunkSource

// TestChunkSource is the conformance suite of swarm.ChunkSource: every
// implementation (the fake, the HTTP origin, peers) must pass it.
func TestChunkSource(t *testing.T, newSource NewSourceFunc) {
	small := []byte("hello, stork")
	big := bytes.Repeat([]byte("0123456789abcdef"), 8192) // 128 KiB
	missing := metadata.SumCID([]byte("nobody has this"))
	chunks := map[cid.Cid][]byte{
		metadata.SumCID(small): small,
		metadata.SumCID(big):   big,
	}

	t.Run("Found", func(t *testing.T) {
		src := newSource(t, chunks)
		for c, want := range chunks {
			got, err := src.FetchChunk(context.Background(), c, int64(len(want)))
			if err != nil {
				t.Fatalf("FetchChunk(%s) error: %v", c, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("FetchChunk(%s) = %d bytes, want the %d stored", c, len(got), len(want))
			}
		}
	})
	t.Run("Missing", func(t *testing.T) {
		src := newSource(t, chunks)
		_, err := src.FetchChunk(context.Background(), missing, 10)
		if !errors.Is(err, metadata.ErrNotFound) {
			t.Fatalf("FetchChunk(missing) error = %v, want metadata.ErrNotFound", err)
		}
	})
	t.Run("LongerThanSize", func(t *testing.T) {
		src := newSource(t, chunks)
		c := metadata.SumCID(big)
		_, err := src.FetchChunk(context.Background(), c, int64(len(big))-1)
		if !errors.Is(err, metadata.ErrTooLarge) {
			t.Fatalf("FetchChunk(%s, size-1) error = %v, want metadata.ErrTooLarge", c, err)
		}
	})
	t.Run("Canceled", func(t *testing.T) {
		src := newSource(t, chunks)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c := metadata.SumCID(small)
		if _, err := src.FetchChunk(ctx, c, int64(len(small))); err == nil {
			t.Fatalf("FetchChunk(%s) with a canceled context succeeded", c)
		}
	})
}
