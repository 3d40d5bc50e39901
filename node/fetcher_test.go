package node

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/swarm"
)

// fakeFilePeers serves the files each peer has and records who was asked.
type fakeFilePeers struct {
	all, holders []swarm.PeerID
	has          map[swarm.PeerID][]byte
	mu           sync.Mutex
	asked        []swarm.PeerID
	onAsk        func(swarm.PeerID)
}

func (f *fakeFilePeers) FilePeers() []swarm.PeerID              { return slices.Clone(f.all) }
func (f *fakeFilePeers) ManifestHolders(cid.Cid) []swarm.PeerID { return slices.Clone(f.holders) }
func (f *fakeFilePeers) FindProviders(context.Context, cid.Cid) <-chan swarm.PeerID {
	ch := make(chan swarm.PeerID)
	close(ch)
	return ch
}

func (f *fakeFilePeers) FetchFile(ctx context.Context, to swarm.PeerID, path string, maxLen int64) ([]byte, error) {
	f.mu.Lock()
	f.asked = append(f.asked, to)
	f.mu.Unlock()
	if f.onAsk != nil {
		f.onAsk(to)
	}
	if b, ok := f.has[to]; ok {
		return b, nil
	}
	return nil, errors.New("not found")
}

func (f *fakeFilePeers) askedPeers() []swarm.PeerID {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

// originFunc is a metadata.Fetcher.
type originFunc func(ctx context.Context, p string, maxLen int64) ([]byte, error)

func (o originFunc) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	return o(ctx, p, maxLen)
}

// TestManifestAsksListedPeersFirst: a manifest is asked of the origin and
// of the peers whose have-lists name its package; the other connected
// peers (who would mostly refuse) only once the origin failed.
func TestManifestAsksListedPeersFirst(t *testing.T) {
	data := []byte("a manifest's bytes")
	c := metadata.SumCID(data)
	p := metadata.ManifestsDir + "/" + c.String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The origin answers once the listed peer (who refuses) was asked:
	// nobody else is asked meanwhile.
	asked := make(chan struct{})
	var once sync.Once
	peers := &fakeFilePeers{all: []swarm.PeerID{"a", "b", "h"}, holders: []swarm.PeerID{"h"},
		onAsk: func(id swarm.PeerID) {
			if id == "h" {
				once.Do(func() { close(asked) })
			}
		}}
	origin := originFunc(func(ctx context.Context, _ string, _ int64) ([]byte, error) {
		select {
		case <-asked:
			return data, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	f := newSourcesFetcher(origin, "http://origin", peers, nil, slog.New(slog.DiscardHandler))
	f.unlistedWait = time.Hour
	b, err := f.Fetch(ctx, p, 1<<20)
	if err != nil || string(b) != string(data) {
		t.Fatalf("Fetch(%s) = %q, %v", p, b, err)
	}
	if got := peers.askedPeers(); !slices.Equal(got, []swarm.PeerID{"h"}) {
		t.Errorf("peers asked with the origin up: %v, want only the one whose have-list names the package", got)
	}

	// The origin fails: the other connected peers are asked at once.
	peers = &fakeFilePeers{all: []swarm.PeerID{"a", "b"}, has: map[swarm.PeerID][]byte{"b": data}}
	origin = originFunc(func(context.Context, string, int64) ([]byte, error) {
		return nil, errors.New("connection refused")
	})
	f = newSourcesFetcher(origin, "http://origin", peers, nil, slog.New(slog.DiscardHandler))
	f.unlistedWait = time.Hour
	b, err = f.Fetch(ctx, p, 1<<20)
	if err != nil || string(b) != string(data) {
		t.Fatalf("Fetch(%s) with the origin down = %q, %v, want peer b's copy", p, b, err)
	}
}
