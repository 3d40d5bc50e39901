package swarm

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"unsafe"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
)

// The swarm wire protocol (Protocol). A stream carries messages about
// one package: the opener's first message is Hello naming the manifest CID,
// both sides then send Have (their have-map), and after that any of the
// others. Each message is
//
//	uvarint length | type (1 byte) | payload (length-1 bytes)
//
// with every integer an unsigned varint in its shortest form, so that
// every message has exactly one encoding. Chunk indices are positions in
// metadata.Manifest.UniqueChunks. The decoder checks the declared length
// against the limit of its type before allocating anything, and a payload
// must be consumed exactly: anything malformed or oversized is an error
// wrapping ErrProtocol, after which the stream must be reset.

// MsgType is a wire message type.
type MsgType byte

// Message types.
const (
	// MsgHello{Manifest}: the opener is interested in (fetching or
	// serving) the package.
	MsgHello MsgType = 1
	// MsgHave{Manifest, Count, Have, Site}: the sender's have-map; Count
	// must be the manifest's unique chunk count. Site, the sender's
	// configured site (policy.CheckSiteName), follows the bitmap as a
	// length-prefixed string only when the sender has one.
	MsgHave MsgType = 2
	// MsgHaveUpdate{Index}: the sender now has (verified) chunk Index.
	MsgHaveUpdate MsgType = 3
	// MsgRequest{Indices}: send these chunks (a batch: small chunks need no
	// round trip each).
	MsgRequest MsgType = 4
	// MsgChunk{Index, Data}: a requested chunk.
	MsgChunk MsgType = 5
	// MsgCancel{Indices}: no longer needed.
	MsgCancel MsgType = 6
	// MsgReject{Reason, Indices}: will not send these.
	MsgReject MsgType = 7
	// MsgFetching{Indices}: the sender is fetching these from the origin;
	// the receiver may wait for them rather than ask the origin too.
	MsgFetching MsgType = 8
	// MsgChunkPart{Index, Total, Offset, Data}: a slice of a requested
	// chunk of Total bytes. A sender whose uploads are paced (a rate limit)
	// sends a chunk as consecutive parts, Offset 0 first, and may put
	// control messages between them, so that a Fetching or HaveUpdate does
	// not wait for a whole paced chunk; no other chunk starts before the
	// last part. The receiver assembles the parts and treats the whole as
	// a Chunk.
	MsgChunkPart MsgType = 9
)

func (t MsgType) String() string {
	switch t {
	case MsgHello:
		return "hello"
	case MsgHave:
		return "have"
	case MsgHaveUpdate:
		return "have-update"
	case MsgRequest:
		return "request"
	case MsgChunk:
		return "chunk"
	case MsgCancel:
		return "cancel"
	case MsgReject:
		return "reject"
	case MsgFetching:
		return "fetching"
	case MsgChunkPart:
		return "chunk-part"
	}
	return fmt.Sprintf("type-%d", byte(t))
}

// RejectReason says why chunks were rejected.
type RejectReason byte

// Reject reasons.
const (
	RejectNotHave RejectReason = 0 // the sender does not hold them
	RejectBusy    RejectReason = 1 // the sender is overloaded: ask later or elsewhere
	// RejectCancelled: the sender stopped sending the chunk whose
	// ChunkParts it was sending, because the receiver cancelled it; the
	// receiver drops the parts it has.
	RejectCancelled RejectReason = 2
)

// Wire limits.
const (
	// DefaultMaxControl caps every message but Chunk.
	DefaultMaxControl = 1 << 20
	// MaxIndicesPerMessage caps the indices of one Request, Cancel, Reject
	// or Fetching.
	MaxIndicesPerMessage = 1 << 16
	// chunkHeaderMax bounds a Chunk message's bytes besides its data (type
	// byte and index).
	chunkHeaderMax = 1 + binary.MaxVarintLen32
	// maxCIDLen bounds a CID's binary form.
	maxCIDLen = 128
)

