package origin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storkpm/stork/metadata"
)

// FetchChunksOptions says which chunks FetchChunks moves, from where, and into what.
type FetchChunksOptions struct {
	// Chunks to fetch, each once (see Manifest.UniqueChunks).
	Chunks []metadata.ChunkRef
	// Source delivers chunk bytes; FetchChunks verifies each by CID and length
	// before the sink sees it.
	Source ChunkSource
	// Sink receives every verified chunk. It may be called concurrently.
	Sink metadata.ChunkSink
	// Parallel is the number of concurrent requests (default 8).
	Parallel int
	// Retries is the number of further attempts per chunk after a
	// transient error (0: default 3; negative: none). A chunk that fails its
	// hash is retried at most once.
	Retries int
	// Progress, if set, is called (serialised) with bytes delivered so far
	// and the total of Chunks.
	Progress func(done, total int64)
}

// FetchChunksResult describes a finished FetchChunks.
type FetchChunksResult struct {
	Bytes   int64
	Chunks  int
	Elapsed time.Duration
}

// FetchChunks moves opts.Chunks from opts.Source into opts.Sink, Parallel at a
// time, verifying each chunk first and retrying transient failures with
// backoff. The first permanent failure cancels the rest and is returned.
func FetchChunks(ctx context.Context, opts FetchChunksOptions) (*FetchChunksResult, error) {
	start := time.Now()
	if opts.Source == nil || opts.Sink == nil {
		return nil, errors.New("fetch: source and sink are required")
	}
	if opts.Parallel <= 0 {
		opts.Parallel = DefaultParallel
	}
	switch {
	case opts.Retries == 0:
		opts.Retries = DefaultRetries
	case opts.Retries < 0:
		opts.Retries = 0
	}
	var total int64
	for _, r := range opts.Chunks {
		total += r.Length
	}
	var done atomic.Int64
	var progMu sync.Mutex
	report := func() {
		if opts.Progress == nil {
			return
		}
		progMu.Lock()
		opts.Progress(done.Load(), total)
		progMu.Unlock()
	}

	err := forEach(ctx, opts.Parallel, opts.Chunks, func(ctx context.Context, ref metadata.ChunkRef) error {
		if err := fetchOne(ctx, opts, ref); err != nil {
			return err
		}
		done.Add(ref.Length)
		report()
		return nil
	})
	if err != nil {
		return nil, err
	}
	report()
	return &FetchChunksResult{Bytes: done.Load(), Chunks: len(opts.Chunks), Elapsed: time.Since(start)}, nil
}

// forEach runs fn on every item, parallel at a time. The first error
// cancels the context fn is given, items not yet begun are passed over,
// and that error is returned; so is the cause of ctx ending first.
func forEach[T any](ctx context.Context, parallel int, items []T, fn func(ctx context.Context, item T) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan T)
	var wg sync.WaitGroup
	for range min(parallel, len(items)) {
		wg.Go(func() {
			for it := range jobs {
				if ctx.Err() != nil {
					continue
				}
				if err := fn(ctx, it); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for _, it := range items {
		select {
		case jobs <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// fetchOne fetches, verifies and delivers one chunk, retrying transient
// failures.
func fetchOne(ctx context.Context, opts FetchChunksOptions, ref metadata.ChunkRef) error {
	backoff := 100 * time.Millisecond
	_, selfChecked := opts.Source.(verifyingSource)
	for attempt := 0; ; attempt++ {
		data, err := opts.Source.FetchChunk(ctx, ref.CID, ref.Length)
		if err == nil && !selfChecked {
			err = ref.Verify(data)
		}
		if err == nil {
			err = opts.Sink.PutChunk(ref.CID, data)
			if err != nil && !errors.Is(err, metadata.ErrHashMismatch) {
				return fmt.Errorf("chunk %s: %w", ref.CID, err) // the sink failed: not the source's fault
			}
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if attempt >= maxAttempts(err, opts.Retries) {
			return fmt.Errorf("chunk %s: %w (after %d attempts)", ref.CID, err, attempt+1)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// maxAttempts is how many retries an error deserves.
func maxAttempts(err error, retries int) int {
	var se *StatusError
	switch {
	case errors.Is(err, metadata.ErrNotFound), errors.Is(err, ErrUnsafePath):
		return 0
	case errors.As(err, &se) && !se.Temporary():
		return 0
	case errors.Is(err, metadata.ErrHashMismatch), errors.Is(err, metadata.ErrTooLarge):
		return min(1, retries)
	}
	return retries
}
