package origin_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storkpm/stork/transfer/origin"
)

// testRepoDir lays out a small repository, a secret beside it, and
// symlinks pointing inside and outside.
func testRepoDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	repo := filepath.Join(base, "repo")
	files := map[string]string{
		"chunks/bafkreiabc":         "0123456789",
		"manifests/bafkreidef":      `{"stork_manifest":1}`,
		"metadata/timestamp.json":   `{"ts":1}`,
		"metadata/3.root.json":      `{"root":3}`,
		"metadata/2.snapshot.json":  `{"snap":2}`,
		"metadata/root.json":        `{"root":"latest"}`,
		"metadata/nested/file.json": `{}`,
	}
	for p, c := range files {
		full := filepath.Join(repo, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "secret"), []byte("outside the repo"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, os.Symlink(filepath.Join(base, "secret"), filepath.Join(repo, "chunks", "abs-escape")))
	must(t, os.Symlink("../../secret", filepath.Join(repo, "chunks", "rel-escape")))
	must(t, os.Symlink(base, filepath.Join(repo, "updir")))
	must(t, os.Symlink("bafkreiabc", filepath.Join(repo, "chunks", "inside")))
	return repo
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// rawGet sends target exactly as given (no client-side cleaning) and
// returns the status code and body.
func rawGet(t *testing.T, addr, method, target string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", method, target, addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	t.Parallel()
	srv := serveRepo(t, testRepoDir(t), nil)
	addr := strings.TrimPrefix(srv.URL, "http://")
	cases := []struct {
		name, method, target string
		status               int
		body                 string // checked when not empty
	}{
		{"chunk", "GET", "/chunks/bafkreiabc", 200, "0123456789"},
		{"manifest", "GET", "/manifests/bafkreidef", 200, `{"stork_manifest":1}`},
		{"symlink inside", "GET", "/chunks/inside", 200, "0123456789"},
		{"post", "POST", "/chunks/bafkreiabc", 405, ""},
		{"put", "PUT", "/chunks/new", 405, ""},
		{"delete", "DELETE", "/chunks/bafkreiabc", 405, ""},
		{"root", "GET", "/", 404, ""},
		{"directory", "GET", "/chunks", 404, ""},
		{"directory slash", "GET", "/chunks/", 404, ""},
		{"missing", "GET", "/chunks/nope", 404, ""},
		{"dotdot", "GET", "/../secret", 400, ""},
		{"inner dotdot", "GET", "/chunks/../../secret", 400, ""},
		{"encoded dotdot", "GET", "/%2e%2e/secret", 400, ""},
		{"encoded slash dotdot", "GET", "/chunks%2f..%2f..%2fsecret", 400, ""},
		{"double slash", "GET", "//secret", 400, ""},
		{"absolute symlink out", "GET", "/chunks/abs-escape", 404, ""},
		{"relative symlink out", "GET", "/chunks/rel-escape", 404, ""},
		{"through symlinked dir", "GET", "/updir/secret", 404, ""},
	}
	for _, tc := range cases {
		status, body := rawGet(t, addr, tc.method, tc.target)
		if status != tc.status {
			t.Errorf("%s: %s %s = %d, want %d", tc.name, tc.method, tc.target, status, tc.status)
		}
		if tc.body != "" && body != tc.body {
			t.Errorf("%s: %s %s body = %q, want %q", tc.name, tc.method, tc.target, body, tc.body)
		}
		if strings.Contains(body, "outside the repo") {
			t.Errorf("%s: %s %s leaked a file outside the repository", tc.name, tc.method, tc.target)
		}
	}
}

func TestServerHeaders(t *testing.T) {
	t.Parallel()
	srv := serveRepo(t, testRepoDir(t), nil)
	cases := []struct{ path, cache string }{
		{"/chunks/bafkreiabc", "immutable"},
		{"/manifests/bafkreidef", "immutable"},
		{"/metadata/3.root.json", "immutable"},
		{"/metadata/2.snapshot.json", "immutable"},
		{"/metadata/timestamp.json", "no-cache"},
		{"/metadata/root.json", "no-cache"},
	}
	for _, tc := range cases {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Cache-Control"); !strings.Contains(got, tc.cache) {
			t.Errorf("GET %s Cache-Control = %q, want %q", tc.path, got, tc.cache)
		}
		if resp.Header.Get("Content-Length") == "" {
			t.Errorf("GET %s: no Content-Length", tc.path)
		}
	}
}

