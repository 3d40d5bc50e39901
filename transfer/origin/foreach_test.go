package origin

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

// TestForEach: every item runs when none fails; after the first error the
// items not yet begun are passed over and that error is returned; a
// cancelled context's cause is returned.
func TestForEach(t *testing.T) {
	items := make([]int, 100)
	for i := range items {
		items[i] = i
	}
	var sum atomic.Int64
	if err := forEach(context.Background(), 4, items, func(_ context.Context, i int) error {
		sum.Add(int64(i))
		return nil
	}); err != nil || sum.Load() != 4950 {
		t.Fatalf("forEach(no errors) = %v, sum %d, want nil, 4950", err, sum.Load())
	}

	boom := errors.New("boom")
	var ran atomic.Int64
	err := forEach(context.Background(), 1, items, func(_ context.Context, i int) error {
		ran.Add(1)
		if i == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("forEach(error at 10) = %v, want %v", err, boom)
	}
	// One worker: item 11 may already be handed over when 10 fails, no more.
	if n := ran.Load(); n < 11 || n > 12 {
		t.Fatalf("forEach(error at 10, one worker) ran %d items, want 11 or 12", n)
	}

	cause := errors.New("stopped")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	ran.Store(0)
	if err := forEach(ctx, 4, items, func(context.Context, int) error {
		ran.Add(1)
		return nil
	}); !errors.Is(err, cause) || ran.Load() != 0 {
		t.Fatalf("forEach(cancelled) = %v, ran %d, want %v, 0", err, ran.Load(), cause)
	}
}
