package metadata

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/ulikunitz/xz"
)

// xzMaxDict bounds the LZMA2 dictionary an xz block may ask for. xz -9
// (and -9e) use 64 MiB; the format allows 4 GiB, which the decoder would
// allocate at once.
const xzMaxDict = 64 << 20

// newXZReader opens an xz stream whose blocks may not ask for a dictionary
// larger than xzMaxDict (see xzGuard).
func newXZReader(r io.Reader) (io.Reader, error) {
	xr, err := xz.NewReader(&xzGuard{r: newBufReader(r)})
	if err != nil {
		return nil, fmt.Errorf("xz: %w: %v", ErrMalformed, err)
	}
	return xr, nil
}

var errXZFormat = errors.New("bad xz framing")

func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 64<<10) }

// xzGuard passes an xz stream through unchanged while following its framing
// (stream header, block headers, LZMA2 chunk headers, block padding and
// check, index, footer, stream padding) far enough to read every block's
// LZMA2 dictionary size before the decoder sees that block, and refuses one
// larger than xzMaxDict. It does not check what the decoder checks (CRCs,
// index contents). It holds at most one header or one piece of chunk data.
type xzGuard struct {
	r       *bufio.Reader
	out     []byte // bytes followed, not yet returned
	state   int
	check   int    // size of each block's check field
	n       int64  // bytes of the current block (header + data) or index
	left    int    // bytes of chunk data still to pass
	records uint64 // index varints still to follow
	done    bool   // the stream ended cleanly
	err     error
}

const (
	xzStreamHeader = iota
	xzBlockOrIndex
	xzChunk
	xzChunkData
	xzBlockEnd
	xzIndex
	xzStreamPadding
)

func (g *xzGuard) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.err != nil {
			return 0, g.err
		}
		if g.done {
			return 0, io.EOF
		}
		g.out = g.out[:0]
		if err := g.step(); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				err = io.ErrUnexpectedEOF
			} else if !errors.Is(err, ErrTooLarge) {
				err = fmt.Errorf("%w: %v", errXZFormat, err)
			}
			g.err = err
		}
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	return n, nil
}

// take reads n bytes into out and returns them.
func (g *xzGuard) take(n int) ([]byte, error) {
	start := len(g.out)
	g.out = append(g.out, make([]byte, n)...)
	if _, err := io.ReadFull(g.r, g.out[start:]); err != nil {
		return nil, err
	}
	return g.out[start:], nil
}

