package swarm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"unsafe"

	pool "github.com/libp2p/go-buffer-pool"

	"github.com/storkpm/stork/metadata"
)

// answerStream is a fetcher's answer to one pull-through request: reads
// come from answer, writes (the request) are dropped.
type answerStream struct{ io.Reader }

func (answerStream) Write(p []byte) (int, error) { return len(p), nil }
func (answerStream) Close() error                { return nil }
func (answerStream) Reset() error                { return nil }

func pullAnswerBytes(data []byte) []byte {
	b := []byte{pullWorking, pullOK}
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

func readPullFrom(answer []byte, ref metadata.ChunkRef, bufs *pool.BufferPool) ([]byte, []byte, error) {
	st := answerStream{bytes.NewReader(answer)}
	return readPull(st, testManifestCID, 0, 0, ref, bufs, func(int) {}, func() {}, func(bool) {})
}

// A pulled chunk is read into a buffer of the pool it is given, aligned
// for a store writing it directly, and the buffer comes back with it to
// be put back; a chunk cut short gives no buffer (readPull put it back).
// Without a pool the chunk has a buffer of its own.
func TestReadPullPooledChunk(t *testing.T) {
	for _, n := range []int{1, 4000, 70 << 10, 1 << 20} {
		data := bytes.Repeat([]byte{byte(n)}, n)
		ref := metadata.ChunkRef{CID: metadata.SumCID(data), Length: int64(n)}
		var bufs pool.BufferPool
		got, raw, err := readPullFrom(pullAnswerBytes(data), ref, &bufs)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: the chunk read differs from the one sent", n)
		}
		if raw == nil || cap(got) != n {
			t.Fatalf("%d bytes: buffer %v, cap %d: want the pool's buffer and the chunk capped at its length", n, raw != nil, cap(got))
		}
		start := uintptr(unsafe.Pointer(&raw[0]))
		at := uintptr(unsafe.Pointer(&got[0]))
		if at < start || at+uintptr(n) > start+uintptr(len(raw)) {
			t.Fatalf("%d bytes: the chunk is not in the buffer returned with it", n)
		}
		if at%alignedChunk != 0 {
			t.Fatalf("%d bytes: chunk at %#x, not aligned at %d", n, at, alignedChunk)
		}
		bufs.Put(raw)

		cut := pullAnswerBytes(data)
		cut = cut[:len(cut)-1]
		if got, raw, err := readPullFrom(cut, ref, &bufs); err == nil || got != nil || raw != nil {
			t.Fatalf("%d bytes cut short: %d bytes, buffer %v, err %v: want an error and nothing", n, len(got), raw != nil, err)
		} else if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%d bytes cut short: %v, want unexpected EOF", n, err)
		}

		got, raw, err = readPullFrom(pullAnswerBytes(data), ref, nil)
		if err != nil || raw != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes without a pool: buffer %v, err %v", n, raw != nil, err)
		}
	}
}

// BenchmarkReadPull: a 256 KiB chunk read into a new buffer each time
// against one from the pool and put back (B/op: the memory each costs).
func BenchmarkReadPull(b *testing.B) {
	data := bytes.Repeat([]byte{7}, 256<<10)
	ref := metadata.ChunkRef{CID: metadata.SumCID(data), Length: int64(len(data))}
	answer := pullAnswerBytes(data)
	for _, pooled := range []bool{false, true} {
		name := "new"
		if pooled {
			name = "pooled"
		}
		b.Run(name, func(b *testing.B) {
			var bufs *pool.BufferPool
			if pooled {
				bufs = new(pool.BufferPool)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				_, raw, err := readPullFrom(answer, ref, bufs)
				if err != nil {
					b.Fatal(err)
				}
				if raw != nil {
					bufs.Put(raw)
				}
			}
		})
	}
}
