package origin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/origin"
	"github.com/storkpm/stork/transfer/transfertest"
)

const testChunk = 4096

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// testTree is a hand-built tree exercising every kind of entry.
func testTree() []transfertest.Entry {
	block := randBytes(1, testChunk)
	shared := randBytes(2, 3*testChunk+17)
	return []transfertest.Entry{
		{Path: "bin", Type: metadata.TypeDir, Mode: 0o755},
		{Path: "bin/tool", Mode: 0o755, Data: randBytes(3, 10000)},
		{Path: "bin/tool-link", Type: metadata.TypeSymlink, Target: "tool"},
		{Path: "lib", Type: metadata.TypeDir, Mode: 0o755},
		{Path: "lib/a", Type: metadata.TypeDir, Mode: 0o750},
		{Path: "lib/a/b", Type: metadata.TypeDir, Mode: 0o755},
		{Path: "lib/a/b/deep.txt", Data: []byte("deep\n")},
		{Path: "lib/a/b/up", Type: metadata.TypeSymlink, Target: "../../../bin/tool"},
		{Path: "lib/empty", Data: nil},
		// One chunk repeated inside a file, and in another file.
		{Path: "lib/repeats", Data: bytes.Repeat(block, 5)},
		{Path: "lib/one-block", Data: block},
		// Identical files.
		{Path: "share/copy1", Data: shared},
		{Path: "share/copy2", Data: shared},
		{Path: "share", Type: metadata.TypeDir, Mode: 0o755},
		{Path: "ro", Type: metadata.TypeDir, Mode: 0o555},
		{Path: "ro/inner", Type: metadata.TypeDir, Mode: 0o555},
		{Path: "ro/inner/file", Mode: 0o444, Data: randBytes(4, 9000)},
		{Path: "ro/readme", Mode: 0o400, Data: []byte("read only\n")},
		{Path: "setgid-dir", Type: metadata.TypeDir, Mode: 0o2775},
		{Path: "big", Data: randBytes(5, 20*testChunk+1)},
	}
}

// repoOf writes the chunks of a tree into a repository directory and serves
// it; count, if set, counts chunk requests by path.
func repoOf(t *testing.T, chunks map[cid.Cid][]byte, wrap func(http.Handler) http.Handler) *origin.Client {
	t.Helper()
	dir := t.TempDir()
	if err := transfertest.WriteChunks(dir, chunks); err != nil {
		t.Fatal(err)
	}
	return newTestOrigin(t, serveRepo(t, dir, wrap).URL, origin.Config{})
}

// makeWritable lets t.TempDir's cleanup remove read-only trees.
func makeWritable(t *testing.T, dir string) {
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

// checkTree compares the tree at dir with the manifest, bit for bit.
func checkTree(t *testing.T, dir string, entries []transfertest.Entry) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range entries {
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		seen[e.Path] = true
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("entry %q: %v", e.Path, err)
			continue
		}
		typ := e.Type
		if typ == "" {
			typ = metadata.TypeFile
		}
		switch typ {
		case metadata.TypeFile:
			if !fi.Mode().IsRegular() {
				t.Errorf("entry %q: mode %v, want a regular file", e.Path, fi.Mode())
				continue
			}
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, e.Data) {
				t.Errorf("entry %q: content differs (%d bytes, want %d; %v)", e.Path, len(got), len(e.Data), err)
			}
			want := e.Mode
			if want == 0 {
				want = 0o644
			}
			if got := uint32(fi.Mode().Perm()); got != want {
				t.Errorf("entry %q: mode %o, want %o", e.Path, got, want)
			}
		case metadata.TypeDir:
			if !fi.IsDir() {
				t.Errorf("entry %q: mode %v, want a directory", e.Path, fi.Mode())
				continue
			}
			got := uint32(fi.Mode().Perm())
			if fi.Mode()&os.ModeSetgid != 0 {
				got |= 0o2000
			}
			if got != e.Mode {
				t.Errorf("entry %q: mode %o, want %o", e.Path, got, e.Mode)
			}
		case metadata.TypeSymlink:
			target, err := os.Readlink(p)
			if err != nil || target != e.Target {
				t.Errorf("entry %q: symlink to %q (%v), want %q", e.Path, target, err, e.Target)
			}
		}
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		if rel != "." && !seen[filepath.ToSlash(rel)] {
			t.Errorf("unexpected entry %q in output", rel)
		}
		return nil
	})
}