// varint reads an xz multibyte integer, counting its bytes into n.
func (g *xzGuard) varint() (uint64, error) {
	var v uint64
	for i := 0; i < 9; i++ {
		b, err := g.take(1)
		if err != nil {
			return 0, err
		}
		g.n++
		v |= uint64(b[0]&0x7f) << (7 * i)
		if b[0]&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errors.New("varint too long")
}

// step follows one unit of the stream.
func (g *xzGuard) step() error {
	switch g.state {
	case xzStreamHeader:
		return g.streamHeader()
	case xzBlockOrIndex:
		return g.blockOrIndex()
	case xzChunk:
		return g.chunkHeader()
	case xzChunkData:
		return g.chunkData()
	case xzBlockEnd:
		return g.blockEnd()
	case xzIndex:
		return g.index()
	case xzStreamPadding:
		return g.streamPadding()
	}
	return nil
}

// streamHeader reads the stream header and the size of its blocks' check.
func (g *xzGuard) streamHeader() error {
	h, err := g.take(12)
	if err != nil {
		return err
	}
	if !bytes.Equal(h[:6], []byte("\xfd7zXZ\x00")) || h[6] != 0 || h[7] > 0x0f {
		return errors.New("bad stream header")
	}
	if id := int(h[7]); id > 0 {
		g.check = 4 << ((id - 1) / 3)
	} else {
		g.check = 0
	}
	g.state = xzBlockOrIndex
	return nil
}

// blockOrIndex reads a block header (its dictionary checked), or the
// start of the index.
func (g *xzGuard) blockOrIndex() error {
	b, err := g.take(1)
	if err != nil {
		return err
	}
	if b[0] == 0 { // the index: count, then count pairs of varints
		g.n = 1
		count, err := g.varint()
		if err != nil {
			return err
		}
		if count > 1<<40 {
			return errors.New("index too long")
		}
		g.records, g.state = 2*count, xzIndex
		return nil
	}
	size := (int(b[0]) + 1) * 4
	h, err := g.take(size - 1)
	if err != nil {
		return err
	}
	if err := blockDict(h[:size-5]); err != nil {
		return err
	}
	g.n, g.state = int64(size), xzChunk
	return nil
}

// chunkHeader reads the header of an LZMA2 chunk, or the end of the block.
func (g *xzGuard) chunkHeader() error {
	c, err := g.take(1)
	if err != nil {
		return err
	}
	g.n++
	switch ctl := c[0]; {
	case ctl == 0:
		g.state = xzBlockEnd
	case ctl == 1 || ctl == 2:
		s, err := g.take(2)
		if err != nil {
			return err
		}
		g.n += 2
		g.left, g.state = (int(s[0])<<8|int(s[1]))+1, xzChunkData
	case ctl >= 0x80:
		hl := 4
		if (ctl>>5)&3 >= 2 {
			hl = 5 // with a properties byte
		}
		s, err := g.take(hl)
		if err != nil {
			return err
		}
		g.n += int64(hl)
		g.left, g.state = (int(s[2])<<8|int(s[3]))+1, xzChunkData
	default:
		return fmt.Errorf("bad LZMA2 control byte %#x", ctl)
	}
	return nil
}

// chunkData passes on up to 32 KiB of a chunk's data.
func (g *xzGuard) chunkData() error {
	n := min(g.left, 32<<10)
	if _, err := g.take(n); err != nil {
		return err
	}
	g.n += int64(n)
	if g.left -= n; g.left == 0 {
		g.state = xzChunk
	}
	return nil
}

// blockEnd passes on the block padding and check.
func (g *xzGuard) blockEnd() error {
	if _, err := g.take(int((4-g.n%4)%4) + g.check); err != nil {
		return err
	}
	g.state = xzBlockOrIndex
	return nil
}

// index reads up to 1024 index records, then the index padding and CRC32
// and the stream footer.
func (g *xzGuard) index() error {
	for i := 0; i < 1024 && g.records > 0; i++ {
		if _, err := g.varint(); err != nil {
			return err
		}
		g.records--
	}
	if g.records == 0 {
		// Padding, CRC32, then the 12-byte stream footer.
		if _, err := g.take(int((4-g.n%4)%4) + 4 + 12); err != nil {
			return err
		}
		g.state = xzStreamPadding
	}
	return nil
}

// streamPadding passes on stream padding; what follows is another
// stream, or the end.
func (g *xzGuard) streamPadding() error {
	b, err := g.r.Peek(4)
	if len(b) == 0 && err == io.EOF {
		g.done = true
		return nil
	}
	if err != nil {
		return err
	}
	if bytes.Equal(b, []byte{0, 0, 0, 0}) {
		_, err = g.take(4)
		return err
	}
	g.state = xzStreamHeader
	return nil
}

// blockDict checks the filter flags of a block header (h holds the header
// without its size byte and CRC32) and refuses an LZMA2 dictionary larger
// than xzMaxDict.
func blockDict(h []byte) error {
	if len(h) < 1 {
		return errors.New("short block header")
	}
	flags := h[0]
	r := bytes.NewReader(h[1:])
	uvarint := func() (uint64, error) {
		var v uint64
		for i := 0; i < 9; i++ {
			b, err := r.ReadByte()
			if err != nil {
				return 0, errors.New("short block header")
			}
			v |= uint64(b&0x7f) << (7 * i)
			if b&0x80 == 0 {
				return v, nil
			}
		}
		return 0, errors.New("varint too long")
	}
	if flags&0x40 != 0 {
		if _, err := uvarint(); err != nil {
			return err
		}
	}
	if flags&0x80 != 0 {
		if _, err := uvarint(); err != nil {
			return err
		}
	}
	for range int(flags&3) + 1 {
		id, err := uvarint()
		if err != nil {
			return err
		}
		size, err := uvarint()
		if err != nil {
			return err
		}
		if size > uint64(r.Len()) {
			return errors.New("short block header")
		}
		props := make([]byte, size)
		r.Read(props)
		if id != 0x21 {
			continue
		}
		if size != 1 || props[0] > 40 {
			return errors.New("bad LZMA2 properties")
		}
		bits := uint(props[0])
		dict := uint64(2|bits&1) << (bits/2 + 11)
		if bits == 40 {
			dict = 1<<32 - 1
		}
		if dict > xzMaxDict {
			return fmt.Errorf("%w: xz block asks for a %d-byte dictionary, limit %d", ErrTooLarge, dict, xzMaxDict)
		}
	}
	return nil
}
