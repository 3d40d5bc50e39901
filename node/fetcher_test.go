package node

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
	"github.com/storkpm/stork/transfer/swarm"
)

// fakeFilePeers serves the files each peer has and records who was asked.
type fakeFilePeers struct {
	all, holders []swarm.PeerID
	has          map[swarm.PeerID][]byte
	mu           sync.Mutex
	asked        []swarm.PeerID
	onAsk        func(swarm.PeerID)
	// pulls: what each peer answers to PullFile (a peer not in it never
	// answers); pulled: the peers pulled from, in order.
	pulls  map[swarm.PeerID][]byte
	pulled []swarm.PeerID
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

// PullFile records the pull and answers as FetchFile does, from the
// peer's pulls map first.
func (f *fakeFilePeers) PullFile(ctx context.Context, to swarm.PeerID, path string, maxLen int64) ([]byte, error) {
	f.mu.Lock()
	f.pulled = append(f.pulled, to)
	b, ok := f.pulls[to]
	f.mu.Unlock()
	if ok {
		return b, nil
	}
	<-ctx.Done() // a silent member
	return nil, ctx.Err()
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

// TestFilePulledFromRankedMember: a file whose bytes never change is
// asked of the members ranked before this host, one after the other,
// each for at most pullWait, and of the origin only when none answered
// with a copy that checks; the timestamp is never pulled.
func TestFilePulledFromRankedMember(t *testing.T) {
	data := []byte("a manifest's bytes")
	c := metadata.SumCID(data)
	p := metadata.ManifestsDir + "/" + c.String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var originAsks atomic.Int64
	origin := originFunc(func(context.Context, string, int64) ([]byte, error) {
		originAsks.Add(1)
		return data, nil
	})
	newF := func(peers *fakeFilePeers, ranked ...swarm.PeerID) *sourcesFetcher {
		f := newSourcesFetcher(origin, "http://origin", peers, nil, slog.New(slog.DiscardHandler))
		f.pullWait = 50 * time.Millisecond
		f.coop = func(key uint64, max int) []swarm.PeerID {
			if key != policy.ChunkKey([]byte(p)) && key != policy.ChunkKey([]byte("metadata/timestamp.json")) {
				t.Errorf("ranked for key %d, want the path's", key)
			}
			return ranked[:min(max, len(ranked))]
		}
		return f
	}

	// The first-ranked is silent, the second answers: no origin request.
	peers := &fakeFilePeers{pulls: map[swarm.PeerID][]byte{"b": data}}
	b, err := newF(peers, "a", "b", "c").Fetch(ctx, p, 1<<20)
	if err != nil || string(b) != string(data) {
		t.Fatalf("Fetch(%s) = %q, %v", p, b, err)
	}
	if !slices.Equal(peers.pulled, []swarm.PeerID{"a", "b"}) || originAsks.Load() != 0 {
		t.Errorf("pulled from %v, origin asked %d times; want a then b, and no origin request", peers.pulled, originAsks.Load())
	}

	// The silent member is not asked again for a while: the next file
	// it ranks first for goes to the second at once.
	f := newF(peers, "a", "b")
	f.quiet = map[swarm.PeerID]time.Time{"a": time.Now().Add(time.Hour)}
	peers.pulled = nil
	if _, err := f.Fetch(ctx, p, 1<<20); err != nil || !slices.Equal(peers.pulled, []swarm.PeerID{"b"}) {
		t.Errorf("a member quiet: err %v, pulled from %v, want b alone", err, peers.pulled)
	}
	g := newF(peers, "a", "b")
	peers.pulled = nil
	g.Fetch(ctx, p, 1<<20)
	if _, err := g.Fetch(ctx, p, 1<<20); err != nil || !slices.Equal(peers.pulled, []swarm.PeerID{"a", "b", "b"}) {
		t.Errorf("after a silent pull: err %v, pulled from %v, want a, b, then b alone", err, peers.pulled)
	}

	// A copy that does not check is refused, and after filePullRanks
	// members the origin is asked.
	peers = &fakeFilePeers{pulls: map[swarm.PeerID][]byte{"a": []byte("forged")}}
	b, err = newF(peers, "a", "b", "c").Fetch(ctx, p, 1<<20)
	if err != nil || string(b) != string(data) {
		t.Fatalf("Fetch(%s) with a forged pull = %q, %v", p, b, err)
	}
	if !slices.Equal(peers.pulled, []swarm.PeerID{"a", "b"}) || originAsks.Load() != 1 {
		t.Errorf("pulled from %v, origin asked %d times; want a, b, then the origin once", peers.pulled, originAsks.Load())
	}

	// Ranked first (nobody before this host): the origin at once.
	peers = &fakeFilePeers{}
	if _, err := newF(peers).Fetch(ctx, p, 1<<20); err != nil || len(peers.pulled) != 0 || originAsks.Load() != 2 {
		t.Errorf("ranked first: err %v, pulled from %v, origin asked %d times; want the origin alone", err, peers.pulled, originAsks.Load())
	}

	// The timestamp is the origin's to tell: never pulled.
	peers = &fakeFilePeers{pulls: map[swarm.PeerID][]byte{"a": data}}
	f = newF(peers, "a")
	if _, err := f.FetchNewest(ctx, "metadata/timestamp.json", 1<<20, func([]byte) (int64, error) { return 1, nil }); err != nil || len(peers.pulled) != 0 {
		t.Errorf("timestamp: err %v, pulled from %v; want no pull", err, peers.pulled)
	}
}

// confirmingOrigin serves timestamp.json as httporigin.Client with
// Server's ETags does: the copy a caller holds comes back without a body
// when it is the one served. It records the copies it was asked to
// confirm and the body bytes it sent.
type confirmingOrigin struct {
	mu      sync.Mutex
	current []byte
	haves   [][]byte
	sent    int
	down    bool // refuses every request
}

func (o *confirmingOrigin) ConfirmsCopies() bool { return true }

func (o *confirmingOrigin) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	return o.FetchUnlessSame(ctx, p, maxLen, nil)
}

func (o *confirmingOrigin) FetchUnlessSame(_ context.Context, p string, _ int64, have []byte) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.down {
		return nil, errors.New("dial tcp: connection refused")
	}
	o.haves = append(o.haves, have)
	if bytes.Equal(have, o.current) {
		return have, nil
	}
	o.sent += len(o.current)
	return o.current, nil
}

