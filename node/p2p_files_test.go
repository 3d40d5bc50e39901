package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storkpm/stork/metadata"
)

// TestFilesProtocol: a host serves what its lookup holds, within the
// asker's size limit, refuses the rest, and rate-limits each peer.
func TestFilesProtocol(t *testing.T) {
	server := testP2P(t, nil)
	files := map[string][]byte{"metadata/timestamp.json": []byte(`{"ts":1}`), "manifests/x": []byte(strings.Repeat("m", 1000))}
	server.SetFileServer(func(p string, maxLen int64) ([]byte, error) {
		b, ok := files[p]
		switch {
		case !ok:
			return nil, fmt.Errorf("%s: %w", p, metadata.ErrNotFound)
		case int64(len(b)) > maxLen:
			return nil, fmt.Errorf("%s: %w", p, metadata.ErrTooLarge)
		}
		return b, nil
	})
	client := testP2P(t, nil, server)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if peers := client.FilePeers(); len(peers) != 1 || peers[0] != server.ID() {
		t.Fatalf("FilePeers = %v, want the server", peers)
	}
	tests := []struct {
		name   string
		path   string
		maxLen int64
		want   error
	}{
		{"held", "metadata/timestamp.json", 100, nil},
		{"held, at the limit", "manifests/x", 1000, nil},
		{"over the asker's limit", "manifests/x", 999, metadata.ErrTooLarge},
		{"not held", "metadata/9.root.json", 100, metadata.ErrNotFound},
		{"path too long", strings.Repeat("a", maxFilesPath+1), 100, metadata.ErrInvalidPath},
	}
	for _, tt := range tests {
		b, err := client.FetchFile(ctx, server.ID(), tt.path, tt.maxLen)
		if !errors.Is(err, tt.want) || (err == nil && string(b) != string(files[tt.path])) {
			t.Errorf("%s: FetchFile(%q) = %d bytes, %v; want %v", tt.name, tt.path, len(b), err, tt.want)
		}
	}
	busy := 0
	for range 2 * filesBurst {
		if _, err := client.FetchFile(ctx, server.ID(), "metadata/timestamp.json", 100); errors.Is(err, ErrFilesBusy) {
			busy++
		} else if err != nil {
			t.Fatalf("FetchFile in a burst = %v", err)
		}
	}
	if busy == 0 {
		t.Errorf("%d requests at once were all served, want the peer rate-limited past %d", 2*filesBurst, filesBurst)
	}
	server.SetFileServer(nil)
	if _, err := client.FetchFile(ctx, server.ID(), "metadata/timestamp.json", 100); err == nil {
		t.Error("FetchFile after the server stopped serving succeeded")
	}
}

// TestFilesPullProtocol: a pull is answered from what the host holds, or
// else by its puller (the origin's copy, fetched for the asker), but a
// pull of timestamp.json always by its puller: the trusted copy the host
// holds may be older than the origin's, which the asker wants.
func TestFilesPullProtocol(t *testing.T) {
	server := testP2P(t, nil)
	held := map[string][]byte{metadata.TimestampPath: []byte(`{"ts":1}`), "manifests/x": []byte("held")}
	server.SetFileServer(func(p string, maxLen int64) ([]byte, error) {
		if b, ok := held[p]; ok {
			return b, nil
		}
		return nil, fmt.Errorf("%s: %w", p, metadata.ErrNotFound)
	})
	var mu sync.Mutex
	var pulled []string
	server.SetFilePuller(func(_ context.Context, p string, _ int64) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		pulled = append(pulled, p)
		return []byte("origin's " + p), nil
	})
	client := testP2P(t, nil, server)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct{ path, want string }{
		{"manifests/x", "held"},
		{"manifests/y", "origin's manifests/y"},
		{metadata.TimestampPath, "origin's " + metadata.TimestampPath},
	} {
		if b, err := client.PullFile(ctx, server.ID(), tc.path, 100); err != nil || string(b) != tc.want {
			t.Errorf("PullFile(%s) = %q, %v, want %q", tc.path, b, err, tc.want)
		}
	}
	if b, err := client.FetchFile(ctx, server.ID(), metadata.TimestampPath, 100); err != nil || string(b) != `{"ts":1}` {
		t.Errorf("FetchFile(timestamp) = %q, %v, want the held copy", b, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"manifests/y", metadata.TimestampPath}; fmt.Sprint(pulled) != fmt.Sprint(want) {
		t.Errorf("the puller was asked for %v, want %v", pulled, want)
	}
}
