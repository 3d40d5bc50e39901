package metadata

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// tarEntry describes one entry of a test archive.
type tarEntry struct {
	name string
	typ  byte
	mode int64
	body string
	link string
	size int64 // header size if > 0 and body is shorter (a lying header)

	uid, gid     int
	uname, gname string
}

func tarFile(name, body string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeReg, mode: 0o644, body: body}
}
func tarDirEntry(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeDir, mode: 0o755} }
func tarSymlink(name, target string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}
func tarHardlink(name, target string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeLink, mode: 0o644, link: target}
}

// makeTar writes entries as a tar archive. A lying header (size > len(body))
// ends the archive right after its short body.
func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		size := int64(0)
		if e.typ == tar.TypeReg {
			size = int64(len(e.body))
		}
		if e.size > 0 {
			size = e.size
		}
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: size, Linkname: e.link, Format: tar.FormatPAX,
			Uid: e.uid, Gid: e.gid, Uname: e.uname, Gname: e.gname}
		if e.typ == tar.TypeChar || e.typ == tar.TypeBlock {
			h.Devmajor, h.Devminor = 1, 3
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("tar body %q: %v", e.name, err)
		}
		if size > int64(len(e.body)) {
			return buf.Bytes() // truncated: no padding, no end marker
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("tar close: %v", err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(data, nil)
}

func xzBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// arMember is one member of a test ar archive.
type arMember struct {
	name string
	data []byte
}

// makeAr writes an ar archive in the common (Debian) format.
func makeAr(members ...arMember) []byte {
	var buf bytes.Buffer
	buf.WriteString(arMagic)
	for _, m := range members {
		fmt.Fprintf(&buf, "%-16s%-12d%-6d%-6d%-8o%-10d`\n", m.name, 0, 0, 0, 0o100644, len(m.data))
		buf.Write(m.data)
		if len(m.data)%2 == 1 {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes()
}

// makeDeb wraps a data member (already compressed as its name says).
func makeDeb(t testing.TB, dataName string, data []byte) []byte {
	t.Helper()
	control := gzipBytes(t, makeTar(t, tarFile("control", "Package: x\n")))
	return makeAr(
		arMember{"debian-binary", []byte("2.0\n")},
		arMember{"control.tar.gz", control},
		arMember{dataName, data},
	)
}

// smallOpts are options for tests: 4 KiB chunks, default limits.
var smallOpts = ImportOptions{ChunkSize: MinChunkSize}

// importBytes imports data of the given kind.
func importBytes(data []byte, kind SourceKind, opts ImportOptions) (*Manifest, error) {
	return ImportReader(context.Background(), bytes.NewReader(data), kind, "test", opts, DiscardSink{})
}

// writeFile writes data to name under dir, making parents.
func writeTestFile(t testing.TB, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// tarDir archives the directory root with the tar headers os.Lstat gives,
// directories first ("./" root entry included), as GNU tar would.
func tarOfDir(t testing.TB, root string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = "./" + filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name = strings.TrimSuffix(h.Name, "/.") + "/"
			if rel == "." {
				h.Name = "./"
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(data)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// recordSink keeps a copy of every chunk it is given, in order.
type recordSink struct {
	cids []cid.Cid
	data [][]byte
}

func (s *recordSink) PutChunk(c cid.Cid, data []byte) error {
	s.cids = append(s.cids, c)
	s.data = append(s.data, bytes.Clone(data))
	return nil
}

// encode returns m's canonical bytes or fails the test.
func mustEncode(t testing.TB, m *Manifest) []byte {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
