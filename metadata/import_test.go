package metadata

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ipfs/go-cid"
)

func TestImportTarRefusals(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 10000)
	tests := []struct {
		name    string
		archive []byte
		limits  Limits
		want    error
	}{
		{"absolute path", makeTar(t, tarFile("/etc/passwd", "x")), Limits{}, ErrInvalidPath},
		{"dotdot", makeTar(t, tarFile("../evil", "x")), Limits{}, ErrInvalidPath},
		{"dotdot inside", makeTar(t, tarFile("a/../../evil", "x")), Limits{}, ErrInvalidPath},
		{"unclean", makeTar(t, tarFile("a//b", "x")), Limits{}, ErrInvalidPath},
		{"path too long", makeTar(t, tarFile(strings.Repeat("a", 300), "x")), Limits{MaxPathLen: 255}, ErrInvalidPath},
		{"char device", makeTar(t, tarEntry{name: "null", typ: tar.TypeChar, mode: 0o666}), Limits{}, ErrUnsupportedEntry},
		{"block device", makeTar(t, tarEntry{name: "sda", typ: tar.TypeBlock, mode: 0o660}), Limits{}, ErrUnsupportedEntry},
		{"fifo", makeTar(t, tarEntry{name: "pipe", typ: tar.TypeFifo, mode: 0o644}), Limits{}, ErrUnsupportedEntry},
		{"hard link outside", makeTar(t, tarHardlink("h", "../etc/passwd")), Limits{}, ErrUnsupportedEntry},
		{"hard link absolute", makeTar(t, tarHardlink("h", "/etc/passwd")), Limits{}, ErrUnsupportedEntry},
		{"hard link unknown", makeTar(t, tarHardlink("h", "nothere")), Limits{}, ErrUnsupportedEntry},
		{"hard link to later file", makeTar(t, tarHardlink("h", "f"), tarFile("f", "x")), Limits{}, ErrUnsupportedEntry},
		{"hard link to dir", makeTar(t, tarDirEntry("d/"), tarHardlink("h", "d")), Limits{}, ErrUnsupportedEntry},
		{"hard link to symlink", makeTar(t, tarFile("f", "x"), tarSymlink("s", "f"), tarHardlink("h", "s")), Limits{}, ErrUnsupportedEntry},
		{"write through symlink", makeTar(t, tarSymlink("l", "."), tarFile("l/f", "x")), Limits{}, ErrInvalidPath},
		{"file under file", makeTar(t, tarFile("f", "x"), tarFile("f/g", "y")), Limits{}, ErrInvalidPath},
		{"duplicate file", makeTar(t, tarFile("f", "x"), tarFile("f", "y")), Limits{}, ErrDuplicatePath},
		{"duplicate dir", makeTar(t, tarDirEntry("d/"), tarDirEntry("d/")), Limits{}, ErrDuplicatePath},
		{"dir over file", makeTar(t, tarFile("f", "x"), tarDirEntry("f/")), Limits{}, ErrDuplicatePath},
		{"symlink over implicit dir", makeTar(t, tarFile("d/f", "x"), tarSymlink("d", "e")), Limits{}, ErrDuplicatePath},
		{"file over limit", makeTar(t, tarFile("f", big)), Limits{MaxFileSize: 9999}, ErrTooLarge},
		{"total over limit", makeTar(t, tarFile("f", big), tarFile("g", big)), Limits{MaxTotalSize: 19999}, ErrTooLarge},
		{"hard link over total", makeTar(t, tarFile("f", big), tarHardlink("g", "f")), Limits{MaxTotalSize: 19999}, ErrTooLarge},
		{"too many entries", makeTar(t, tarFile("a", ""), tarFile("b", ""), tarFile("c", "")), Limits{MaxEntries: 2}, ErrTooLarge},
		{"implicit dirs count", makeTar(t, tarFile("a/b/c", "")), Limits{MaxEntries: 2}, ErrTooLarge},
		{"header claims more bytes", makeTar(t, tarEntry{name: "f", typ: tar.TypeReg, mode: 0o644, body: "short", size: 1000}), Limits{}, ErrMalformed},
		{"header claims huge size", makeTar(t, tarEntry{name: "f", typ: tar.TypeReg, mode: 0o644, body: "short", size: 1 << 40}), Limits{}, ErrTooLarge},
		{"unknown type", makeTar(t, tarEntry{name: "c", typ: tar.TypeCont, mode: 0o644}), Limits{}, ErrUnsupportedEntry},
		{"garbage", bytes.Repeat([]byte("garbage!"), 100), Limits{}, ErrMalformed},
		{"too much after the end", append(makeTar(t, tarFile("f", "x")), bytes.Repeat([]byte{0}, trailingLimit+1)...), Limits{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := smallOpts
			opts.Limits = tt.limits
			m, err := importBytes(tt.archive, KindTar, opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ImportReader(%s) = %v, %v, want %v", tt.name, m, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("ImportReader(%s) error has several lines: %q", tt.name, err)
			}
		})
	}
}