func TestServerRangeAndHead(t *testing.T) {
	t.Parallel()
	srv := serveRepo(t, testRepoDir(t), nil)
	req, _ := http.NewRequest("GET", srv.URL+"/chunks/bafkreiabc", nil)
	req.Header.Set("Range", "bytes=2-5")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(b) != "2345" || resp.Header.Get("Content-Range") != "bytes 2-5/10" {
		t.Errorf("GET Range bytes=2-5 = %d %q (Content-Range %q), want 206 \"2345\" bytes 2-5/10", resp.StatusCode, b, resp.Header.Get("Content-Range"))
	}
	resp, err = http.Head(srv.URL + "/chunks/bafkreiabc")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 10 || len(b) != 0 {
		t.Errorf("HEAD = %d, Content-Length %d, %d body bytes; want 200, 10, 0", resp.StatusCode, resp.ContentLength, len(b))
	}
}

func TestNewServerRejectsBadDir(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	for _, d := range []string{"", f, filepath.Join(t.TempDir(), "missing")} {
		if _, err := origin.NewServer(origin.ServerConfig{Dir: d}); err == nil {
			t.Errorf("NewServer(%q) = nil error, want one", d)
		}
	}
}

// TestServerRun: Run serves until its context ends, then returns nil.
func TestServerRun(t *testing.T) {
	t.Parallel()
	s, err := origin.NewServer(origin.ServerConfig{Dir: testRepoDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ln) }()
	o := newTestOrigin(t, "http://"+ln.Addr().String(), origin.Config{})
	if b, err := o.Fetch(ctx, "metadata/timestamp.json", 0); err != nil || string(b) != `{"ts":1}` {
		t.Fatalf("Fetch through Run = %q, %v", b, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run() after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Errorf("listener still accepting after Run returned")
	}
}

// TestServerRate: a rate-capped server cannot send faster than its cap,
// over all requests together. Only a lower bound on time is checked, so a
// slow machine cannot make it fail.
func TestServerRate(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "chunks"), 0o755); err != nil {
		t.Fatal(err)
	}
	blob := bytes.Repeat([]byte("r"), 256<<10)
	if err := os.WriteFile(filepath.Join(dir, "chunks", "blob"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := origin.NewServer(origin.ServerConfig{Dir: dir, Rate: -1}); err == nil {
		t.Error("NewServer(Rate: -1) succeeded, want an error")
	}
	srv, err := origin.NewServer(origin.ServerConfig{Dir: dir, Rate: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ { // 1 MiB in all at 1 MiB/s, less the first burst
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(ts.URL + "/chunks/blob")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(got, blob) {
				t.Errorf("GET through the rate cap: %d bytes, %v", len(got), err)
			}
		}()
	}
	wg.Wait()
	if el := time.Since(start); el < 800*time.Millisecond {
		t.Errorf("4 x 256 KiB at 1 MiB/s took %v, want at least 0.8s", el)
	}
}

// TestServerLogsStatusSent: the request log names the status sent, a 304
// for a copy confirmed and a 206 for a range as well as a 200.
func TestServerLogsStatusSent(t *testing.T) {
	t.Parallel()
	srv, statuses := serveRepoLogged(t, testRepoDir(t))
	get := func(p string, hdr ...string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+p, nil)
		for k := 0; k+1 < len(hdr); k += 2 {
			req.Header.Set(hdr[k], hdr[k+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get("/metadata/timestamp.json")
	get("/metadata/timestamp.json", "If-None-Match", origin.ETag([]byte(`{"ts":1}`)))
	get("/chunks/bafkreiabc", "Range", "bytes=0-3")
	get("/chunks/none")
	if got, want := statuses(), []int{200, 304, 206, 404}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("logged statuses %v, want %v", got, want)
	}
}

// serveRepoLogged serves dir with a Server on an httptest server, and
// returns the statuses its request log names so far, in order.
func serveRepoLogged(t *testing.T, dir string) (*httptest.Server, func() []int) {
	t.Helper()
	var mu sync.Mutex
	var logBuf bytes.Buffer
	s, err := origin.NewServer(origin.ServerConfig{Dir: dir, Logger: slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logBuf}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, func() []int {
		mu.Lock()
		defer mu.Unlock()
		var got []int
		for _, line := range strings.Split(strings.TrimSpace(logBuf.String()), "\n") {
			var rec struct {
				Msg    string `json:"msg"`
				Status int    `json:"status"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "request" {
				got = append(got, rec.Status)
			}
		}
		return got
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
