package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
