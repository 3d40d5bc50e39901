package node

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFileFlightsShareOneFetch: callers asking for a file while its fetch
// is under way share it, the copy answers the next callers without a
// fetch, a failure is not kept, and a fetch whose callers all left is
// cancelled.
func TestFileFlightsShareOneFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ff fileFlights
	var fetches atomic.Int64
	release := make(chan struct{})
	fetch := func(ctx context.Context) ([]byte, error) {
		fetches.Add(1)
		select {
		case <-release:
			return []byte("copy"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b, err := ff.do(ctx, "f", fetch); err != nil || string(b) != "copy" {
				t.Errorf("do = %q, %v", b, err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if b, err := ff.do(ctx, "f", fetch); err != nil || string(b) != "copy" {
		t.Errorf("do after the fetch = %q, %v", b, err)
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("%d fetches for 9 callers, want 1", n)
	}

	// A copy forgotten (its caller refused it) is fetched again.
	ff.forget("f")
	if b, err := ff.do(ctx, "f", func(context.Context) ([]byte, error) { return []byte("again"), nil }); err != nil || string(b) != "again" {
		t.Errorf("do after forget = %q, %v, want a new fetch", b, err)
	}

	// A failure is not kept.
	boom := errors.New("origin said no")
	if _, err := ff.do(ctx, "g", func(context.Context) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("do = %v, want %v", err, boom)
	}
	if b, err := ff.do(ctx, "g", func(context.Context) ([]byte, error) { return []byte("second"), nil }); err != nil || string(b) != "second" {
		t.Errorf("do after a failure = %q, %v, want a new fetch", b, err)
	}

	// The only caller leaves: its fetch is cancelled.
	cctx, ccancel := context.WithCancel(ctx)
	cancelled := make(chan struct{})
	go func() {
		time.Sleep(20 * time.Millisecond)
		ccancel()
	}()
	_, err := ff.do(cctx, "h", func(ctx context.Context) ([]byte, error) {
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("do with its caller gone = %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Error("the fetch of a file nobody waits for goes on")
	}
}
