package swarm

import (
	"bufio"
	"bytes"
	"testing"
	"unsafe"
)

// TestReadMessageAlignsLargeChunks: a large chunk's data comes back at a
// 4 KiB boundary (direct I/O without a copy), whatever its index length.
func TestReadMessageAlignsLargeChunks(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte{7}, 1<<20)
	for _, idx := range []uint32{0, 127, 128, 1 << 20, 1<<32 - 1} {
		var buf bytes.Buffer
		if err := WriteMessage(&buf, &Message{Type: MsgChunk, Index: idx, Data: data}); err != nil {
			t.Fatal(err)
		}
		m, err := ReadMessage(bufio.NewReader(&buf), WireLimits{MaxChunk: len(data)})
		if err != nil {
			t.Fatalf("index %d: ReadMessage = %v", idx, err)
		}
		if m.Index != idx || !bytes.Equal(m.Data, data) {
			t.Fatalf("index %d: got index %d and %d bytes", idx, m.Index, len(m.Data))
		}
		if a := uintptr(unsafe.Pointer(&m.Data[0])) % alignedChunk; a != 0 {
			t.Errorf("index %d: data at offset %d from a %d-byte boundary, want 0", idx, a, alignedChunk)
		}
	}
}
