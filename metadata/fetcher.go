package metadata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// Fetcher is the pluggable source of repository files: the HTTP origin now,
// peers later. Nothing a Fetcher returns is trusted; the client verifies
// every byte against signed metadata.
type Fetcher interface {
	// Fetch returns the repository file at path (slash-separated, relative
	// to the repository root, e.g. "metadata/1.root.json" or
	// "manifests/<cid>"), reading at most maxLen bytes (maxLen > 0). A file
	// longer than maxLen is an error wrapping ErrTooLarge. A missing file is
	// an error wrapping ErrNotFound (a fetcher with several sources says not
	// found only after all of them have).
	Fetch(ctx context.Context, path string, maxLen int64) ([]byte, error)
}

var (
	_ Fetcher = DirFetcher{}
	_ Fetcher = (*MemFetcher)(nil)
	_ Fetcher = (*HTTPFetcher)(nil)
)

// cleanRepoPath checks that p is a relative, clean, slash-separated path
// inside the repository.
func cleanRepoPath(p string) (string, error) {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || path.Clean(p) != p || p == "." ||
		p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("fetch %q: %w: not a clean relative repository path", p, ErrInvalidPath)
	}
	return p, nil
}

// readLimited reads r up to maxLen bytes and fails with ErrTooLarge if there
// are more.
func readLimited(r io.Reader, p string, maxLen int64) ([]byte, error) {
	if maxLen <= 0 {
		return nil, fmt.Errorf("fetch %s: %w: no length limit given", p, ErrTooLarge)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxLen+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", p, err)
	}
	if int64(len(data)) > maxLen {
		return nil, fmt.Errorf("fetch %s: %w: more than %d bytes", p, ErrTooLarge, maxLen)
	}
	return data, nil
}

// DirFetcher reads a repository directory on disk (tests, file:// use).
type DirFetcher struct{ Dir string }

// Fetch implements Fetcher.
func (f DirFetcher) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := cleanRepoPath(p); err != nil {
		return nil, err
	}
	file, err := os.Open(filepath.Join(f.Dir, filepath.FromSlash(p)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("fetch %s: %w", p, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", p, err)
	}
	defer file.Close()
	if st, err := file.Stat(); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("fetch %s: %w: not a regular file", p, ErrNotFound)
	}
	return readLimited(file, p, maxLen)
}

// MemFetcher serves repository files from memory: the in-memory fake for
// tests. It is safe for concurrent use.
type MemFetcher struct {
	mu    sync.Mutex
	files map[string][]byte
}

// NewMemFetcher returns an empty MemFetcher.
func NewMemFetcher() *MemFetcher { return &MemFetcher{files: map[string][]byte{}} }

// Put stores a copy of data at path p.
func (f *MemFetcher) Put(p string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.files == nil {
		f.files = map[string][]byte{}
	}
	f.files[p] = bytes.Clone(data)
}

// Delete removes the file at path p.
func (f *MemFetcher) Delete(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.files, p)
}

// Fetch implements Fetcher.
func (f *MemFetcher) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	data, ok := f.files[p]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("fetch %s: %w", p, ErrNotFound)
	}
	return readLimited(bytes.NewReader(data), p, maxLen)
}

// HTTPFetcher reads repository files from a static HTTP server (the origin):
// BaseURL + "/" + path. 404 and 410 are ErrNotFound.
type HTTPFetcher struct {
	BaseURL string
	Client  *http.Client // nil: http.DefaultClient
}

// Fetch implements Fetcher.
func (f *HTTPFetcher) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	if _, err := cleanRepoPath(p); err != nil {
		return nil, err
	}
	u, err := url.JoinPath(f.BaseURL, p)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: bad base url %q: %w", p, f.BaseURL, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return nil, fmt.Errorf("fetch %s: %w (http %d)", u, ErrNotFound, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("fetch %s: http status %s", u, resp.Status)
	}
	if maxLen > 0 && resp.ContentLength > maxLen {
		return nil, fmt.Errorf("fetch %s: %w: content length %d > %d", u, ErrTooLarge, resp.ContentLength, maxLen)
	}
	return readLimited(resp.Body, u, maxLen)
}

// CheckingFetcher is an optional Fetcher extension for a fetcher with
// several sources (the origin and peers). The client uses it for the TUF
// metadata files, whose copies it can check before one is chosen, so that
// a source that answers first with a bad copy does not win; it keeps using
// Fetch for manifests, which a fetcher checks itself against the CID in
// their path.
//
// Both methods return an error wrapping ErrNotFound when the origin says
// the file does not exist and no source gave a copy that check accepts,
// and one wrapping both ErrNotFound and ErrUnavailable when the origin
// could not be reached and no peer gave such a copy. When the origin
// answered with a copy check refuses and no other source did better, the
// error is check's.
type CheckingFetcher interface {
	Fetcher
	// FetchChecked asks its sources for path (a file whose name pins its
	// content: N.ROLE.json) and returns the first copy check accepts.
	FetchChecked(ctx context.Context, path string, maxLen int64, check func([]byte) error) ([]byte, error)
	// FetchNewest asks its sources for path (a file whose name does not
	// pin its content: timestamp.json) and returns, of the copies check
	// accepts, the one with the highest version check reports. The
	// origin's accepted copy ends the wait; without it, the fetcher waits
	// a bounded time for its peers.
	FetchNewest(ctx context.Context, path string, maxLen int64, check func([]byte) (int64, error)) ([]byte, error)
}
