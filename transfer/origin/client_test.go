package origin_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/origin"
	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// newTestOrigin returns a Client of srv with small stall/rate limits.
func newTestOrigin(t *testing.T, url string, cfg origin.Config) *origin.Client {
	t.Helper()
	cfg.URL = url
	o, err := origin.NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient(%q) error: %v", url, err)
	}
	return o
}

// serveRepo serves dir with a Server on an httptest server.
func serveRepo(t *testing.T, dir string, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	s, err := origin.NewServer(origin.ServerConfig{Dir: dir})
	if err != nil {
		t.Fatalf("NewServer(%q) error: %v", dir, err)
	}
	h := s.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestFakeSourceConformance(t *testing.T) {
	t.Parallel()
	transfertest.TestChunkSource(t, func(t *testing.T, chunks map[cid.Cid][]byte) swarm.ChunkSource {
		return transfertest.NewFakeSource(chunks)
	})
}

func TestOriginConformance(t *testing.T) {
	t.Parallel()
	transfertest.TestChunkSource(t, func(t *testing.T, chunks map[cid.Cid][]byte) swarm.ChunkSource {
		dir := t.TempDir()
		if err := transfertest.WriteChunks(dir, chunks); err != nil {
			t.Fatal(err)
		}
		return newTestOrigin(t, serveRepo(t, dir, nil).URL, origin.Config{})
	})
}

func TestNewOriginRejectsBadURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "ftp://x/", "localhost:8080", "http://", "http://h/?q=1", "http://u:p@h/"} {
		if _, err := origin.NewClient(origin.Config{URL: u}); err == nil {
			t.Errorf("NewClient(%q) = nil error, want one", u)
		}
	}
}