func TestImportCompressedRefusals(t *testing.T) {
	t.Parallel()
	tarball := makeTar(t, tarFile("a/f", strings.Repeat("hello ", 5000)), tarSymlink("a/l", "f"))
	gz := gzipBytes(t, tarball)
	zs := zstdBytes(t, tarball)
	badCRC := bytes.Clone(gz)
	badCRC[len(badCRC)-8] ^= 1
	tests := []struct {
		name string
		data []byte
		kind SourceKind
		want error
	}{
		{"gzip without trailer", gz[:len(gz)-8], KindTarGz, ErrMalformed},
		{"gzip bad crc", badCRC, KindTarGz, ErrMalformed},
		{"gzip cut in the middle", gz[:len(gz)/2], KindTarGz, ErrMalformed},
		{"not gzip", tarball, KindTarGz, ErrMalformed},
		{"zstd cut", zs[:len(zs)-3], KindTarZst, ErrMalformed},
		{"zstd cut in the middle", zs[:len(zs)/2], KindTarZst, ErrMalformed},
		{"zstd window too large", zstdHugeWindow(t), KindTarZst, ErrMalformed},
		{"gzipped device", gzipBytes(t, makeTar(t, tarEntry{name: "null", typ: tar.TypeChar})), KindTarGz, ErrUnsupportedEntry},
		{"unknown kind", tarball, SourceKind("rar"), ErrUnsupportedEntry},
		{"dir kind from a stream", tarball, KindDir, ErrUnsupportedEntry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := importBytes(tt.data, tt.kind, smallOpts); !errors.Is(err, tt.want) {
				t.Fatalf("ImportReader(%s) = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
	// The same archives, intact, import.
	for _, c := range []struct {
		kind SourceKind
		data []byte
	}{{KindTar, tarball}, {KindTarGz, gz}, {KindTarZst, zs}} {
		if _, err := importBytes(c.data, c.kind, smallOpts); err != nil {
			t.Errorf("ImportReader(%s) = %v, want nil", c.kind, err)
		}
	}
}

// zstdHugeWindow is a zstd frame whose header asks for a 1 GiB window.
func zstdHugeWindow(t testing.TB) []byte {
	t.Helper()
	// Magic, frame header descriptor 0x00 (no checksum, no content size,
	// not single segment), window descriptor: exponent 20 => 2^(10+20) = 1 GiB,
	// then one raw last block of 1 byte.
	return []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 20 << 3, 0x09, 0x00, 0x00, 'x'}
}

func TestImportDebRefusals(t *testing.T) {
	t.Parallel()
	data := makeTar(t, tarFile("usr/bin/x", "binary"))
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"no data member", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar.gz", []byte("x")}), ErrMalformed},
		{"not ar", data, ErrMalformed},
		{"wrong first member", makeAr(arMember{"data.tar", data}), ErrMalformed},
		{"wrong version", makeAr(arMember{"debian-binary", []byte("3.0\n")}, arMember{"data.tar", data}), ErrMalformed},
		{"bz2 data", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"data.tar.bz2", []byte("BZh")}), ErrUnsupportedEntry},
		{"truncated data member", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"data.tar", data})[:200], ErrMalformed},
		{"bad size field", []byte(arMagic + "debian-binary   0           0     0     100644  -4        `\n"), ErrMalformed},
		{"bad header magic", []byte(arMagic + "debian-binary   0           0     0     100644  4         x\n2.0\n"), ErrMalformed},
		{"device in data", makeDeb(t, "data.tar", makeTar(t, tarEntry{name: "dev/null", typ: tar.TypeChar})), ErrUnsupportedEntry},
		{"xz cut", func() []byte { x := xzBytes(t, data); return makeDeb(t, "data.tar.xz", x[:len(x)-5]) }(), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := importBytes(tt.data, KindDeb, smallOpts); !errors.Is(err, tt.want) {
				t.Fatalf("ImportReader(%s) = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
}

// endlessReader is a stream that never ends.
type endlessReader struct{}

func (endlessReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'z'
	}
	return len(p), nil
}

func TestImportEndlessStream(t *testing.T) {
	t.Parallel()
	opts := ImportOptions{Limits: Limits{MaxFileSize: 8 << 20}}
	_, err := ImportReader(context.Background(), endlessReader{}, KindFile, "f", opts, DiscardSink{})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ImportReader(endlessReader) = %v, want %v", err, ErrTooLarge)
	}
	opts = ImportOptions{Limits: Limits{MaxTotalSize: 8 << 20}}
	_, err = ImportReader(context.Background(), endlessReader{}, KindFile, "f", opts, DiscardSink{})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ImportReader(endlessReader, total) = %v, want %v", err, ErrTooLarge)
	}
}

func TestImportCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := ImportReader(ctx, endlessReader{}, KindFile, "f", ImportOptions{}, DiscardSink{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ImportReader(cancelled) = %v, want %v", err, context.Canceled)
	}
	// Cancelled by the sink after a few chunks: stops between chunks.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	sink := &cancelSink{after: 3, cancel: cancel}
	_, err = ImportReader(ctx, endlessReader{}, KindFile, "f", smallOpts, sink)
	if !errors.Is(err, context.Canceled) || sink.n != 3 {
		t.Fatalf("ImportReader(cancel after 3 chunks) = %v after %d chunks, want %v after 3", err, sink.n, context.Canceled)
	}
}

type cancelSink struct {
	n, after int
	cancel   func()
}

func (s *cancelSink) PutChunk(c cid.Cid, data []byte) error {
	s.n++
	if s.n == s.after {
		s.cancel()
	}
	return nil
}

func TestImportSinkError(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk full")
	_, err := importBytes([]byte("data"), KindFile, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ImportReader(context.Background(), strings.NewReader("data"), KindFile, "f", ImportOptions{}, errSink{boom})
	if !errors.Is(err, boom) {
		t.Fatalf("ImportReader(failing sink) = %v, want %v", err, boom)
	}
}

type errSink struct{ err error }

func (s errSink) PutChunk(cid.Cid, []byte) error { return s.err }

func TestImportChunking(t *testing.T) {
	t.Parallel()
	const cs = MinChunkSize
	data := benchData(3*cs + 100)
	for _, size := range []int{0, 1, cs - 1, cs, cs + 1, 2 * cs, 3*cs + 100} {
		content := data[:size]
		sink := &recordSink{}
		m, err := ImportReader(context.Background(), bytes.NewReader(content), KindFile, "f", smallOpts, sink)
		if err != nil {
			t.Fatalf("ImportReader(%d bytes) = %v", size, err)
		}
		e := m.Entries[0]
		if len(m.Entries) != 1 || e.Path != "f" || e.Type != TypeFile || e.Mode != 0o644 || e.Size != int64(size) {
			t.Fatalf("ImportReader(%d bytes) = %+v, want one 0644 file f of %d bytes", size, m.Entries, size)
		}
		want := (size + cs - 1) / cs
		if len(e.Chunks) != want || len(sink.cids) != want {
			t.Fatalf("ImportReader(%d bytes) gave %d chunks (sink %d), want %d", size, len(e.Chunks), len(sink.cids), want)
		}
		var digests [][]byte
		var joined []byte
		for i, s := range e.Chunks {
			chunk := content[i*cs : min((i+1)*cs, size)]
			if s != SumCID(chunk).String() || !sink.cids[i].Equals(SumCID(chunk)) || !bytes.Equal(sink.data[i], chunk) {
				t.Errorf("ImportReader(%d bytes) chunk %d = %s, want %s", size, i, s, SumCID(chunk))
			}
			d := sha256.Sum256(chunk)
			digests = append(digests, d[:])
			joined = append(joined, d[:]...)
		}
		if got, want := e.Hash, FileHash(digests).String(); got != want {
			t.Errorf("ImportReader(%d bytes) hash = %s, want FileHash %s", size, got, want)
		}
		if got, want := e.Hash, SumCID(joined).String(); got != want {
			t.Errorf("ImportReader(%d bytes) hash = %s, want sha256 of digests %s", size, got, want)
		}
		if size == 0 && e.Hash != SumCID(nil).String() {
			t.Errorf("ImportReader(empty) hash = %s, want %s", e.Hash, SumCID(nil))
		}
		if err := e.VerifyHash(); err != nil {
			t.Errorf("VerifyHash(%d bytes) = %v", size, err)
		}
		for _, r := range m.ChunkRefs() {
			if err := r.Verify(sink.data[r.Index]); err != nil {
				t.Errorf("ChunkRef.Verify(%d bytes, chunk %d) = %v", size, r.Index, err)
			}
		}
	}
}

func TestChunkRefVerify(t *testing.T) {
	t.Parallel()
	data := []byte("chunk")
	r := ChunkRef{CID: SumCID(data), Length: 5}
	if err := r.Verify(data); err != nil {
		t.Errorf("Verify(good) = %v", err)
	}
	if err := r.Verify([]byte("chunK")); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("Verify(corrupt) = %v, want %v", err, ErrHashMismatch)
	}
	r.Length = 4
	if err := r.Verify(data); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("Verify(wrong length) = %v, want %v", err, ErrHashMismatch)
	}
}