// WireLimits bounds what ReadMessage accepts. Zero fields take the
// defaults.
type WireLimits struct {
	// MaxControl caps every message but Chunk, in bytes (type included).
	// Default 1 MiB.
	MaxControl int
	// MaxChunk caps a Chunk's data. Default metadata.MaxChunkSize.
	MaxChunk int
}

func (l WireLimits) withDefaults() WireLimits {
	if l.MaxControl <= 0 {
		l.MaxControl = DefaultMaxControl
	}
	if l.MaxChunk <= 0 {
		l.MaxChunk = metadata.MaxChunkSize
	}
	return l
}

// Message is one wire message; which fields matter depends on Type.
type Message struct {
	Type     MsgType
	Manifest cid.Cid         // Hello, Have
	Count    int             // Have: number of chunks the bitfield covers
	Have     policy.Bitfield // Have
	Site     string          // Have: the sender's configured site, "" none
	Index    uint32          // HaveUpdate, Chunk, ChunkPart
	Total    int             // ChunkPart: the whole chunk's length
	Offset   int             // ChunkPart: where Data starts in the chunk
	Indices  []uint32        // Request, Cancel, Reject, Fetching
	Reason   RejectReason    // Reject
	Data     []byte          // Chunk, ChunkPart

	buf  *[]byte // Data's buffer, from pool (readMessage)
	pool *sync.Pool
}

// release gives a pooled Chunk's buffer back: nothing may use Data after.
func (m *Message) release() {
	if m.buf != nil {
		m.pool.Put(m.buf)
		m.buf, m.pool, m.Data = nil, nil, nil
	}
}

// ReadMessage reads one message from r. Errors other than those of r wrap
// ErrProtocol; io.EOF means the stream ended cleanly between messages.
func ReadMessage(r *bufio.Reader, limits WireLimits) (*Message, error) {
	return readMessage(r, limits, nil, nil)
}

// partDst says where a ChunkPart's data goes: n bytes of the chunk being
// assembled (the part is of chunk index, total bytes long, at offset; its
// header checked), or nil for a new buffer.
type partDst func(index uint32, total, offset, n int) []byte

// readMessage is ReadMessage taking a large Chunk's buffer from pool (if
// not nil); the Message's release gives it back. A ChunkPart's data goes
// where dst (if not nil) says: then the Message's Data is that slice.
func readMessage(r *bufio.Reader, limits WireLimits, pool *sync.Pool, dst partDst) (*Message, error) {
	limits = limits.withDefaults()
	n, err := readUvarint(r)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, protoErr("empty message")
	}
	tb, err := r.ReadByte()
	if err != nil {
		return nil, unexpectedEOF(err)
	}
	t := MsgType(tb)
	max := uint64(limits.MaxControl)
	if t == MsgChunk {
		max = uint64(limits.MaxChunk) + chunkHeaderMax
	}
	if n > max {
		return nil, protoErr("%s message of %d bytes, limit %d", t, n, max)
	}
	switch t {
	case MsgHello, MsgHave, MsgHaveUpdate, MsgRequest, MsgChunk, MsgCancel, MsgReject, MsgFetching, MsgChunkPart:
	default:
		return nil, protoErr("unknown message type %d", tb)
	}
	if t == MsgChunkPart && dst != nil {
		if m, ok, err := readPartInto(r, int(n-1), limits, dst); ok || err != nil {
			return m, err
		}
	}
	payload, buf := newPayload(r, t, int(n-1), pool)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, unexpectedEOF(err)
	}
	m, err := decodePayload(t, payload, limits)
	if err != nil {
		return nil, err
	}
	if buf != nil {
		m.buf, m.pool = buf, pool
	}
	return m, nil
}