// checkNothingLeft fails unless parent is empty: no OutDir, no staging.
func checkNothingLeft(t *testing.T, parent string) {
	t.Helper()
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left behind in %s: %s", parent, e.Name())
	}
}

func TestGetRoundTrip(t *testing.T) {
	t.Parallel()
	entries := testTree()
	m, chunks := transfertest.BuildManifest(testChunk, entries)
	if err := m.Validate(metadata.Limits{}); err != nil {
		t.Fatalf("Validate(test manifest) error: %v", err)
	}
	var mu sync.Mutex
	requests := map[string]int{}
	src := repoOf(t, chunks, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			requests[r.URL.Path]++
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	})
	parent := t.TempDir()
	makeWritable(t, parent)
	out := filepath.Join(parent, "pkg")
	var lastDone, lastTotal atomic.Int64
	res, err := origin.Get(context.Background(), origin.GetOptions{
		Manifest: m, Source: src, OutDir: out, Parallel: 4,
		Progress: func(done, total int64) { lastDone.Store(done); lastTotal.Store(total) },
	})
	if err != nil {
		t.Fatalf("Get() error: %v", err)
	}
	checkTree(t, out, entries)

	if res.Bytes != m.TotalSize() || res.Chunks != len(m.UniqueChunks()) || res.Files != 10 {
		t.Errorf("Get() = %+v, want Bytes %d, Chunks %d, Files 10", res, m.TotalSize(), len(m.UniqueChunks()))
	}
	if lastDone.Load() != m.TotalSize() || lastTotal.Load() != m.TotalSize() {
		t.Errorf("last Progress(%d, %d), want (%d, %d)", lastDone.Load(), lastTotal.Load(), m.TotalSize(), m.TotalSize())
	}
	// Identical chunks and files moved once.
	if len(requests) != len(chunks) {
		t.Errorf("requested %d distinct chunks, want %d", len(requests), len(chunks))
	}
	for p, n := range requests {
		if n != 1 {
			t.Errorf("chunk %s requested %d times, want 1", p, n)
		}
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 1 {
		t.Errorf("parent holds %d entries after Get, want only the output", len(ents))
	}
}

// TestGetIntoEmptyDir: an existing empty OutDir is accepted and replaced.
func TestGetIntoEmptyDir(t *testing.T) {
	t.Parallel()
	entries := []transfertest.Entry{{Path: "f", Data: []byte("x")}}
	m, chunks := transfertest.BuildManifest(testChunk, entries)
	out := filepath.Join(t.TempDir(), "pkg")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: transfertest.NewFakeSource(chunks), OutDir: out}); err != nil {
		t.Fatalf("Get(into empty dir) error: %v", err)
	}
	checkTree(t, out, entries)
}