func TestImportTarShapes(t *testing.T) {
	t.Parallel()
	m, err := importBytes(makeTar(t,
		tarEntry{name: "./", typ: tar.TypeDir, mode: 0o700},
		tarFile("./a/b/c", "c"),
		tarEntry{name: "./a/", typ: tar.TypeDir, mode: 0o750},
		tarFile("f", "shared"),
		tarEntry{name: "setuid", typ: tar.TypeReg, mode: 0o4755, body: "s"},
		tarHardlink("./a/h", "./f"),
		tarSymlink("a/b/l", "../../f"),
		tarEntry{name: "g", typ: tar.TypeXGlobalHeader},
	), KindTar, smallOpts)
	if err != nil {
		t.Fatalf("ImportReader = %v", err)
	}
	got := map[string]Entry{}
	var paths []string
	for _, e := range m.Entries {
		got[e.Path] = e
		paths = append(paths, e.Path)
	}
	if want := "a a/b a/b/c a/b/l a/h f setuid"; strings.Join(paths, " ") != want {
		t.Fatalf("ImportReader paths = %q, want %q", strings.Join(paths, " "), want)
	}
	checks := []struct {
		path string
		typ  EntryType
		mode uint32
	}{
		{"a", TypeDir, 0o750}, {"a/b", TypeDir, 0o755}, {"a/h", TypeFile, 0o644},
		{"a/b/l", TypeSymlink, 0o777}, {"setuid", TypeFile, 0o4755},
	}
	for _, c := range checks {
		if e := got[c.path]; e.Type != c.typ || e.Mode != c.mode {
			t.Errorf("entry %q = %s %#o, want %s %#o", c.path, e.Type, e.Mode, c.typ, c.mode)
		}
	}
	if h, f := got["a/h"], got["f"]; h.Hash != f.Hash || strings.Join(h.Chunks, ",") != strings.Join(f.Chunks, ",") || h.Size != f.Size {
		t.Errorf("hard link a/h = %+v, want the content of f %+v", h, f)
	}
	if err := m.Validate(Limits{}); err != nil {
		t.Errorf("Validate(imported) = %v", err)
	}
}