// readPartInto reads a ChunkPart payload of n bytes straight into the
// slice dst gives for it, sparing a buffer and a copy per part. It checks
// the header (index, total, offset) as decodePayload does, from bytes it
// only peeks: false (nothing consumed) if they do not pass or dst gives no
// slice, for readMessage to read and refuse or decode the part as usual.
func readPartInto(r *bufio.Reader, n int, limits WireLimits, dst partDst) (*Message, bool, error) {
	b, _ := r.Peek(min(n, 3*binary.MaxVarintLen64))
	p := &payloadReader{b: b}
	idx := p.u32()
	total, off := p.uvarint(), p.uvarint()
	if p.err != nil {
		return nil, false, nil
	}
	hdr := len(b) - len(p.b)
	k := uint64(n - hdr)
	if total == 0 || total > uint64(limits.MaxChunk) || k == 0 || off >= total || k > total-off {
		return nil, false, nil
	}
	data := dst(idx, int(total), int(off), int(k))
	if len(data) != int(k) {
		return nil, false, nil
	}
	if _, err := r.Discard(hdr); err != nil {
		return nil, true, unexpectedEOF(err)
	}
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, true, unexpectedEOF(err)
	}
	return &Message{Type: MsgChunkPart, Index: idx, Total: int(total), Offset: int(off), Data: data}, true, nil
}

// Chunk data of at least alignedChunkMin bytes is placed at an
// alignedChunk boundary in memory, so that a store writing it with direct
// I/O needs no aligned copy.
const (
	alignedChunk    = 4096
	alignedChunkMin = 64 << 10
)

// newPayload allocates a payload of n bytes for a message of type t whose
// payload r is about to deliver; a large Chunk's data (after its index) is
// aligned, in a buffer from pool if there is one (returned too).
func newPayload(r *bufio.Reader, t MsgType, n int, pool *sync.Pool) ([]byte, *[]byte) {
	if t != MsgChunk || n < alignedChunkMin {
		return make([]byte, n), nil
	}
	// The index is at most 5 bytes, all of them this payload's.
	b, _ := r.Peek(min(n, binary.MaxVarintLen32))
	k := 0
	for k < len(b) && b[k] >= 0x80 {
		k++
	}
	k++ // the index's last byte; a malformed one fails decoding anyway
	return alignedBuf(n, k, pool)
}

// alignedBuf returns n bytes whose byte skew sits at an alignedChunk
// boundary, in a buffer from pool if it has one large enough (returned too,
// nil without a pool).
func alignedBuf(n, skew int, pool *sync.Pool) ([]byte, *[]byte) {
	var bp *[]byte
	if pool != nil {
		if p, _ := pool.Get().(*[]byte); p != nil && cap(*p) >= n+alignedChunk {
			bp = p
		}
	}
	if bp == nil {
		raw := make([]byte, n+alignedChunk)
		bp = &raw
	}
	if pool == nil {
		return alignIn(*bp, skew, n), nil
	}
	return alignIn(*bp, skew, n), bp
}

// alignIn returns the n bytes of raw (at least n+alignedChunk long, in
// capacity) whose byte skew sits at an alignedChunk boundary, capped at n.
func alignIn(raw []byte, skew, n int) []byte {
	raw = raw[:cap(raw)]
	o := (alignedChunk - int((uintptr(unsafe.Pointer(&raw[0]))+uintptr(skew))&(alignedChunk-1))) & (alignedChunk - 1)
	return raw[o : o+n : o+n]
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// readUvarint reads a shortest-form uvarint; io.EOF only before its first
// byte.
func readUvarint(r *bufio.Reader) (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 {
				return 0, unexpectedEOF(err)
			}
			return 0, err
		}
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				return 0, protoErr("varint overflows 64 bits")
			}
			if b == 0 && i > 0 {
				return 0, protoErr("varint not in shortest form")
			}
			return x | uint64(b)<<s, nil
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
	return 0, protoErr("varint overflows 64 bits")
}

// payloadReader decodes a payload strictly.
type payloadReader struct {
	b   []byte
	err error
}

func (p *payloadReader) uvarint() uint64 {
	if p.err != nil {
		return 0
	}
	v, n := binary.Uvarint(p.b)
	if n <= 0 {
		p.err = protoErr("bad varint")
		return 0
	}
	if n != uvarintLen(v) {
		p.err = protoErr("varint not in shortest form")
		return 0
	}
	p.b = p.b[n:]
	return v
}

func (p *payloadReader) u32() uint32 {
	v := p.uvarint()
	if v > 1<<32-1 {
		p.err = protoErr("index %d out of range", v)
		return 0
	}
	return uint32(v)
}

