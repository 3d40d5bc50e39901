package metadata

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"os/exec"
	"testing"

	"github.com/ulikunitz/xz"
)

// xzWithDict rewrites the first block header of an xz stream to ask for the
// dictionary size code bits (40: 4 GiB), fixing the header's CRC32.
func xzWithDict(t *testing.T, stream []byte, bits byte) []byte {
	t.Helper()
	s := bytes.Clone(stream)
	size := (int(s[12]) + 1) * 4
	h := s[12 : 12+size]
	i := bytes.Index(h, []byte{0x21, 0x01})
	if i < 0 {
		t.Fatal("no LZMA2 filter in the first block header")
	}
	h[i+2] = bits
	crc := crc32.ChecksumIEEE(h[:size-4])
	h[size-4], h[size-3], h[size-2], h[size-1] = byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)
	return s
}

func TestXZGuard(t *testing.T) {
	t.Parallel()
	tarball := makeTar(t, tarFile("a/f", string(benchData(5*MinChunkSize))), tarFile("b", "hello"))
	want, err := importBytes(tarball, KindTar, smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	var multi bytes.Buffer
	zw, err := xz.WriterConfig{BlockSize: 5000, CheckSum: xz.SHA256}.NewWriter(&multi)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(tarball)
	zw.Close()
	plain := xzBytes(t, tarball)
	streams := map[string][]byte{
		"one block":        plain,
		"many blocks":      multi.Bytes(),
		"two streams":      append(bytes.Clone(plain), xzBytes(t, nil)...),
		"stream padding":   append(bytes.Clone(plain), 0, 0, 0, 0),
		"dict 64 MiB okay": xzWithDict(t, plain, 28),
	}
	if _, err := exec.LookPath("xz"); err == nil {
		for _, args := range [][]string{{"-6"}, {"-T2", "--block-size=7000", "--check=crc32"}, {"--check=none", "-0"}, {"-e", "--lzma2=preset=1,lc=4"}} {
			cmd := exec.Command("xz", append(args, "-c")...)
			cmd.Stdin = bytes.NewReader(tarball)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("xz %v: %v", args, err)
			}
			streams["xz "+args[0]] = out
		}
	}
	for name, s := range streams {
		m, err := importBytes(makeDeb(t, "data.tar.xz", s), KindDeb, smallOpts)
		if err != nil {
			t.Errorf("ImportReader(deb, %s) = %v", name, err)
			continue
		}
		if !bytes.Equal(mustEncode(t, m), mustEncode(t, want)) {
			t.Errorf("ImportReader(deb, %s) gives another manifest than the plain tar", name)
		}
		// The guard passes the stream through unchanged.
		got, err := io.ReadAll(&xzGuard{r: newBufReader(bytes.NewReader(s))})
		if err != nil || !bytes.Equal(got, s) {
			t.Errorf("xzGuard(%s) = %d bytes, %v; want the %d bytes unchanged", name, len(got), err, len(s))
		}
	}
	for _, bits := range []byte{29, 40} {
		_, err := importBytes(makeDeb(t, "data.tar.xz", xzWithDict(t, plain, bits)), KindDeb, smallOpts)
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("ImportReader(xz dict code %d) = %v, want %v", bits, err, ErrTooLarge)
		}
	}
	if _, err := importBytes(makeDeb(t, "data.tar.xz", xzWithDict(t, plain, 41)), KindDeb, smallOpts); !errors.Is(err, ErrMalformed) {
		t.Errorf("ImportReader(xz dict code 41) = %v, want %v", err, ErrMalformed)
	}
}
