package swarm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"slices"
	"testing"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
)

var testManifestCID = metadata.SumCID([]byte("manifest"))

func wireSamples() []*Message {
	have := policy.NewBitfield(13)
	have.Set(0)
	have.Set(12)
	return []*Message{
		{Type: MsgHello, Manifest: testManifestCID},
		{Type: MsgHave, Manifest: testManifestCID, Count: 13, Have: have},
		{Type: MsgHave, Manifest: testManifestCID, Count: 0, Have: policy.Bitfield{}},
		{Type: MsgHave, Manifest: testManifestCID, Count: 13, Have: have, Site: "rack-1.dc_2"},
		{Type: MsgHave, Manifest: testManifestCID, Count: 0, Have: policy.Bitfield{}, Site: "A"},
		{Type: MsgHaveUpdate, Index: 300},
		{Type: MsgRequest, Indices: []uint32{0, 1, 2, 1 << 31}},
		{Type: MsgChunk, Index: 7, Data: []byte("chunk bytes")},
		{Type: MsgChunk, Index: 0, Data: []byte{}},
		{Type: MsgCancel, Indices: []uint32{5}},
		{Type: MsgReject, Reason: RejectBusy, Indices: []uint32{1, 2}},
		{Type: MsgReject, Reason: RejectCancelled, Indices: []uint32{3}},
		{Type: MsgFetching, Indices: []uint32{9, 10}},
		{Type: MsgChunkPart, Index: 7, Total: 100, Offset: 96, Data: []byte("part")},
		{Type: MsgChunkPart, Index: 1 << 20, Total: 4, Offset: 0, Data: []byte("part")},
	}
}

func encodeMsg(t testing.TB, m *Message) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteMessage(&buf, m); err != nil {
		t.Fatalf("WriteMessage(%s): %v", m.Type, err)
	}
	b, err := AppendMessage(nil, m)
	if err != nil || !bytes.Equal(b, buf.Bytes()) {
		t.Fatalf("AppendMessage(%s) = %x, %v; WriteMessage wrote %x", m.Type, b, err, buf.Bytes())
	}
	return b
}

func TestWireRoundTrip(t *testing.T) {
	t.Parallel()
	for _, m := range wireSamples() {
		t.Run(m.Type.String(), func(t *testing.T) {
			b := encodeMsg(t, m)
			got, err := ReadMessage(bufio.NewReader(bytes.NewReader(b)), WireLimits{})
			if err != nil {
				t.Fatalf("ReadMessage(%x): %v", b, err)
			}
			if got.Type == MsgChunk && len(got.Data) == 0 {
				got.Data = m.Data
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("ReadMessage = %+v, want %+v", got, m)
			}
		})
	}
}

func msgBytes(n uint64, typ byte, payload ...byte) []byte {
	b := binary.AppendUvarint(nil, n)
	b = append(b, typ)
	return append(b, payload...)
}