func TestGetRefusesExistingOutDir(t *testing.T) {
	t.Parallel()
	m, chunks := transfertest.BuildManifest(testChunk, []transfertest.Entry{{Path: "f", Data: []byte("x")}})
	parent := t.TempDir()
	full := filepath.Join(parent, "full")
	os.Mkdir(full, 0o755)
	os.WriteFile(filepath.Join(full, "precious"), []byte("keep me"), 0o644)
	file := filepath.Join(parent, "file")
	os.WriteFile(file, []byte("keep me"), 0o644)
	link := filepath.Join(parent, "link")
	os.Symlink(t.TempDir(), link)
	for _, out := range []string{full, file, link} {
		src := transfertest.NewFakeSource(chunks)
		_, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: src, OutDir: out})
		if !errors.Is(err, origin.ErrOutDirExists) {
			t.Errorf("Get(OutDir=%s) error = %v, want ErrOutDirExists", filepath.Base(out), err)
		}
		if n := src.TotalRequests(); n != 0 {
			t.Errorf("Get(OutDir=%s) fetched %d chunks before refusing", filepath.Base(out), n)
		}
	}
	if b, err := os.ReadFile(filepath.Join(full, "precious")); err != nil || string(b) != "keep me" {
		t.Errorf("existing content changed: %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 3 {
		t.Errorf("parent holds %d entries, want the 3 it had", len(ents))
	}
	// A missing parent is refused too.
	_, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: transfertest.NewFakeSource(chunks), OutDir: filepath.Join(parent, "no", "such")})
	if err == nil {
		t.Errorf("Get(OutDir with missing parent) succeeded")
	}
}

// TestGetHashMismatch: an origin serving wrong bytes for one chunk makes
// Get fail with ErrHashMismatch after one retry, leaving nothing behind.
func TestGetHashMismatch(t *testing.T) {
	t.Parallel()
	entries := testTree()
	m, chunks := transfertest.BuildManifest(testChunk, entries)
	bad := m.UniqueChunks()[3].CID
	var badRequests atomic.Int64
	src := repoOf(t, chunks, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/chunks/"+bad.String() {
				badRequests.Add(1)
				b := bytes.Clone(chunks[bad])
				b[len(b)/2] ^= 1
				w.Write(b)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	parent := t.TempDir()
	_, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: src, OutDir: filepath.Join(parent, "pkg")})
	if !errors.Is(err, metadata.ErrHashMismatch) {
		t.Fatalf("Get(corrupt chunk) error = %v, want ErrHashMismatch", err)
	}
	if !strings.Contains(err.Error(), bad.String()) {
		t.Errorf("Get(corrupt chunk) error %q does not name chunk %s", err, bad)
	}
	if n := badRequests.Load(); n != 2 {
		t.Errorf("corrupt chunk requested %d times, want 2 (one retry)", n)
	}
	checkNothingLeft(t, parent)
}

// TestGetSourceNotVerifying: Get verifies chunks itself, whatever the
// source does.
func TestGetSourceNotVerifying(t *testing.T) {
	t.Parallel()
	m, chunks := transfertest.BuildManifest(testChunk, testTree())
	src := transfertest.NewFakeSource(chunks)
	bad := m.UniqueChunks()[0].CID
	src.Hook = func(ctx context.Context, c cid.Cid, attempt int) ([]byte, error) {
		if c.Equals(bad) {
			return make([]byte, len(chunks[c])), nil
		}
		return nil, nil
	}
	parent := t.TempDir()
	_, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: src, OutDir: filepath.Join(parent, "pkg")})
	if !errors.Is(err, metadata.ErrHashMismatch) {
		t.Fatalf("Get(source returns zeros) error = %v, want ErrHashMismatch", err)
	}
	checkNothingLeft(t, parent)
}

// TestGetWholeFileHash: chunks that verify but a whole-file hash that does
// not (an inconsistent manifest) fail the Get.
func TestGetWholeFileHash(t *testing.T) {
	t.Parallel()
	m, chunks := transfertest.BuildManifest(testChunk, testTree())
	for i := range m.Entries {
		if m.Entries[i].Path == "big" {
			m.Entries[i].Hash = metadata.SumCID([]byte("something else")).String()
		}
	}
	parent := t.TempDir()
	_, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: transfertest.NewFakeSource(chunks), OutDir: filepath.Join(parent, "pkg")})
	if !errors.Is(err, metadata.ErrHashMismatch) || !strings.Contains(err.Error(), `"big"`) {
		t.Fatalf("Get(bad whole-file hash) error = %v, want ErrHashMismatch naming \"big\"", err)
	}
	checkNothingLeft(t, parent)
}

