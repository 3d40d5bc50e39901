package node

import (
	"context"
	"sync"
	"time"
)

// Bounds of fileFlights' copies kept after their fetch.
const (
	// flightKeep: how long a fetched copy answers later asks (a crowd's
	// hosts ask within a second or two of each other).
	flightKeep = 30 * time.Second
	// flightKeptBytes bounds the copies kept, in all.
	flightKeptBytes = 16 << 20
)

// fileFlights shares fetches of repository files whose bytes never
// change (and, kept a moment only, of timestamp.json): a caller asking
// for a file while its fetch is under way waits for that fetch, and a
// copy fetched answers the callers of the next keep (flightKeep unless
// set; at most flightKeptBytes of copies). A fetch whose callers
// have all left is cancelled. A failure is not kept. The zero value is
// ready.
type fileFlights struct {
	// keep is how long a copy answers later callers; 0: flightKeep.
	keep  time.Duration
	mu    sync.Mutex
	m     map[string]*fileFlight
	kept  []string // keys of the copies kept, oldest first
	bytes int64    // their size
}

// fileFlight is one fetch and its result.
type fileFlight struct {
	done    chan struct{}
	data    []byte
	err     error
	at      time.Time // when it ended; zero while under way
	waiters int
	cancel  context.CancelFunc
}

// do returns key's copy: the one kept, the one of the fetch under way,
// or the one fetch gets (called with a context that ends when every
// caller waiting for it has left). The copy is shared: callers must not
// modify it.
func (ff *fileFlights) do(ctx context.Context, key string, fetch func(context.Context) ([]byte, error)) ([]byte, error) {
	return ff.doKept(ctx, key, fetch, true)
}

// join is do without the copy kept: the caller waits for a fetch under
// way or starts one.
func (ff *fileFlights) join(ctx context.Context, key string, fetch func(context.Context) ([]byte, error)) ([]byte, error) {
	return ff.doKept(ctx, key, fetch, false)
}

func (ff *fileFlights) doKept(ctx context.Context, key string, fetch func(context.Context) ([]byte, error), kept bool) ([]byte, error) {
	ff.mu.Lock()
	if ff.m == nil {
		ff.m = map[string]*fileFlight{}
	}
	fl := ff.m[key]
	keep := ff.keep
	if keep == 0 {
		keep = flightKeep
	}
	if fl != nil && !fl.at.IsZero() && (!kept || time.Since(fl.at) > keep) {
		ff.drop(key)
		fl = nil
	}
	if fl == nil {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		fl = &fileFlight{done: make(chan struct{}), cancel: cancel}
		ff.m[key] = fl
		go ff.run(fctx, key, fl, fetch)
	}
	if !fl.at.IsZero() {
		ff.mu.Unlock()
		return fl.data, nil
	}
	fl.waiters++
	ff.mu.Unlock()
	select {
	case <-fl.done:
		ff.leave(key, fl)
		return fl.data, fl.err
	case <-ctx.Done():
		ff.leave(key, fl)
		return nil, ctx.Err()
	}
}

// run fetches fl's copy and keeps it (a failure is forgotten).
func (ff *fileFlights) run(ctx context.Context, key string, fl *fileFlight, fetch func(context.Context) ([]byte, error)) {
	b, err := fetch(ctx)
	fl.cancel()
	ff.mu.Lock()
	fl.data, fl.err, fl.at = b, err, time.Now()
	switch {
	case ff.m[key] != fl:
	case err != nil:
		delete(ff.m, key)
	default:
		ff.kept = append(ff.kept, key)
		ff.bytes += int64(len(b))
		for ff.bytes > flightKeptBytes && len(ff.kept) > 0 {
			ff.drop(ff.kept[0])
		}
	}
	ff.mu.Unlock()
	close(fl.done)
}

// leave counts a caller of fl gone; the last one cancels a fetch under
// way.
func (ff *fileFlights) leave(key string, fl *fileFlight) {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	fl.waiters--
	if fl.waiters == 0 && fl.at.IsZero() {
		fl.cancel()
		if ff.m[key] == fl {
			delete(ff.m, key)
		}
	}
}

// forget drops key's kept copy (one its caller refused), so that the
// next caller fetches again.
func (ff *fileFlights) forget(key string) {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if fl := ff.m[key]; fl != nil && !fl.at.IsZero() {
		ff.drop(key)
	}
}

// drop forgets key's flight, and its copy if kept. ff.mu is held.
func (ff *fileFlights) drop(key string) {
	fl := ff.m[key]
	if fl == nil {
		return
	}
	delete(ff.m, key)
	if fl.at.IsZero() || fl.err != nil {
		return
	}
	for k, kept := range ff.kept {
		if kept == key {
			ff.kept = append(ff.kept[:k], ff.kept[k+1:]...)
			ff.bytes -= int64(len(fl.data))
			break
		}
	}
}
