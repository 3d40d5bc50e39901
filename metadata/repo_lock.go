package metadata

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockFile is the file every writing operation holds an exclusive flock on
// (DIR/.lock), so that two publishers, in one process or in several, never
// interleave their reads and writes of the metadata. Readers take no lock:
// every file is replaced atomically, and a reader starting from
// timestamp.json finds everything it names.
const lockFile = ".lock"

// lockPoll is how often a waiting publisher retries the lock; maxLockWait
// bounds the wait of a caller whose context has no deadline (a batch
// publish of a whole distribution holds the lock for minutes).
const (
	lockPoll    = 25 * time.Millisecond
	maxLockWait = 30 * time.Minute
)

// lockRepo takes the exclusive lock on dir's lock file, waiting while
// another publisher holds it until ctx ends or maxLockWait passes
// (ErrLocked). The returned function releases it.
func lockRepo(ctx context.Context, dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock repository %s: %w", dir, err)
	}
	deadline := time.Now().Add(maxLockWait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock repository %s: %w", dir, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock repository %s: %w: another publisher held it for %s", dir, ErrLocked, maxLockWait)
		}
		t := time.NewTimer(lockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("lock repository %s: %w: waiting for another publisher: %w", dir, ErrLocked, ctx.Err())
		case <-t.C:
		}
	}
}