func TestGetMissingChunk(t *testing.T) {
	t.Parallel()
	m, chunks := transfertest.BuildManifest(testChunk, testTree())
	missing := m.UniqueChunks()[2].CID
	delete(chunks, missing)
	var missingRequests atomic.Int64
	src := repoOf(t, chunks, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, missing.String()) {
				missingRequests.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	parent := t.TempDir()
	_, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: src, OutDir: filepath.Join(parent, "pkg")})
	if !errors.Is(err, metadata.ErrNotFound) {
		t.Fatalf("Get(missing chunk) error = %v, want ErrNotFound", err)
	}
	if n := missingRequests.Load(); n != 1 {
		t.Errorf("missing chunk requested %d times, want 1 (no retry)", n)
	}
	checkNothingLeft(t, parent)
}

// TestGetRetriesTransient: transient errors are retried; the Get succeeds.
func TestGetRetriesTransient(t *testing.T) {
	t.Parallel()
	entries := testTree()
	m, chunks := transfertest.BuildManifest(testChunk, entries)
	src := transfertest.NewFakeSource(chunks)
	src.Hook = func(ctx context.Context, c cid.Cid, attempt int) ([]byte, error) {
		if attempt <= 2 {
			return nil, &origin.StatusError{URL: "test", Status: 503}
		}
		return nil, nil
	}
	out := filepath.Join(t.TempDir(), "pkg")
	makeWritable(t, out)
	if _, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: src, OutDir: out, Parallel: 32}); err != nil {
		t.Fatalf("Get(two 503s per chunk) error: %v", err)
	}
	checkTree(t, out, entries)

	// With no retries the same source fails.
	src = transfertest.NewFakeSource(chunks)
	src.Hook = func(ctx context.Context, c cid.Cid, attempt int) ([]byte, error) {
		if attempt <= 1 {
			return nil, &origin.StatusError{URL: "test", Status: 503}
		}
		return nil, nil
	}
	parent := t.TempDir()
	if _, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: src, OutDir: filepath.Join(parent, "pkg"), Retries: -1}); err == nil {
		t.Fatalf("Get(Retries -1, one 503 per chunk) succeeded")
	}
	checkNothingLeft(t, parent)
}

// TestGetCanceled: cancelling mid-get leaves nothing behind.
func TestGetCanceled(t *testing.T) {
	t.Parallel()
	m, chunks := transfertest.BuildManifest(testChunk, testTree())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := transfertest.NewFakeSource(chunks)
	var fetches atomic.Int64
	src.Hook = func(ctx context.Context, c cid.Cid, attempt int) ([]byte, error) {
		if fetches.Add(1) == 5 {
			cancel()
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, nil
	}
	parent := t.TempDir()
	_, err := origin.Get(ctx, origin.GetOptions{Manifest: m, Source: src, OutDir: filepath.Join(parent, "pkg"), Parallel: 2})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Get(canceled) error = %v, want context.Canceled", err)
	}
	if n := fetches.Load(); n >= int64(len(chunks)) {
		t.Errorf("Get went on fetching after cancel: %d fetches of %d chunks", n, len(chunks))
	}
	checkNothingLeft(t, parent)
}

