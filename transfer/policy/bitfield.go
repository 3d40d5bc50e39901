package policy

import (
	"errors"
	"math/bits"
)

// Bitfield is a set of chunk indices, bit i of word i/64. Its wire form
// (AppendBytes) is one bit per chunk, bit i in byte i/8 at bit i%8 (LSB first),
// with zero padding.
type Bitfield []uint64

// NewBitfield returns an empty Bitfield for n chunks.
func NewBitfield(n int) Bitfield { return make(Bitfield, (max(n, 0)+63)/64) }

// Set adds i.
func (b Bitfield) Set(i int) { b[i>>6] |= 1 << (i & 63) }

// Clear removes i.
func (b Bitfield) Clear(i int) { b[i>>6] &^= 1 << (i & 63) }

// Has reports whether i is in b (false when out of range).
func (b Bitfield) Has(i int) bool {
	return i >= 0 && i>>6 < len(b) && b[i>>6]&(1<<(i&63)) != 0
}

// Count returns the number of members.
func (b Bitfield) Count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// mask returns the valid bits of word w for n chunks.
func (b Bitfield) mask(w, n int) uint64 {
	if rem := n - w*64; rem < 64 {
		if rem <= 0 {
			return 0
		}
		return (1 << rem) - 1
	}
	return ^uint64(0)
}

// AppendBytes appends the wire form of b for n chunks to dst.
func (b Bitfield) AppendBytes(dst []byte, n int) []byte {
	for k := range (n + 7) / 8 {
		var x byte
		if w := k / 8; w < len(b) {
			x = byte(b[w] >> (8 * (k % 8)))
		}
		if rem := n - 8*k; rem < 8 {
			x &= byte(1<<rem) - 1
		}
		dst = append(dst, x)
	}
	return dst
}

// BitfieldFromBytes decodes the wire form of a Bitfield of n chunks. data
// must be exactly (n+7)/8 bytes long with zero padding bits.
func BitfieldFromBytes(data []byte, n int) (Bitfield, error) {
	if n < 0 || len(data) != (n+7)/8 {
		return nil, errBitfieldLen
	}
	if n%8 != 0 && data[len(data)-1]>>(n%8) != 0 {
		return nil, errBitfieldPad
	}
	b := NewBitfield(n)
	for k, x := range data {
		b[k/8] |= uint64(x) << (8 * (k % 8))
	}
	return b, nil
}

var (
	errBitfieldLen = errors.New("bitfield length does not match the chunk count")
	errBitfieldPad = errors.New("bitfield padding bits set")
)
