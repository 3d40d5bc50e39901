package node

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// partialBytes sums the sizes of the files under DATA/store/partial, as
// allocated on disk.
func partialBytes(t *testing.T, dataDir string) (files int, bytes int64) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join(dataDir, "store", "partial"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files++
		bytes += info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, bytes
}

// TestGCPartialDropsFailedDownload: a download fails halfway (the origin
// starts answering 503). Plain GC keeps what it fetched (a retry
// resumes); GC with Partial drops the package and frees its partial
// files; a download in flight is never dropped.
func TestGCPartialDropsFailedDownload(t *testing.T) {
	o := newOrigin(t)
	o.publishChunked(t, "big", "1.0.0", 64<<10, map[string]int{"a.bin": 2 << 20, "b.bin": 1 << 20})
	o.failAfter.Store(10)
	dataDir, err := os.MkdirTemp("", "stork-node-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) }) // after the daemon stops (cleanups run last first)
	// The download waits OriginDeadline for the failing origin, then fails.
	c := startDaemonWith(t, o, dataDir, func(cfg *Config) { cfg.Parallel, cfg.OriginDeadline = 2, 500*time.Millisecond })
	ctx := context.Background()
	if _, err := c.Fetch(ctx, "big", nil); err == nil {
		t.Fatal("Fetch from a failing origin succeeded")
	}
	st, err := c.Status(ctx)
	if err != nil || len(st.Packages) != 1 || st.Packages[0].State != "partial" || st.Packages[0].Have == 0 {
		t.Fatalf("status after the failed download = %+v, %v, want big partial with some bytes", st, err)
	}
	if n, b := partialBytes(t, dataDir); n == 0 || b == 0 {
		t.Fatalf("no partial file after a failed download (%d files, %d bytes)", n, b)
	}

	if _, err := c.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Status(ctx); len(st.Packages) != 1 {
		t.Errorf("plain GC dropped the failed download: %+v", st.Packages)
	}
	res, err := c.GCWith(ctx, GCRequest{Partial: true})
	if err != nil {
		t.Fatal(err)
	}
	if res["Packages"] != 1.0 {
		t.Errorf("GC --partial = %v, want 1 package removed", res)
	}
	if st, _ := c.Status(ctx); len(st.Packages) != 0 {
		t.Errorf("packages after GC --partial = %+v, want none", st.Packages)
	}
	if n, b := partialBytes(t, dataDir); n != 0 || b != 0 {
		t.Errorf("partial/ holds %d files, %d bytes after GC --partial, want none", n, b)
	}

	// A download in flight is never dropped: GC --partial while it runs,
	// and it still completes.
	o.failAfter.Store(0)
	o.delay.Store(int64(20 * time.Millisecond))
	done := make(chan error, 1)
	go func() { _, err := c.Fetch(ctx, "big", nil); done <- err }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := c.Status(ctx)
		if err == nil && len(st.Packages) == 1 && st.Packages[0].Have > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("download did not start: %+v, %v", st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.GCWith(ctx, GCRequest{Partial: true}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Fetch with a GC --partial during it = %v", err)
	}
	if st, _ := c.Status(ctx); len(st.Packages) != 1 || st.Packages[0].State != "complete" {
		t.Errorf("status = %+v, want big complete", st.Packages)
	}
}