func (p *payloadReader) bytes(n uint64) []byte {
	if p.err != nil {
		return nil
	}
	if n > uint64(len(p.b)) {
		p.err = protoErr("field of %d bytes, %d left", n, len(p.b))
		return nil
	}
	out := p.b[:n]
	p.b = p.b[n:]
	return out
}

func (p *payloadReader) cid() cid.Cid {
	n := p.uvarint()
	if p.err == nil && (n == 0 || n > maxCIDLen) {
		p.err = protoErr("CID of %d bytes", n)
	}
	b := p.bytes(n)
	if p.err != nil {
		return cid.Undef
	}
	c, err := cid.Cast(b)
	if err != nil || string(c.Bytes()) != string(b) {
		p.err = protoErr("bad CID")
		return cid.Undef
	}
	return c
}

func (p *payloadReader) indices() []uint32 {
	n := p.uvarint()
	if p.err != nil {
		return nil
	}
	if n == 0 || n > MaxIndicesPerMessage || n > uint64(len(p.b)) {
		p.err = protoErr("%d indices in %d bytes", n, len(p.b))
		return nil
	}
	out := make([]uint32, n)
	for k := range out {
		out[k] = p.u32()
	}
	return out
}

// site reads a length-prefixed site name; an empty one would be a second
// encoding of none, and is refused like any name CheckSiteName refuses.
func (p *payloadReader) site() string {
	n := p.uvarint()
	if p.err == nil && (n == 0 || n > policy.MaxSiteLen) {
		p.err = protoErr("site name of %d bytes", n)
	}
	b := p.bytes(n)
	if p.err != nil {
		return ""
	}
	if err := policy.CheckSiteName(string(b)); err != nil {
		p.err = protoErr("%v", err)
		return ""
	}
	return string(b)
}