// TestGetCanceledOverHTTP: cancelling while the origin is mid-response
// leaves nothing behind either.
func TestGetCanceledOverHTTP(t *testing.T) {
	t.Parallel()
	m, chunks := transfertest.BuildManifest(testChunk, testTree())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Int64
	stall := transfertest.StallHandler(false)
	src := repoOf(t, chunks, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 3 {
				cancel()
				stall.ServeHTTP(w, r)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	parent := t.TempDir()
	_, err := origin.Get(ctx, origin.GetOptions{Manifest: m, Source: src, OutDir: filepath.Join(parent, "pkg"), Parallel: 1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Get(canceled) error = %v, want context.Canceled", err)
	}
	checkNothingLeft(t, parent)
}

// TestGetRefusesUnsafeManifest: Get re-checks paths even though the caller
// validated the manifest, and refuses before fetching or creating anything.
func TestGetRefusesUnsafeManifest(t *testing.T) {
	t.Parallel()
	data := []byte("payload")
	file := func(p string) transfertest.Entry { return transfertest.Entry{Path: p, Data: data} }
	link := func(p, target string) transfertest.Entry {
		return transfertest.Entry{Path: p, Type: metadata.TypeSymlink, Target: target}
	}
	cases := []struct {
		name    string
		entries []transfertest.Entry
		mutate  func(m *metadata.Manifest)
	}{
		{"dotdot", []transfertest.Entry{file("../escape")}, nil},
		{"inner dotdot", []transfertest.Entry{file("a/../../escape")}, nil},
		{"absolute", []transfertest.Entry{file("/tmp/escape")}, nil},
		{"not clean", []transfertest.Entry{file("a//b")}, nil},
		{"file through symlink", []transfertest.Entry{link("l", "d"), file("l/x"), {Path: "d", Type: metadata.TypeDir, Mode: 0o755}}, nil},
		{"file below file", []transfertest.Entry{file("f"), file("f/x")}, nil},
		{"symlink NUL", []transfertest.Entry{link("l", "a\x00b")}, nil},
		{"duplicate", []transfertest.Entry{file("f"), file("f")}, nil},
		{"device", []transfertest.Entry{file("f")}, func(m *metadata.Manifest) { m.Entries[0].Type = "chardev" }},
		{"chunk count", []transfertest.Entry{file("f")}, func(m *metadata.Manifest) { m.Entries[0].Size = 2 * testChunk }},
		{"bad cid", []transfertest.Entry{file("f")}, func(m *metadata.Manifest) { m.Entries[0].Chunks[0] = "bafy-not-a-cid" }},
		{"dotdot symlink path", []transfertest.Entry{link("../l", "x")}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, chunks := transfertest.BuildManifest(testChunk, tc.entries)
			if tc.mutate != nil {
				tc.mutate(m)
			}
			src := transfertest.NewFakeSource(chunks)
			parent := t.TempDir()
			_, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: src, OutDir: filepath.Join(parent, "pkg")})
			if err == nil {
				t.Fatalf("Get(%s) succeeded, want an error", tc.name)
			}
			if n := src.TotalRequests(); n != 0 {
				t.Errorf("Get(%s) fetched %d chunks before refusing", tc.name, n)
			}
			checkNothingLeft(t, parent)
		})
	}
}

