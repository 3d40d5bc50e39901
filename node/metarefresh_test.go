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