func TestWireRejects(t *testing.T) {
	t.Parallel()
	cidb := testManifestCID.Bytes()
	hello := append([]byte{byte(len(cidb))}, cidb...)
	cases := []struct {
		name   string
		in     []byte
		limits WireLimits
	}{
		{"empty", []byte{0}, WireLimits{}},
		{"unknown type", msgBytes(1, 99), WireLimits{}},
		{"control too large", msgBytes(2<<20, byte(MsgRequest)), WireLimits{}},
		{"chunk too large", msgBytes(metadata.MaxChunkSize+100, byte(MsgChunk)), WireLimits{}},
		{"chunk over a small limit", msgBytes(12, byte(MsgChunk), append([]byte{1}, make([]byte, 10)...)...), WireLimits{MaxChunk: 8}},
		{"truncated", msgBytes(10, byte(MsgHaveUpdate), 1), WireLimits{}},
		{"trailing bytes", msgBytes(3, byte(MsgHaveUpdate), 1, 2), WireLimits{}},
		{"long varint", msgBytes(3, byte(MsgHaveUpdate), 0x81, 0x00), WireLimits{}},
		{"long length", []byte{0x82, 0x00, byte(MsgHaveUpdate), 1}, WireLimits{}},
		{"index over 32 bits", msgBytes(6, byte(MsgHaveUpdate), 0x80, 0x80, 0x80, 0x80, 0x10), WireLimits{}},
		{"no indices", msgBytes(2, byte(MsgRequest), 0), WireLimits{}},
		{"more indices than bytes", msgBytes(3, byte(MsgRequest), 100, 1), WireLimits{}},
		{"bad reason", msgBytes(4, byte(MsgReject), 9, 1, 1), WireLimits{}},
		{"bad cid", msgBytes(4, byte(MsgHello), 2, 1, 2), WireLimits{}},
		{"have count too big", msgBytes(uint64(2+len(hello)), byte(MsgHave), append(hello, 100)...), WireLimits{}},
		{"have padding", msgBytes(uint64(3+len(hello)), byte(MsgHave), append(hello, 3, 0xff)...), WireLimits{}},
		{"have with an empty site", msgBytes(uint64(3+len(hello)), byte(MsgHave), append(hello, 0, 0)...), WireLimits{}},
		{"have site with a space", msgBytes(uint64(5+len(hello)), byte(MsgHave), append(hello, 0, 2, 'a', ' ')...), WireLimits{}},
		{"have site truncated", msgBytes(uint64(4+len(hello)), byte(MsgHave), append(hello, 0, 2, 'a')...), WireLimits{}},
		{"have site too long", msgBytes(uint64(3+len(hello)+policy.MaxSiteLen+1), byte(MsgHave),
			append(append(hello, 0, policy.MaxSiteLen+1), bytes.Repeat([]byte{'a'}, policy.MaxSiteLen+1)...)...), WireLimits{}},
		{"part of an empty chunk", msgBytes(5, byte(MsgChunkPart), 1, 0, 0, 'x'), WireLimits{}},
		{"part without data", msgBytes(4, byte(MsgChunkPart), 1, 8, 0), WireLimits{}},
		{"part past the chunk's end", msgBytes(7, byte(MsgChunkPart), 1, 4, 2, 'x', 'y', 'z'), WireLimits{}},
		{"part at the chunk's end", msgBytes(5, byte(MsgChunkPart), 1, 4, 4, 'x'), WireLimits{}},
		{"part of a chunk over the limit", msgBytes(5, byte(MsgChunkPart), 1, 9, 0, 'x'), WireLimits{MaxChunk: 8}},
		{"varint overflow", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, WireLimits{}},
	}
	// A part read straight into place (readMessage with a partDst) is
	// refused just the same.
	into := func(_ uint32, _, _, k int) []byte { return make([]byte, k) }
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadMessage(bufio.NewReader(bytes.NewReader(tc.in)), tc.limits)
			if err == nil {
				t.Fatalf("ReadMessage(%x) succeeded, want an error", tc.in)
			}
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ReadMessage(%x) = %v, want ErrProtocol or ErrUnexpectedEOF", tc.in, err)
			}
			if _, err := readMessage(bufio.NewReader(bytes.NewReader(tc.in)), tc.limits, nil, into); err == nil {
				t.Fatalf("readMessage(%x, into place) succeeded, want an error", tc.in)
			}
		})
	}
	if _, err := ReadMessage(bufio.NewReader(bytes.NewReader(nil)), WireLimits{}); err != io.EOF {
		t.Fatalf("ReadMessage(empty stream) = %v, want io.EOF", err)
	}
}

// TestWirePartIntoPlace: a ChunkPart's data is read into the slice the
// partDst gives, and read as usual when it gives none.
func TestWirePartIntoPlace(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("stork"), 100)
	in := encodeMsg(t, &Message{Type: MsgChunkPart, Index: 300, Total: 1000, Offset: 200, Data: data})
	in = append(in, in...)
	chunk := make([]byte, 1000)
	var asked []int
	dst := func(index uint32, total, offset, k int) []byte {
		asked = append(asked, int(index), total, offset, k)
		if len(asked) > 4 {
			return nil
		}
		return chunk[offset : offset+k]
	}
	r := bufio.NewReader(bytes.NewReader(in))
	for k, inPlace := range []bool{true, false} {
		m, err := readMessage(r, WireLimits{}, nil, dst)
		if err != nil {
			t.Fatalf("readMessage(part %d) = %v", k, err)
		}
		if m.Type != MsgChunkPart || m.Index != 300 || m.Total != 1000 || m.Offset != 200 || !bytes.Equal(m.Data, data) {
			t.Fatalf("readMessage(part %d) = %s %d (%d bytes at %d of %d), want the part sent", k, m.Type, m.Index, len(m.Data), m.Offset, m.Total)
		}
		if got := &m.Data[0] == &chunk[200]; got != inPlace {
			t.Fatalf("part %d read into place = %v, want %v", k, got, inPlace)
		}
	}
	if want := []int{300, 1000, 200, len(data), 300, 1000, 200, len(data)}; !slices.Equal(asked, want) {
		t.Fatalf("partDst asked %v, want %v", asked, want)
	}
}