// TestTimestampPulledThenConfirmed: with an origin that confirms copies,
// timestamp.json is pulled from the member ranked first and the origin
// confirms that copy (no body sent); a member's stale copy is replaced
// by the origin's, a forged one is refused; the origin is asked every
// time. A member answers pulls with the copy the origin sent or
// confirmed within tsKeep, and then asks it again.
func TestTimestampPulledThenConfirmed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v2, v3 := []byte(`{"v":2}`), []byte(`{"v":3}`)
	check := func(b []byte) (int64, error) {
		switch {
		case bytes.Equal(b, v2):
			return 2, nil
		case bytes.Equal(b, v3):
			return 3, nil
		}
		return 0, errors.New("bad signature")
	}
	o := &confirmingOrigin{current: v3}
	newF := func(peers *fakeFilePeers) *sourcesFetcher {
		f := newSourcesFetcher(o, "http://origin", peers, nil, slog.New(slog.DiscardHandler))
		f.pullWait = 50 * time.Millisecond
		f.coop = func(key uint64, max int) []swarm.PeerID {
			if key != policy.ChunkKey([]byte(metadata.TimestampPath)) {
				t.Errorf("ranked for key %d, want timestamp.json's", key)
			}
			return []swarm.PeerID{"a"}
		}
		return f
	}
	for _, tc := range []struct {
		name   string
		pulled []byte // the member's copy
		sent   int    // body bytes the origin sends
	}{
		{"the member's copy is current", v3, 0},
		{"the member's copy is stale", v2, len(v3)},
		{"the member's copy is forged", []byte(`{"v":9}`), len(v3)},
	} {
		o.sent, o.haves = 0, nil
		// Other peers hold copies too; with the member's copy taken,
		// none is asked.
		peers := &fakeFilePeers{pulls: map[swarm.PeerID][]byte{"a": tc.pulled},
			all: []swarm.PeerID{"x", "y"}, has: map[swarm.PeerID][]byte{"x": v2, "y": v3}}
		f := newF(peers)
		b, err := f.FetchNewest(ctx, metadata.TimestampPath, 1<<20, check)
		if err != nil || !bytes.Equal(b, v3) {
			t.Fatalf("%s: FetchNewest = %q, %v, want the origin's %q", tc.name, b, err, v3)
		}
		if !slices.Equal(peers.pulled, []swarm.PeerID{"a"}) || len(o.haves) != 1 || o.sent != tc.sent {
			t.Errorf("%s: pulled from %v, origin asked %d times, sent %d body bytes; want a, once, %d", tc.name, peers.pulled, len(o.haves), o.sent, tc.sent)
		}
		if tc.name == "the member's copy is current" && len(peers.asked) != 0 {
			t.Errorf("%s: peers %v asked beside the member and the origin", tc.name, peers.asked)
		}
		// The next refresh has the origin confirm the copy taken.
		o.sent = 0
		if _, err := f.FetchNewest(ctx, metadata.TimestampPath, 1<<20, check); err != nil || o.sent != 0 || !bytes.Equal(o.haves[len(o.haves)-1], v3) {
			t.Errorf("%s: next refresh: err %v, %d body bytes sent, asked to confirm %q; want none sent for %q", tc.name, err, o.sent, o.haves[len(o.haves)-1], v3)
		}
	}

	// The origin down: the member's copy (checked) is taken.
	o.down = true
	peers := &fakeFilePeers{pulls: map[swarm.PeerID][]byte{"a": v3}}
	if b, err := newF(peers).FetchNewest(ctx, metadata.TimestampPath, 1<<20, check); err != nil || !bytes.Equal(b, v3) {
		t.Errorf("origin down: FetchNewest = %q, %v, want the member's %q", b, err, v3)
	}
	o.down = false

	// Answering members' pulls: the origin's copy answers those of the
	// next tsKeep; after it the origin is asked again, to confirm it.
	o.sent, o.haves = 0, nil
	f := newF(&fakeFilePeers{})
	f.tsFlights.keep = 100 * time.Millisecond
	for k := range 3 {
		if k == 2 {
			time.Sleep(150 * time.Millisecond)
		}
		if b, err := f.timestampFromOrigin(ctx, o, 1<<20, true); err != nil || !bytes.Equal(b, v3) {
			t.Fatalf("fromOrigin(timestamp) = %q, %v", b, err)
		}
	}
	if len(o.haves) != 2 || o.haves[0] != nil || !bytes.Equal(o.haves[1], v3) || o.sent != len(v3) {
		t.Errorf("three pulls answered, the last after the keep: origin asked to confirm %q, sent %d bytes; want nothing then %q, %d bytes", o.haves, o.sent, v3, len(v3))
	}
}

