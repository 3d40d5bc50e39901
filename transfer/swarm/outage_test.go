package swarm_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// URL names the test origin in errors and logs.
func (o *swarmOrigin) URL() string { return "http://origin.test" }

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(level, msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range strings.Split(s.b.String(), "\n") {
		if strings.Contains(l, "level="+level) && strings.Contains(l, msg) {
			n++
		}
	}
	return n
}

// halfSeed makes a node hold the first half of p's chunks (by manifest
// order) and announce the package.
func halfSeed(c *cluster, p *testPackage) (*node, int64) {
	n := c.add("half", nil, nil)
	half := map[cid.Cid][]byte{}
	var bytes int64
	for k, r := range p.m.UniqueChunks() {
		if k < len(p.chunks)/2 {
			half[r.CID] = p.chunks[r.CID]
			bytes += r.Length
		}
	}
	n.store.AddManifest(p.c, p.m)
	n.store.AddChunks(half)
	n.swarm.Announce(p.c)
	return n, bytes
}

// TestSwarmOriginOutage: with the origin unreachable, a download takes
// what a peer holds, then waits for the origin in a state it reports,
// logging the outage once; when the origin answers again it completes
// without a restart.
func TestSwarmOriginOutage(t *testing.T) {
	t.Parallel()
	p := newTestPackage(t, 21, 64<<10, 2<<20)
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	_, held := halfSeed(c, p)
	origin := newSwarmOrigin(p, 0, time.Millisecond)
	origin.down.Store(true)
	var logs syncBuffer
	n := c.add("dl", origin, func(cfg *swarm.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		// Above the origin policy's fallback delay (2s), which paces the
		// origin once the members are known; it must not end a wait for
		// the origin.
		cfg.NoProgressTimeout = 3 * time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := n.download(ctx, p)
		done <- err
	}()
	var st swarm.DownloadState
	for deadline := time.Now().Add(30 * time.Second); ; {
		var ok bool
		st, ok = n.swarm.DownloadState(p.c)
		if ok && st.Done == held && !st.WaitingOriginSince.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("download state %+v (running %v), want the peer's %d bytes and a wait for the origin", st, ok, held)
		}
		select {
		case err := <-done:
			t.Fatalf("download ended before the origin came back: %v", err)
		default:
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(3500 * time.Millisecond) // probes fail, past NoProgressTimeout
	select {
	case err := <-done:
		t.Fatalf("download ended while waiting for the origin: %v", err)
	default:
	}
	if w := logs.count("WARN", "origin unreachable"); w != 1 {
		t.Errorf("%d warnings of the outage, want 1 (not one per chunk)\n%s", w, logs.b.String())
	}
	origin.down.Store(false)
	if err := <-done; err != nil {
		t.Fatalf("download after the origin came back = %v", err)
	}
	checkCopy(t, n, p)
	if logs.count("INFO", "origin reachable again") != 1 {
		t.Errorf("the end of the outage is not logged once\n%s", logs.b.String())
	}
}

// TestSwarmOriginDeadline: a download that needs an unreachable origin
// fails once OriginDeadline has passed with nothing arriving, with an
// error naming the origin.
func TestSwarmOriginDeadline(t *testing.T) {
	t.Parallel()
	p := newTestPackage(t, 22, 64<<10, 1<<20)
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	halfSeed(c, p)
	origin := newSwarmOrigin(p, 0, time.Millisecond)
	origin.down.Store(true)
	n := c.add("dl", origin, func(cfg *swarm.Config) { cfg.OriginDeadline = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := n.download(ctx, p)
	if !errors.Is(err, swarm.ErrOriginUnavailable) || !strings.Contains(err.Error(), origin.URL()) {
		t.Fatalf("Download with the origin gone = %v, want ErrOriginUnavailable naming %s", err, origin.URL())
	}
	if ctx.Err() != nil {
		t.Fatal("the download ran into the test's own timeout")
	}
}