func TestFetch(t *testing.T) {
	t.Parallel()
	var gotPath atomic.Value
	body := []byte(`{"signed":{}}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath.Store(r.URL.Path)
		switch r.URL.Path {
		case "/repo/metadata/1.root.json":
			w.Write(body)
		case "/repo/metadata/broken.json":
			http.Error(w, "boom", http.StatusInternalServerError)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	o := newTestOrigin(t, srv.URL+"/repo/", origin.Config{})
	ctx := context.Background()

	got, err := o.Fetch(ctx, "metadata/1.root.json", 0)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("Fetch(1.root.json) = %q, %v; want %q", got, err, body)
	}
	if _, err := o.Fetch(ctx, "metadata/1.root.json", int64(len(body))); err != nil {
		t.Fatalf("Fetch(1.root.json, maxLen=len) error: %v", err)
	}
	if _, err := o.Fetch(ctx, "metadata/1.root.json", int64(len(body))-1); !errors.Is(err, metadata.ErrTooLarge) {
		t.Fatalf("Fetch(1.root.json, maxLen=len-1) error = %v, want ErrTooLarge", err)
	}
	if _, err := o.Fetch(ctx, "metadata/2.root.json", 0); !errors.Is(err, metadata.ErrNotFound) {
		t.Fatalf("Fetch(2.root.json) error = %v, want ErrNotFound", err)
	}
	_, err = o.Fetch(ctx, "metadata/broken.json", 0)
	var se *origin.StatusError
	if !errors.As(err, &se) || se.Status != 500 || !strings.Contains(err.Error(), "/repo/metadata/broken.json") {
		t.Fatalf("Fetch(broken.json) error = %v, want a StatusError 500 naming the URL", err)
	}
}

func TestFetchRefusesUnsafePaths(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests.Add(1) }))
	defer srv.Close()
	o := newTestOrigin(t, srv.URL, origin.Config{})
	for _, p := range []string{"", ".", "..", "../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a/", `a\..\b`} {
		if _, err := o.Fetch(context.Background(), p, 0); !errors.Is(err, origin.ErrUnsafePath) {
			t.Errorf("Fetch(%q) error = %v, want ErrUnsafePath", p, err)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("unsafe paths made %d requests, want 0", n)
	}
}

func TestFetchChunkNotFound(t *testing.T) {
	t.Parallel()
	srv := serveRepo(t, t.TempDir(), nil)
	o := newTestOrigin(t, srv.URL, origin.Config{})
	c := metadata.SumCID([]byte("absent"))
	if _, err := o.FetchChunk(context.Background(), c, 6); !errors.Is(err, metadata.ErrNotFound) {
		t.Fatalf("FetchChunk(absent) error = %v, want ErrNotFound", err)
	}
}

func TestFetchChunkWrongBytes(t *testing.T) {
	t.Parallel()
	want := []byte("the real chunk")
	c := metadata.SumCID(want)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("the fake chunk")) // same length, other bytes
	}))
	defer srv.Close()
	o := newTestOrigin(t, srv.URL, origin.Config{})
	if _, err := o.FetchChunk(context.Background(), c, int64(len(want))); !errors.Is(err, metadata.ErrHashMismatch) {
		t.Fatalf("FetchChunk(wrong bytes) error = %v, want ErrHashMismatch", err)
	}
}

func TestFetchChunkShortBody(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("short"))
	}))
	defer srv.Close()
	o := newTestOrigin(t, srv.URL, origin.Config{})
	c := metadata.SumCID([]byte("shortened"))
	if _, err := o.FetchChunk(context.Background(), c, 9); !errors.Is(err, origin.ErrTruncated) {
		t.Fatalf("FetchChunk(short body) error = %v, want ErrTruncated", err)
	}
}

// TestEndlessBody: a server that never stops sending (no Content-Length) is
// cut right after the limit, quickly and without buffering what follows.
func TestEndlessBody(t *testing.T) {
	srv := httptest.NewServer(transfertest.EndlessHandler())
	defer srv.Close()
	o := newTestOrigin(t, srv.URL, origin.Config{})
	const limit = 1 << 20
	c := metadata.SumCID([]byte("anything"))
	cases := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Fetch", func(ctx context.Context) error { _, err := o.Fetch(ctx, "metadata/timestamp.json", limit); return err }},
		{"FetchDefaultLimit", func(ctx context.Context) error {
			o := newTestOrigin(t, srv.URL, origin.Config{MaxMetadata: limit})
			_, err := o.Fetch(ctx, "metadata/timestamp.json", 0)
			return err
		}},
		{"FetchChunk", func(ctx context.Context) error { _, err := o.FetchChunk(ctx, c, limit); return err }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			err := tc.call(ctx)
			el := time.Since(start)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, metadata.ErrTooLarge) {
				t.Fatalf("%s(endless) error = %v, want ErrTooLarge", tc.name, err)
			}
			if el > 3*time.Second {
				t.Errorf("%s(endless) took %v, want well under 3s", tc.name, el)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
				t.Errorf("%s(endless) allocated %d bytes for a %d-byte limit", tc.name, alloc, limit)
			}
		})
	}
}

// TestDeclaredTooLarge: a Content-Length over the limit is refused before
// reading the body.
func TestDeclaredTooLarge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := bytes.Repeat([]byte{7}, 10000)
	c := metadata.SumCID(data[:100])
	if err := transfertest.WriteChunks(dir, map[cid.Cid][]byte{c: data}); err != nil {
		t.Fatal(err)
	}
	o := newTestOrigin(t, serveRepo(t, dir, nil).URL, origin.Config{})
	if _, err := o.FetchChunk(context.Background(), c, 100); !errors.Is(err, metadata.ErrTooLarge) {
		t.Fatalf("FetchChunk(10000 bytes served, size 100) error = %v, want ErrTooLarge", err)
	}
}

// TestSlowRetrieval: a server trickling one byte per 100ms never stalls but
// is abandoned as too slow after about one StallTimeout.
func TestSlowRetrieval(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(transfertest.TrickleHandler(100 * time.Millisecond))
	defer srv.Close()
	o := newTestOrigin(t, srv.URL, origin.Config{StallTimeout: 300 * time.Millisecond, MinRate: 1024})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // fail, not hang, without the defence
	defer cancel()
	for name, call := range map[string]func() error{
		"Fetch": func() error { _, err := o.Fetch(ctx, "metadata/timestamp.json", 0); return err },
		"FetchChunk": func() error {
			_, err := o.FetchChunk(ctx, metadata.SumCID([]byte("x")), 1<<20)
			return err
		},
	} {
		start := time.Now()
		err := call()
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("%s(trickle) took %v, want < 2s", name, el)
		}
		if !errors.Is(err, origin.ErrSlow) {
			t.Errorf("%s(trickle) error = %v, want ErrSlow", name, err)
		}
	}
}

// TestStall: a server that stops sending (after the headers, or before
// them) is abandoned after StallTimeout.
func TestStall(t *testing.T) {
	t.Parallel()
	for _, headersToo := range []bool{false, true} {
		srv := httptest.NewServer(transfertest.StallHandler(headersToo))
		o := newTestOrigin(t, srv.URL, origin.Config{StallTimeout: 300 * time.Millisecond, MinRate: 1})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, err := o.FetchChunk(ctx, metadata.SumCID([]byte("x")), 1000000)
		cancel()
		el := time.Since(start)
		srv.Close()
		if !errors.Is(err, origin.ErrStalled) {
			t.Errorf("FetchChunk(stall, headersToo=%v) error = %v, want ErrStalled", headersToo, err)
		}
		if el > 2*time.Second || el < 250*time.Millisecond {
			t.Errorf("FetchChunk(stall, headersToo=%v) took %v, want about 300ms", headersToo, el)
		}
	}
}

// TestHealthyTransferNotCut: a large transfer at a good rate lasting many
// StallTimeouts is never cut (no global timeout).
func TestHealthyTransferNotCut(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("z"), 256<<10)
	c := metadata.SumCID(data)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for off := 0; off < len(data); off += 16 << 10 {
			w.Write(data[off : off+16<<10])
			rc.Flush()
			time.Sleep(20 * time.Millisecond) // ~800 KiB/s for ~320ms
		}
	}))
	defer srv.Close()
	o := newTestOrigin(t, srv.URL, origin.Config{StallTimeout: 100 * time.Millisecond, MinRate: 64 << 10})
	got, err := o.FetchChunk(context.Background(), c, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("FetchChunk(steady) = %d bytes, %v; want %d bytes", len(got), err, len(data))
	}
}

func TestFetchCanceled(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(transfertest.StallHandler(true))
	defer srv.Close()
	o := newTestOrigin(t, srv.URL, origin.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := o.Fetch(ctx, "metadata/timestamp.json", 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch(ctx timeout) error = %v, want context.DeadlineExceeded", err)
	}
}

// TestFetchUnlessSame: a copy of timestamp.json the origin still serves
// comes back from a 304 without a body; another copy, or none, gets the
// body; versioned files get no ETag.
func TestFetchUnlessSame(t *testing.T) {
	t.Parallel()
	dir := testRepoDir(t)
	srv, statuses := serveRepoLogged(t, dir)
	o := newTestOrigin(t, srv.URL, origin.Config{})
	ctx := context.Background()
	last := func() int {
		s := statuses()
		return s[len(s)-1]
	}
	cur := []byte(`{"ts":1}`)
	for _, tc := range []struct {
		name   string
		have   []byte
		status int
	}{
		{"the copy served", cur, http.StatusNotModified},
		{"another copy", []byte(`{"ts":0}`), http.StatusOK},
		{"no copy", nil, http.StatusOK},
	} {
		got, err := o.FetchUnlessSame(ctx, "metadata/timestamp.json", 0, tc.have)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(got, cur) || last() != tc.status {
			t.Errorf("%s: got %q with status %d, want %q with %d", tc.name, got, last(), cur, tc.status)
		}
	}
	// The file changes: the old copy is not confirmed.
	next := []byte(`{"ts":2}`)
	if err := os.WriteFile(filepath.Join(dir, "metadata", "timestamp.json"), next, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := o.FetchUnlessSame(ctx, "metadata/timestamp.json", 0, cur); err != nil || !bytes.Equal(got, next) || last() != http.StatusOK {
		t.Errorf("after a change: got %q, %v with status %d, want %q with 200", got, err, last(), next)
	}
	// A copy larger than the caller's limit is not returned from a 304.
	if _, err := o.FetchUnlessSame(ctx, "metadata/timestamp.json", 4, next); err == nil {
		t.Error("a 304 for a copy over maxLen was accepted")
	}
	if !o.ConfirmsCopies() {
		t.Error("ConfirmsCopies = false against Server")
	}
	// An origin without content ETags (nginx tags modification times)
	// sends the body each time, and the client learns it.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"5f3a-8"`)
		w.Write(next)
	}))
	defer plain.Close()
	po := newTestOrigin(t, plain.URL, origin.Config{})
	if got, err := po.FetchUnlessSame(ctx, "metadata/timestamp.json", 0, next); err != nil || !bytes.Equal(got, next) || po.ConfirmsCopies() {
		t.Errorf("untagged origin: got %q, %v, ConfirmsCopies %v; want the body and false", got, err, po.ConfirmsCopies())
	}
	for _, p := range []string{"/metadata/3.root.json", "/manifests/bafkreidef"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if tag := resp.Header.Get("ETag"); tag != "" {
			t.Errorf("GET %s: ETag %q on a file that never changes", p, tag)
		}
	}
}