// buildTree makes a directory tree with multi-chunk files, an empty file,
// nested and empty directories, a setgid directory and internal symlinks.
func buildTree(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	writeTestFile(t, root, "bin/tool", benchData(3*MinChunkSize+17), 0o755)
	writeTestFile(t, root, "share/doc/README", []byte("read me\n"), 0o644)
	writeTestFile(t, root, "share/doc/empty", nil, 0o600)
	writeTestFile(t, root, "share/copy", benchData(3*MinChunkSize+17), 0o644)
	if err := os.MkdirAll(filepath.Join(root, "var/empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "var/empty"), 0o700|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../share/doc/README", filepath.Join(root, "bin/readme")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("bin", filepath.Join(root, "sbin")); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestImportSameTreeSameManifest(t *testing.T) {
	t.Parallel()
	root := buildTree(t)
	ctx := context.Background()
	fromDir, err := Import(ctx, root, smallOpts, DiscardSink{})
	if err != nil {
		t.Fatalf("Import(%q) = %v", root, err)
	}
	want := mustEncode(t, fromDir)
	again, err := Import(ctx, root, smallOpts, DiscardSink{})
	if err != nil || !bytes.Equal(mustEncode(t, again), want) {
		t.Fatalf("Import(%q) twice gave different manifests (%v)", root, err)
	}
	if got := fromDir.Entries; len(got) != 11 {
		t.Fatalf("Import(%q) = %d entries, want 11: %+v", root, len(got), got)
	}
	tarball := tarOfDir(t, root)
	xzData, zstData := xzBytes(t, tarball), zstdBytes(t, tarball)
	files := t.TempDir()
	sources := map[string][]byte{
		"pkg.tar":     tarball,
		"pkg.tar.gz":  gzipBytes(t, tarball),
		"pkg.tgz":     gzipBytes(t, tarball),
		"pkg.tar.zst": zstData,
		"pkg.tzst":    zstData,
		"xz.deb":      makeDeb(t, "data.tar.xz", xzData),
		"zst.deb":     makeDeb(t, "data.tar.zst", zstData),
		"gz.deb":      makeDeb(t, "data.tar.gz", gzipBytes(t, tarball)),
		"plain.deb":   makeDeb(t, "data.tar", tarball),
		"magic-tar":   tarball,
		"magic-gz":    gzipBytes(t, tarball),
		"magic-zst":   zstData,
		"magic-deb":   makeDeb(t, "data.tar.xz", xzData),
	}
	for name, data := range sources {
		p := writeTestFile(t, files, name, data, 0o644)
		m, err := Import(ctx, p, smallOpts, DiscardSink{})
		if err != nil {
			t.Errorf("Import(%q) = %v", name, err)
			continue
		}
		if got := mustEncode(t, m); !bytes.Equal(got, want) {
			t.Errorf("Import(%q) =\n%s\nwant (from the directory)\n%s", name, got, want)
		}
	}
}

func TestImportSingleFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := benchData(2*MinChunkSize + 1)
	p := writeTestFile(t, dir, "tool.bin", data, 0o750)
	m, err := Import(context.Background(), p, smallOpts, DiscardSink{})
	if err != nil {
		t.Fatalf("Import(%q) = %v", p, err)
	}
	if len(m.Entries) != 1 || m.Entries[0].Path != "tool.bin" || m.Entries[0].Mode != 0o750 || m.Entries[0].Size != int64(len(data)) {
		t.Fatalf("Import(%q) = %+v, want one 0750 file tool.bin", p, m.Entries)
	}
	r, err := ImportReader(context.Background(), bytes.NewReader(data), KindFile, "tool.bin", smallOpts, DiscardSink{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Entries[0].Hash != m.Entries[0].Hash {
		t.Errorf("ImportReader hash %s != Import hash %s", r.Entries[0].Hash, m.Entries[0].Hash)
	}
	for _, name := range []string{"", "a/b", "..", "."} {
		if _, err := ImportReader(context.Background(), bytes.NewReader(data), KindFile, name, smallOpts, DiscardSink{}); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("ImportReader(file named %q) = %v, want %v", name, err, ErrInvalidPath)
		}
	}
	// A forced kind wins over the name.
	if _, err := Import(context.Background(), p, ImportOptions{Kind: KindTar}, DiscardSink{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("Import(%q, kind tar) = %v, want %v", p, err, ErrMalformed)
	}
	if _, err := Import(context.Background(), dir, ImportOptions{Kind: KindTar}, DiscardSink{}); !errors.Is(err, ErrUnsupportedEntry) {
		t.Errorf("Import(dir, kind tar) = %v, want %v", err, ErrUnsupportedEntry)
	}
	if _, err := Import(context.Background(), p, ImportOptions{ChunkSize: 100}, DiscardSink{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("Import(chunk size 100) = %v, want %v", err, ErrMalformed)
	}
}

func TestImportDirRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		setup  func(t *testing.T, root string)
		limits Limits
		want   error
	}{
		{"fifo", func(t *testing.T, root string) {
			if err := syscall.Mkfifo(filepath.Join(root, "pipe"), 0o644); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}, Limits{}, ErrUnsupportedEntry},
		{"device", func(t *testing.T, root string) {
			if err := syscall.Mknod(filepath.Join(root, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
				t.Skipf("mknod: %v", err)
			}
		}, Limits{}, ErrUnsupportedEntry},
		{"socket", func(t *testing.T, root string) {
			l, err := net.Listen("unix", filepath.Join(root, "sock"))
			if err != nil {
				t.Skipf("unix socket: %v", err)
			}
			t.Cleanup(func() { l.Close() })
		}, Limits{}, ErrUnsupportedEntry},
		{"file over limit", func(t *testing.T, root string) {
			writeTestFile(t, root, "big", make([]byte, 5000), 0o644)
		}, Limits{MaxFileSize: 4999}, ErrTooLarge},
		{"total over limit", func(t *testing.T, root string) {
			writeTestFile(t, root, "a", make([]byte, 3000), 0o644)
			writeTestFile(t, root, "b", make([]byte, 3000), 0o644)
		}, Limits{MaxTotalSize: 5999}, ErrTooLarge},
		{"too many entries", func(t *testing.T, root string) {
			for _, n := range []string{"a", "b", "c/d"} {
				writeTestFile(t, root, n, nil, 0o644)
			}
		}, Limits{MaxEntries: 3}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			writeTestFile(t, root, "ok/file", []byte("fine"), 0o644)
			tt.setup(t, root)
			opts := smallOpts
			opts.Limits = tt.limits
			if _, err := Import(context.Background(), root, opts, DiscardSink{}); !errors.Is(err, tt.want) {
				t.Fatalf("Import(%s) = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
}

func TestImportDirDoesNotFollowSymlinks(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	writeTestFile(t, outside, "secret", []byte("secret"), 0o600)
	root := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "out")); err != nil {
		t.Fatal(err)
	}
	// Absolute target: kept as written, and nothing under it was read.
	m, err := Import(context.Background(), root, smallOpts, DiscardSink{})
	if err != nil {
		t.Fatalf("Import(link to outside) = %v", err)
	}
	if len(m.Entries) != 1 || m.Entries[0].Type != TypeSymlink || m.Entries[0].Target != outside {
		t.Fatalf("Import(link to outside) = %+v, want only the symlink out -> %s", m.Entries, outside)
	}
	// The import root itself may be a symlink to a directory.
	link := filepath.Join(t.TempDir(), "pkg")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	m, err = Import(context.Background(), link, smallOpts, DiscardSink{})
	if err != nil || len(m.Entries) != 1 || m.Entries[0].Path != "secret" {
		t.Fatalf("Import(symlink to dir) = %+v, %v, want the one file", m, err)
	}
}

func TestImportReaderNilSinkAndEmpty(t *testing.T) {
	t.Parallel()
	m, err := ImportReader(context.Background(), bytes.NewReader(makeTar(t)), KindTar, "empty.tar", ImportOptions{}, nil)
	if err != nil {
		t.Fatalf("ImportReader(empty tar) = %v", err)
	}
	if got, want := string(mustEncode(t, m)), `{"stork_manifest":1,"chunk_size":1048576,"entries":[]}`; got != want {
		t.Errorf("ImportReader(empty tar) = %s, want %s", got, want)
	}
	if _, err := DecodeManifest(mustEncode(t, m), Limits{}); err != nil {
		t.Errorf("DecodeManifest(empty) = %v", err)
	}
	var r io.Reader = strings.NewReader("")
	if m, err := ImportReader(context.Background(), r, KindFile, "e", ImportOptions{}, nil); err != nil || m.Entries[0].Hash != SumCID(nil).String() {
		t.Errorf("ImportReader(empty file) = %+v, %v", m, err)
	}
}
