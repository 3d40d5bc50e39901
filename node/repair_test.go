package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// writeThrough changes one byte of the file at p in place, as root inside
// a VM with a link view can (the file is the store's object inode); with
// keepTime the modification time is put back, as bit rot would leave it.
func writeThrough(t *testing.T, p string, keepTime bool) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	if _, err := f.ReadAt(b, 100); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, 100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chmod(p, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if keepTime {
		if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
}

func sameBytes(t *testing.T, want, got string) bool {
	t.Helper()
	a, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(got)
	return err == nil && bytes.Equal(a, b)
}

// waitStatus polls the daemon's status until ok says so (20 s at most).
func waitStatus(t *testing.T, c *Client, what string, ok func(*Status) bool) *Status {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := c.Status(context.Background())
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s; status %+v, %v", what, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestInstallRepairsDamagedObject: VM vm1 writes into a file of its link
// view, which is the store's object. The next install (for vm2) finds the
// object changed, quarantines it, fetches that file again from the origin
// and relinks the tree: vm2 sees the published bytes. Status and metrics
// count the damage and the repair.
func TestInstallRepairsDamagedObject(t *testing.T) {
	o := newOrigin(t)
	src := o.publish(t, "p", "1.0.0", map[string]int{"victim": 300_000, "other": 200_000})
	reg := prometheus.NewRegistry()
	c := startDaemonWith(t, o, "", func(cfg *Config) { cfg.ScrubRate = -1; cfg.Metrics = reg })
	ctx := context.Background()
	view1, view2 := t.TempDir(), t.TempDir()
	addVM(t, c, "vm1", view1)
	addVM(t, c, "vm2", view2)
	if _, err := c.Install(ctx, InstallRequest{VM: "vm1", Ref: "p", Into: view1, Mode: "link"}, nil); err != nil {
		t.Fatal(err)
	}
	before := o.chunkBytes.Load()
	writeThrough(t, filepath.Join(view1, "p", "victim"), false)

	if _, err := c.Install(ctx, InstallRequest{VM: "vm2", Ref: "p", Into: view2, Mode: "link"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"victim", "other"} {
		if !sameBytes(t, filepath.Join(src, f), filepath.Join(view2, "p", f)) {
			t.Errorf("vm2's %s differs from the published file: the damaged object was exposed", f)
		}
	}
	if got := o.chunkBytes.Load() - before; got != 300_000 {
		t.Errorf("the repair fetched %d bytes from the origin, want the damaged file's 300000", got)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Store.DamagedObjects != 1 || st.Store.RepairedObjects != 1 || len(st.Store.Repairing) != 0 || st.Packages[0].State != "complete" {
		t.Errorf("status = %+v, packages %+v; want one object damaged and repaired, p complete", st.Store, st.Packages)
	}
	if got := gauge(t, reg, "stork_store_damaged_objects_total", ""); got != 1 {
		t.Errorf("stork_store_damaged_objects_total = %v, want 1", got)
	}
}

// TestScrubRepairsBitRot: a byte changes with the modification time put
// back (the cheap check cannot see it); the background scrub finds it and
// the daemon fetches the file again without any request. (The object is
// fresh: the scrub is told to re-hash it all the same.)
func TestScrubRepairsBitRot(t *testing.T) {
	o := newOrigin(t)
	src := o.publish(t, "p", "1.0.0", map[string]int{"victim": 300_000})
	dataDir, err := os.MkdirTemp("", "stork-node-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	c := startDaemonWith(t, o, dataDir, func(cfg *Config) { cfg.ScrubRate, cfg.ScrubFresh = 64<<20, -1 })
	pkgs, err := c.Fetch(context.Background(), "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dataDir, "store", "trees", pkgs[0].ManifestCID)
	writeThrough(t, filepath.Join(tree, "victim"), true)
	st := waitStatus(t, c, "scrub finds and repairs the damage", func(st *Status) bool {
		return st.Store.RepairedObjects == 1 && len(st.Store.Repairing) == 0
	})
	if st.Store.DamagedObjects != 1 || st.Store.ScrubbedBytes < 300_000 || st.Packages[0].State != "complete" {
		t.Errorf("status = %+v, %+v; want one damaged object, the package complete", st.Store, st.Packages)
	}
	if !sameBytes(t, filepath.Join(src, "victim"), filepath.Join(tree, "victim")) {
		t.Error("the tree's file differs from the published one after the repair")
	}
}

// TestRepairStoreThenDaemonRefetches: with the daemon stopped, RepairStore
// (verify --repair) quarantines a damaged object; the next daemon start
// fetches its package again.
func TestRepairStoreThenDaemonRefetches(t *testing.T) {
	o := newOrigin(t)
	src := o.publish(t, "p", "1.0.0", map[string]int{"victim": 100_000, "other": 5000})
	dataDir, err := os.MkdirTemp("", "stork-node-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	d, err := NewDaemon(context.Background(), Config{DataDir: dataDir, RepoURL: o.url, Root: o.root, ScrubRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runAndClose(ctx, d) }()
	c := NewClient(dataDir)
	var pkgs []PackageStatus
	for i := 0; i < 500; i++ {
		if pkgs, err = c.Fetch(context.Background(), "p", nil); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dataDir, "store", "trees", pkgs[0].ManifestCID)
	writeThrough(t, filepath.Join(tree, "victim"), true)
	if problems, err := VerifyStore(context.Background(), dataDir); err != nil || len(problems) != 1 {
		t.Fatalf("VerifyStore = %q, %v, want one problem", problems, err)
	}
	problems, marked, err := RepairStore(context.Background(), dataDir)
	if err != nil || len(problems) != 1 || len(marked) != 1 || marked[0] != "p@1.0.0" {
		t.Fatalf("RepairStore = %q, %q, %v; want one problem, p@1.0.0 marked", problems, marked, err)
	}
	c = startDaemonWith(t, o, dataDir, func(cfg *Config) { cfg.ScrubRate = -1 })
	waitStatus(t, c, "the daemon fetches the marked package at start", func(st *Status) bool {
		return len(st.Store.Repairing) == 0 && len(st.Packages) == 1 && st.Packages[0].State == "complete"
	})
	if !sameBytes(t, filepath.Join(src, "victim"), filepath.Join(tree, "victim")) {
		t.Error("the tree's file differs from the published one after the repair")
	}
}