// TestGetKeepsTreeAsArchived: symlink targets are written as the archive
// has them (absolute, climbing out) and never followed; names with
// backslashes and bytes that are not UTF-8 are written as they are; run
// as root, Get gives entries their owners and full modes (setuid, setgid,
// sticky, 600, 777); with NoOwners (what a user who is not root gets)
// files are the caller's and lose setuid and setgid, counted.
func TestGetKeepsTreeAsArchived(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("owners need root")
	}
	outside := t.TempDir()
	entries := []transfertest.Entry{
		{Path: "bin", Type: metadata.TypeDir, Mode: 0o755},
		{Path: "bin/su", Mode: 0o4755, Data: []byte("su\n")},
		{Path: "bin/chage", Mode: 0o2755, GID: 42, Data: []byte("chage\n")},
		{Path: "etc", Type: metadata.TypeDir, Mode: 0o755},
		{Path: "etc/secret", Mode: 0o600, Data: []byte("600\n")},
		{Path: "etc/open", Mode: 0o777, Data: []byte("777\n")},
		{Path: "etc/out", Type: metadata.TypeSymlink, Target: outside},
		{Path: "etc/up", Type: metadata.TypeSymlink, Target: "../../../../etc/passwd", UID: 1000, GID: 1000},
		{Path: `etc/a\b`, Data: []byte("backslash\n")},
		{Path: "etc/caf\xe9", Data: []byte("latin-1\n")},
		{Path: "home", Type: metadata.TypeDir, Mode: 0o700, UID: 1000, GID: 1000},
		{Path: "home/notes", Mode: 0o644, UID: 1000, GID: 1000, Data: []byte("mine\n")},
		{Path: "tmp", Type: metadata.TypeDir, Mode: 0o1777},
	}
	m, chunks := transfertest.BuildManifest(testChunk, entries)
	if err := m.Validate(metadata.Limits{}); err != nil {
		t.Fatalf("test manifest: %v", err)
	}
	for _, noOwners := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "pkg")
		res, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: transfertest.NewFakeSource(chunks), OutDir: out, NoOwners: noOwners})
		if err != nil {
			t.Fatalf("Get(NoOwners %v) = %v", noOwners, err)
		}
		if want := map[bool]int{false: 0, true: 2}[noOwners]; res.SetuidDropped != want {
			t.Errorf("Get(NoOwners %v).SetuidDropped = %d, want %d", noOwners, res.SetuidDropped, want)
		}
		for _, e := range m.Entries {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(out, e.Path), &st); err != nil {
				t.Errorf("%q: %v", e.Path, err)
				continue
			}
			mode, uid, gid := e.Mode, e.UID, e.GID
			if noOwners {
				uid, gid = 0, 0 // the caller, root here
				if e.Type == metadata.TypeFile {
					mode &^= 0o6000
				}
			}
			if e.Type == metadata.TypeSymlink {
				mode = 0o777
				got, err := os.Readlink(filepath.Join(out, e.Path))
				if err != nil || got != e.Target {
					t.Errorf("%q: symlink to %q (%v), want %q", e.Path, got, err, e.Target)
				}
			}
			if st.Mode&0o7777 != mode || st.Uid != uid || st.Gid != gid {
				t.Errorf("NoOwners %v: %q: mode %#o owner %d:%d, want %#o %d:%d", noOwners, e.Path, st.Mode&0o7777, st.Uid, st.Gid, mode, uid, gid)
			}
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("the target of an absolute symlink got %d entries: Get followed it", len(ents))
	}
}

// TestGetManyFiles: many small files, more than Parallel, all verified.
func TestGetManyFiles(t *testing.T) {
	t.Parallel()
	var entries []transfertest.Entry
	for i := range 300 {
		entries = append(entries, transfertest.Entry{Path: fmt.Sprintf("d%d/f%03d", i%7, i), Data: randBytes(uint64(100+i), i*37)})
	}
	m, chunks := transfertest.BuildManifest(testChunk, entries)
	out := filepath.Join(t.TempDir(), "pkg")
	res, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: transfertest.NewFakeSource(chunks), OutDir: out, Parallel: 3})
	if err != nil {
		t.Fatalf("Get(300 files) error: %v", err)
	}
	if res.Files != 300 {
		t.Errorf("Get(300 files).Files = %d", res.Files)
	}
	for _, e := range entries {
		got, err := os.ReadFile(filepath.Join(out, e.Path))
		if err != nil || !bytes.Equal(got, e.Data) {
			t.Fatalf("file %q differs: %v", e.Path, err)
		}
	}
}

