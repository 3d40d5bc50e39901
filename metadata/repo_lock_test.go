package metadata

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// holdLock takes the repository lock the way another publisher process
// would: flock on its own open file description of DIR/.lock.
func holdLock(t *testing.T, dir string) (release func()) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("flock %s: %v", lockFile, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }
}

// TestRepoLockExcludesOtherPublishers: while another publisher holds
// DIR/.lock, every writing operation waits for it (and gives up with
// ErrLocked when its context ends) without writing anything; once the
// lock is released the same operation succeeds.
func TestRepoLockExcludesOtherPublishers(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	e.add("first", "1.0.0", "one")
	src := writeTree(t, map[string]string{"f": "x"})
	alice := mustKey(t)
	r, err := OpenRepo(e.dir, e.keys.all(), e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	ops := []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"Add", func(ctx context.Context) error {
			_, err := r.Add(ctx, AddOptions{Name: "second", Version: "1.0.0", Source: src})
			return err
		}},
		{"Delegate", func(ctx context.Context) error {
			return r.Delegate(ctx, DelegateOptions{Role: "alice", Patterns: []string{"alice-*"}, Keys: []*tufmeta.Key{alice.Public()}})
		}},
		{"Refresh", func(ctx context.Context) error { return r.Refresh(ctx) }},
		{"UpdateRoot", func(ctx context.Context) error { return r.UpdateRoot(ctx, RootUpdate{}) }},
	}
	before := e.read(MetadataDir + "/timestamp.json")
	release := holdLock(t, e.dir)
	for _, op := range ops {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := op.run(ctx)
		cancel()
		if !errors.Is(err, ErrLocked) {
			t.Errorf("%s while another publisher holds the lock = %v, want ErrLocked", op.name, err)
		}
	}
	if got := e.read(MetadataDir + "/timestamp.json"); string(got) != string(before) {
		t.Errorf("timestamp.json changed while the lock was held by another publisher")
	}
	release()
	for _, op := range ops {
		if err := op.run(context.Background()); err != nil {
			t.Errorf("%s after the lock is released = %v", op.name, err)
		}
	}
}