// TestWireNoAllocBeforeLimit: a declared length over the limit is refused
// before anything is allocated for it (a 1 TiB make would not return).
func TestWireNoAllocBeforeLimit(t *testing.T) {
	in := msgBytes(1<<40, byte(MsgChunk))
	allocs := testing.AllocsPerRun(10, func() {
		_, err := ReadMessage(bufio.NewReaderSize(bytes.NewReader(in), 16), WireLimits{})
		if err == nil {
			t.Fatal("a 1 TiB chunk message was accepted")
		}
	})
	if allocs > 20 {
		t.Fatalf("rejecting an oversized message made %v allocations", allocs)
	}
}

func FuzzReadMessage(f *testing.F) {
	for _, m := range wireSamples() {
		f.Add(encodeMsg(f, m))
	}
	f.Add([]byte{0})
	f.Add(msgBytes(1<<30, byte(MsgChunk)))
	f.Add(msgBytes(3, byte(MsgHaveUpdate), 0x81, 0x00))
	limits := WireLimits{MaxControl: 4096, MaxChunk: 8192}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		consumed := 0
		for {
			m, err := ReadMessage(r, limits)
			if err != nil {
				return
			}
			if m.Type == MsgChunk && len(m.Data) > limits.MaxChunk {
				t.Fatalf("chunk of %d bytes over the limit %d", len(m.Data), limits.MaxChunk)
			}
			b, err := AppendMessage(nil, m)
			if err != nil {
				t.Fatalf("AppendMessage(decoded %+v): %v", m, err)
			}
			if m.Type != MsgChunk && len(b) > limits.MaxControl+binary.MaxVarintLen64 {
				t.Fatalf("control message of %d bytes over the limit", len(b))
			}
			// Shortest-form varints: the encoding is unique.
			if !bytes.Equal(b, in[consumed:consumed+len(b)]) {
				t.Fatalf("re-encoding %+v = %x, input was %x", m, b, in[consumed:consumed+len(b)])
			}
			consumed += len(b)
		}
	})
}

// FuzzReadPartInto: reading ChunkParts into place (the session's path)
// decodes exactly what ReadMessage decodes and refuses what it refuses,
// and never writes outside the slice it was given.
func FuzzReadPartInto(f *testing.F) {
	for _, m := range wireSamples() {
		f.Add(encodeMsg(f, m))
	}
	f.Add(msgBytes(5, byte(MsgChunkPart), 1, 0, 0, 'x'))
	f.Add(msgBytes(7, byte(MsgChunkPart), 1, 4, 2, 'x', 'y', 'z'))
	f.Add(msgBytes(6, byte(MsgChunkPart), 1, 4, 2, 'x', 'y'))
	f.Add(msgBytes(5, byte(MsgChunkPart), 1, 9, 0, 'x'))
	limits := WireLimits{MaxControl: 4096, MaxChunk: 8192}
	f.Fuzz(func(t *testing.T, in []byte) {
		want := bufio.NewReader(bytes.NewReader(in))
		got := bufio.NewReader(bytes.NewReader(in))
		scratch := make([]byte, limits.MaxChunk+64)
		for k := range 16 {
			// Guard bytes around the chunk: readPartInto must write only
			// the n bytes dst gave.
			for j := range scratch {
				scratch[j] = 0xa5
			}
			var lo, hi int
			dst := func(index uint32, total, offset, n int) []byte {
				if k%3 == 2 {
					return nil // the caller declines: the old path reads it
				}
				lo, hi = 32+offset, 32+offset+n
				return scratch[lo:hi]
			}
			mw, errW := ReadMessage(want, limits)
			mg, errG := readMessage(got, limits, nil, dst)
			if (errW == nil) != (errG == nil) {
				t.Fatalf("message %d: ReadMessage err %v, into place err %v", k, errW, errG)
			}
			if errW != nil {
				return
			}
			if mw.Type != mg.Type || mw.Index != mg.Index || mw.Total != mg.Total || mw.Offset != mg.Offset || !bytes.Equal(mw.Data, mg.Data) {
				t.Fatalf("message %d: ReadMessage %+v, into place %+v", k, mw, mg)
			}
			for j, b := range scratch {
				if (j < lo || j >= hi) && b != 0xa5 {
					t.Fatalf("message %d: byte %d written outside the part's slice [%d,%d)", k, j, lo, hi)
				}
			}
		}
	})
}