// TestRefusedOriginCopyNotKept: an origin copy of a fixed-version file
// that its caller refused is not kept for the next fetch (nor for a
// peer's pull): the next fetch asks the origin again.
func TestRefusedOriginCopyNotKept(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var asks atomic.Int64
	origin := originFunc(func(context.Context, string, int64) ([]byte, error) {
		if asks.Add(1) == 1 {
			return []byte("torn"), nil
		}
		return []byte("good"), nil
	})
	f := newSourcesFetcher(origin, "http://origin", nil, nil, slog.New(slog.DiscardHandler))
	check := func(b []byte) error {
		if string(b) != "good" {
			return metadata.ErrHashMismatch
		}
		return nil
	}
	const p = "metadata/3.snapshot.json"
	if _, err := f.FetchChecked(ctx, p, 1<<20, check); err == nil {
		t.Fatal("the torn copy was accepted")
	}
	if b, err := f.FetchChecked(ctx, p, 1<<20, check); err != nil || string(b) != "good" || asks.Load() != 2 {
		t.Errorf("second fetch = %q, %v after %d origin requests, want the origin's good copy from a second request", b, err, asks.Load())
	}
	if b, err := f.fromOrigin(ctx, p, 1<<20); err != nil || string(b) != "good" || asks.Load() != 2 {
		t.Errorf("a peer's pull = %q, %v after %d origin requests, want the kept good copy", b, err, asks.Load())
	}
}
