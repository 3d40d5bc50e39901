package share

import "sync"

// fsSyncer shares syncfs calls on the store's file system among the
// callers that need one at the same time. A caller waits for a round
// that starts after its call (so the round flushes everything the caller
// wrote before it), and every caller that arrives while a round runs
// shares the next one: however many packages commit at once, the file
// system is flushed at most twice for them, not once each. Chunk groups,
// finished files and new trees all need one.
type fsSyncer struct {
	dir  string
	sync func(path string) error // syncFS; tests replace it

	mu      sync.Mutex
	next    *syncRound // the round that has not started, nil if none
	running bool       // a goroutine runs rounds
}

// syncRound is one syncfs call and the callers waiting for it.
type syncRound struct {
	done chan struct{}
	err  error
	n    int // callers waiting (for tests)
}

func newFSSyncer(dir string) *fsSyncer {
	return &fsSyncer{dir: dir, sync: syncFS}
}

// syncFS returns once a syncfs of the file system started after the call
// has ended, with its error.
func (y *fsSyncer) syncFS() error {
	y.mu.Lock()
	r := y.next
	if r == nil {
		r = &syncRound{done: make(chan struct{})}
		y.next = r
	}
	r.n++
	if !y.running {
		y.running = true
		go y.run()
	}
	y.mu.Unlock()
	<-r.done
	return r.err
}

// run runs rounds while callers wait for one.
func (y *fsSyncer) run() {
	for {
		y.mu.Lock()
		r := y.next
		if r == nil {
			y.running = false
			y.mu.Unlock()
			return
		}
		y.next = nil
		y.mu.Unlock()
		r.err = y.sync(y.dir)
		close(r.done)
	}
}

// waiting returns how many callers wait for the round not yet started.
func (y *fsSyncer) waiting() int {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.next == nil {
		return 0
	}
	return y.next.n
}