func decodePayload(t MsgType, b []byte, limits WireLimits) (*Message, error) {
	p := &payloadReader{b: b}
	m := &Message{Type: t}
	switch t {
	case MsgHello:
		m.Manifest = p.cid()
	case MsgHave:
		m.Manifest = p.cid()
		cnt := p.uvarint()
		if p.err == nil && cnt > uint64(len(p.b))*8 {
			p.err = protoErr("have-map of %d chunks in %d bytes", cnt, len(p.b))
		}
		if p.err == nil {
			m.Count = int(cnt)
			raw := p.bytes((cnt + 7) / 8)
			if p.err == nil {
				var err error
				if m.Have, err = policy.BitfieldFromBytes(raw, m.Count); err != nil {
					p.err = protoErr("have-map: %v", err)
				}
			}
		}
		if p.err == nil && len(p.b) > 0 {
			m.Site = p.site()
		}
	case MsgHaveUpdate:
		m.Index = p.u32()
	case MsgChunk:
		m.Index = p.u32()
		if p.err == nil && len(p.b) > limits.MaxChunk {
			p.err = protoErr("chunk of %d bytes, limit %d", len(p.b), limits.MaxChunk)
		}
		m.Data, p.b = p.b, nil
	case MsgChunkPart:
		m.Index = p.u32()
		total, off := p.uvarint(), p.uvarint()
		switch {
		case p.err != nil:
		case total == 0 || total > uint64(limits.MaxChunk):
			p.err = protoErr("chunk part of a %d-byte chunk, limit %d", total, limits.MaxChunk)
		case len(p.b) == 0 || off >= total || uint64(len(p.b)) > total-off:
			p.err = protoErr("chunk part of %d bytes at %d of a %d-byte chunk", len(p.b), off, total)
		}
		m.Total, m.Offset = int(total), int(off)
		m.Data, p.b = p.b, nil
	case MsgReject:
		if len(p.b) == 0 {
			p.err = protoErr("reject without a reason")
		} else {
			m.Reason = RejectReason(p.b[0])
			p.b = p.b[1:]
			if m.Reason > RejectCancelled {
				p.err = protoErr("unknown reject reason %d", m.Reason)
			}
		}
		m.Indices = p.indices()
	case MsgRequest, MsgCancel, MsgFetching:
		m.Indices = p.indices()
	}
	if p.err == nil && len(p.b) != 0 {
		p.err = protoErr("%s message: %d trailing bytes", t, len(p.b))
	}
	if p.err != nil {
		return nil, p.err
	}
	return m, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// AppendMessage appends m's encoding (length prefix included) to dst. It
// refuses a message ReadMessage would refuse under default limits, except
// for the size limits.
func AppendMessage(dst []byte, m *Message) ([]byte, error) {
	hdr, err := appendPayloadHeader(nil, m)
	if err != nil {
		return dst, err
	}
	n := uint64(1 + len(hdr) + len(m.Data))
	dst = binary.AppendUvarint(dst, n)
	dst = append(dst, byte(m.Type))
	dst = append(dst, hdr...)
	return append(dst, m.Data...), nil
}

// appendPayloadHeader appends m's payload but for a Chunk's data.
func appendPayloadHeader(dst []byte, m *Message) ([]byte, error) {
	putCID := func(c cid.Cid) error {
		if !c.Defined() {
			return fmt.Errorf("%s message: undefined manifest CID", m.Type)
		}
		b := c.Bytes()
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		dst = append(dst, b...)
		return nil
	}
	putIndices := func() error {
		if len(m.Indices) == 0 || len(m.Indices) > MaxIndicesPerMessage {
			return fmt.Errorf("%s message: %d indices", m.Type, len(m.Indices))
		}
		dst = binary.AppendUvarint(dst, uint64(len(m.Indices)))
		for _, i := range m.Indices {
			dst = binary.AppendUvarint(dst, uint64(i))
		}
		return nil
	}
	switch m.Type {
	case MsgHello:
		return dst, putCID(m.Manifest)
	case MsgHave:
		if err := putCID(m.Manifest); err != nil {
			return dst, err
		}
		if m.Count < 0 || len(m.Have) < (m.Count+63)/64 {
			return dst, fmt.Errorf("have message: bitfield shorter than %d chunks", m.Count)
		}
		dst = binary.AppendUvarint(dst, uint64(m.Count))
		dst = m.Have.AppendBytes(dst, m.Count)
		if m.Site != "" {
			if err := policy.CheckSiteName(m.Site); err != nil {
				return dst, fmt.Errorf("have message: %w", err)
			}
			dst = binary.AppendUvarint(dst, uint64(len(m.Site)))
			dst = append(dst, m.Site...)
		}
		return dst, nil
	case MsgHaveUpdate:
		return binary.AppendUvarint(dst, uint64(m.Index)), nil
	case MsgChunk:
		return binary.AppendUvarint(dst, uint64(m.Index)), nil
	case MsgChunkPart:
		if m.Total <= 0 || m.Offset < 0 || len(m.Data) == 0 || m.Offset+len(m.Data) > m.Total {
			return dst, fmt.Errorf("chunk part of %d bytes at %d of a %d-byte chunk", len(m.Data), m.Offset, m.Total)
		}
		dst = binary.AppendUvarint(dst, uint64(m.Index))
		dst = binary.AppendUvarint(dst, uint64(m.Total))
		return binary.AppendUvarint(dst, uint64(m.Offset)), nil
	case MsgReject:
		dst = append(dst, byte(m.Reason))
		return dst, putIndices()
	case MsgRequest, MsgCancel, MsgFetching:
		return dst, putIndices()
	}
	return dst, fmt.Errorf("unknown message type %d", byte(m.Type))
}

// WriteMessage writes m to w: the header, then a Chunk's data without
// copying it. Callers buffer w and flush.
func WriteMessage(w io.Writer, m *Message) error {
	var buf [64]byte
	if m.Type != MsgChunk && m.Type != MsgChunkPart {
		b, err := AppendMessage(buf[:0], m)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	hdr, err := appendPayloadHeader(buf[32:32], m)
	if err != nil {
		return err
	}
	b := binary.AppendUvarint(buf[:0], uint64(1+len(hdr)+len(m.Data)))
	b = append(b, byte(m.Type))
	b = append(b, hdr...)
	if _, err := w.Write(b); err != nil {
		return err
	}
	_, err = w.Write(m.Data)
	return err
}