// TestGetImportRoundTrip: a real directory, imported with metadata.Import
// into a repository, served, and fetched back with Get, is identical bit for
// bit, modes and symlinks included.
func TestGetImportRoundTrip(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src")
	makeWritable(t, filepath.Dir(src))
	mkdir := func(p string, mode os.FileMode) {
		t.Helper()
		must(t, os.MkdirAll(filepath.Join(src, p), 0o755))
		must(t, os.Chmod(filepath.Join(src, p), mode))
	}
	write := func(p string, data []byte, mode os.FileMode) {
		t.Helper()
		must(t, os.WriteFile(filepath.Join(src, p), data, 0o600))
		must(t, os.Chmod(filepath.Join(src, p), mode))
	}
	mkdir(".", 0o755)
	mkdir("usr/bin", 0o755)
	mkdir("usr/share/doc/pkg", 0o755)
	mkdir("etc", 0o750)
	write("usr/bin/tool", randBytes(10, 50000), 0o755)
	write("usr/share/doc/pkg/README", []byte("hello\n"), 0o644)
	write("usr/share/doc/pkg/copy", randBytes(11, 3*testChunk), 0o644)
	write("usr/share/doc/pkg/copy2", randBytes(11, 3*testChunk), 0o444)
	write("usr/share/doc/pkg/empty", nil, 0o644)
	write("etc/conf", bytes.Repeat([]byte("k=v\n"), 5000), 0o640)
	must(t, os.Symlink("../share/doc/pkg/README", filepath.Join(src, "usr/bin/readme")))
	mkdir("ro", 0o755)
	write("ro/data", randBytes(12, 7000), 0o444)
	must(t, os.Chmod(filepath.Join(src, "ro"), 0o555))

	repo := t.TempDir()
	m, err := metadata.Import(context.Background(), src, metadata.ImportOptions{ChunkSize: testChunk}, transfertest.DirSink{Dir: repo})
	if err != nil {
		t.Fatalf("Import(%s) error: %v", src, err)
	}
	if err := m.Validate(metadata.Limits{}); err != nil {
		t.Fatalf("Validate(imported manifest) error: %v", err)
	}
	client := newTestOrigin(t, serveRepo(t, repo, nil).URL, origin.Config{})
	out := filepath.Join(t.TempDir(), "out")
	makeWritable(t, filepath.Dir(out))
	if _, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: client, OutDir: out}); err != nil {
		t.Fatalf("Get() error: %v", err)
	}
	compareTrees(t, src, out)
}

// compareTrees fails unless the trees at a and b hold the same entries with
// the same types, permission bits, contents and symlink targets.
func compareTrees(t *testing.T, a, b string) {
	t.Helper()
	list := func(root string) map[string]string {
		out := map[string]string{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			desc := fi.Mode().String()
			switch {
			case fi.Mode().IsRegular():
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				desc += fmt.Sprintf(" %x", metadata.SumCID(data).Hash())
			case fi.Mode()&os.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				desc += " -> " + target
			}
			out[rel] = desc
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", root, err)
		}
		return out
	}
	la, lb := list(a), list(b)
	for p, da := range la {
		if db, ok := lb[p]; !ok {
			t.Errorf("%q missing from the copy", p)
		} else if da != db {
			t.Errorf("%q differs: %s, copy %s", p, da, db)
		}
	}
	for p := range lb {
		if _, ok := la[p]; !ok {
			t.Errorf("%q only in the copy", p)
		}
	}
}

// FuzzGetPaths: whatever paths and symlink targets a manifest holds, Get
// either refuses it or writes only inside OutDir; nothing appears beside it.
func FuzzGetPaths(f *testing.F) {
	f.Add("a/b", "l", "../x")
	f.Add("../x", "l", "a")
	f.Add("l/x", "l", "/tmp")
	f.Add("a/f", "a/l", "..")
	f.Add("f", "g", "f")
	f.Fuzz(func(t *testing.T, file, link, target string) {
		m, chunks := transfertest.BuildManifest(testChunk, []transfertest.Entry{
			{Path: file, Data: []byte("data")},
			{Path: link, Type: metadata.TypeSymlink, Target: target},
		})
		parent := t.TempDir()
		out := filepath.Join(parent, "out")
		_, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: transfertest.NewFakeSource(chunks), OutDir: out})
		ents, _ := os.ReadDir(parent)
		if err != nil && len(ents) != 0 {
			t.Fatalf("Get(%q, %q -> %q) failed (%v) but left %d entries", file, link, target, err, len(ents))
		}
		if err == nil && (len(ents) != 1 || ents[0].Name() != "out") {
			t.Fatalf("Get(%q, %q -> %q) wrote beside OutDir: %v", file, link, target, ents)
		}
	})
}
