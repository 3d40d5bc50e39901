package share

import (
	"fmt"
	"os"
	"sync"
)

// fsSyncer shares the syncs of one thing (the store's file system, or
// one directory) among the callers that need one at the same time. A
// caller waits for a round that starts after its call (so the round
// flushes everything the caller wrote before it), and every caller that
// arrives while a round runs shares the next one: however many packages
// commit at once, the file system (or trees/) is flushed at most twice
// for them, not once each. Chunk groups, finished files and new trees
// all need a syncfs; a new tree also a sync of trees/.
type fsSyncer struct {
	dir string
	do  func(path string) error // syncFS or syncDirPath; tests replace it

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

func newFSSyncer(dir string, do func(path string) error) *fsSyncer {
	return &fsSyncer{dir: dir, do: do}
}

// flush returns once a sync started after the call has ended, with its
// error.
func (y *fsSyncer) flush() error {
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
		r.err = y.do(y.dir)
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

// syncDirPath syncs the directory dir.
func syncDirPath(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
