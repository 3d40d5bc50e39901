package node

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storkpm/stork/metadata"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// A package published after the daemon last refreshed its metadata is
// found at once, long before the refresh interval ends; a package that
// really is missing is reported with the age and version of the metadata;
// misses do not make the daemon refresh more than once a second.
func TestUnknownPackageRefreshesAtOnce(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "first", "1.0.0", map[string]int{"f": 100})
	clock := &fakeClock{t: time.Now()}
	c := startDaemonWith(t, o, "", func(cfg *Config) {
		cfg.RefreshInterval = time.Hour
		cfg.Now = clock.Now
	})
	ctx := context.Background()
	if _, err := c.Fetch(ctx, "first", nil); err != nil {
		t.Fatal(err)
	}
	o.publish(t, "second", "1.0.0", map[string]int{"s": 100})
	clock.Add(2 * time.Second)
	if _, err := c.Fetch(ctx, "second", nil); err != nil {
		t.Fatalf("fetch of a package published after the last refresh = %v, want it found", err)
	}
	_, err := c.Fetch(ctx, "nosuch", nil)
	if err == nil || !strings.Contains(err.Error(), "not found in signed metadata (repository metadata version 3, refreshed ") {
		t.Errorf("fetch nosuch = %v, want not found with the metadata's version and age", err)
	}
	// Within a second of that refresh, a miss does not refresh again.
	o.publish(t, "third", "1.0.0", map[string]int{"t": 100})
	if _, err := c.Fetch(ctx, "third", nil); !errors.Is(err, metadata.ErrNotFound) && (err == nil || !strings.Contains(err.Error(), "not found")) {
		t.Errorf("fetch third within a second of the last refresh = %v, want not found yet", err)
	}
	clock.Add(2 * time.Second)
	if _, err := c.Fetch(ctx, "third", nil); err != nil {
		t.Errorf("fetch third a second later = %v, want it found", err)
	}
}

// TestStatusWhileMetadataRefreshHangs: while a request waits for a
// metadata refresh that the origin does not answer, status answers at
// once with the last refresh's time and version.
func TestStatusWhileMetadataRefreshHangs(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "p", "1.0.0", map[string]int{"f": 100})
	c := startDaemon(t, o, "") // refreshes before every request
	ctx := context.Background()
	if _, err := c.Fetch(ctx, "p", nil); err != nil {
		t.Fatal(err)
	}
	before, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	o.holdMeta.Store(&hold)
	fetched := make(chan error, 1)
	go func() { _, err := c.Fetch(ctx, "p", nil); fetched <- err }()
	for deadline := time.Now().Add(20 * time.Second); o.held.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the Fetch did not ask the origin for metadata within 20s")
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := c.Status(sctx)
	select {
	case err := <-fetched:
		t.Fatalf("Fetch ended while the origin held the metadata: %v", err)
	default:
	}
	if err != nil {
		t.Errorf("Status while a refresh hangs = %v, want an answer", err)
	} else if st.Metadata.Version != before.Metadata.Version || st.Metadata.Version == 0 {
		t.Errorf("metadata version %d while a refresh hangs, want the last one, %d", st.Metadata.Version, before.Metadata.Version)
	}
	close(hold)
	if err := <-fetched; err != nil {
		t.Fatalf("Fetch once the origin answered = %v", err)
	}
}
