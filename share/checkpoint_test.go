package share

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"
)

// openCheckpointed opens a store in checkpoint mode whose interval never
// comes during a test (the test calls checkpoint), counting its syncfs
// calls in n.
func openCheckpointed(t *testing.T, dir string, n *atomic.Int64) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, Checkpoint: time.Hour})
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	s.fsync.do = func(p string) error {
		n.Add(1)
		return syncFS(p)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// installCheckpointed installs p as ck@1 in a new store with
// checkpoints and returns its directory and the store.
func installCheckpointed(t *testing.T, p *testPkg) (string, *Store) {
	t.Helper()
	dir := t.TempDir()
	var n atomic.Int64
	s := openCheckpointed(t, dir, &n)
	install(t, s, p, "ck", "1")
	return dir, s
}

func countKeys(t *testing.T, s *Store, prefix string) int {
	t.Helper()
	keys, err := s.unsyncedKeys(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

// TestCheckpointDefersFileSyncs: with checkpoints, a download and its
// commit make no sync of the file system; they leave a w/ key per object
// and one for the package, which a checkpoint (one syncfs) drops. Without
// checkpoints the same download syncs the file system itself.
func TestCheckpointDefersFileSyncs(t *testing.T) {
	p := crashPkg(t)
	var n atomic.Int64
	s := openCheckpointed(t, t.TempDir(), &n)
	before := n.Load()
	install(t, s, p, "ck", "1")
	if got := n.Load() - before; got != 0 {
		t.Errorf("download and commit with checkpoints: %d syncfs calls, want 0", got)
	}
	objects := map[string]bool{}
	for _, e := range p.m.Entries {
		if e.Hash != "" {
			objects[e.Hash] = true
		}
	}
	if got := countKeys(t, s, prefixUnsyncedObject); got != len(objects) {
		t.Errorf("w/o/ keys after the commit: %d, want %d (one per object)", got, len(objects))
	}
	if got := countKeys(t, s, prefixUnsyncedPackage); got != 1 {
		t.Errorf("w/p/ keys after the commit: %d, want 1", got)
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if got := n.Load() - before; got != 1 {
		t.Errorf("checkpoint: %d syncfs calls, want 1", got)
	}
	if got := countKeys(t, s, prefixUnsynced); got != 0 {
		t.Errorf("w/ keys after the checkpoint: %d, want 0", got)
	}
	checkTree(t, s.TreePath(p.cid), p)

	// A record that must be durable when its call returns (a new name)
	// syncs the index's logs, not the file system.
	var idx atomic.Int64
	s.indexSync.do = func(dir string) error {
		idx.Add(1)
		return syncIndexFiles(dir)
	}
	before = n.Load()
	if err := s.AddName("ck-alias", "2", p.cid); err != nil {
		t.Fatal(err)
	}
	if got := n.Load() - before; got != 0 {
		t.Errorf("AddName with checkpoints: %d syncfs calls, want 0", got)
	}
	if got := idx.Load(); got != 1 {
		t.Errorf("AddName with checkpoints: %d syncs of the index's logs, want 1", got)
	}
	if err := s.AddName("ck-alias", "2", p.cid); err != nil {
		t.Fatal(err)
	}
	if got := idx.Load(); got != 1 {
		t.Errorf("AddName of a name already there: %d syncs of the index's logs in all, want still 1", got)
	}

	var m atomic.Int64
	plain := openStore(t, t.TempDir())
	plain.fsync.do = func(p string) error {
		m.Add(1)
		return syncFS(p)
	}
	install(t, plain, p, "ck", "1")
	if m.Load() == 0 {
		t.Error("download and commit without checkpoints: no syncfs")
	}
	if got := countKeys(t, plain, prefixUnsynced); got != 0 {
		t.Errorf("w/ keys without checkpoints: %d, want 0", got)
	}
}

// TestCheckpointSyncsPartialDownloads: a download that has placed no
// object yet still gets its records (chunks present) made durable by the
// next checkpoint; a checkpoint with nothing new makes no sync.
func TestCheckpointSyncsPartialDownloads(t *testing.T) {
	p := crashPkg(t)
	var n atomic.Int64
	s := openCheckpointed(t, t.TempDir(), &n)
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	before := n.Load()
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if got := n.Load() - before; got != 0 {
		t.Errorf("checkpoint with nothing written: %d syncfs calls, want 0", got)
	}
	d, err := s.BeginPackage("ck", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	e := p.m.Entries[entryIndex(p, "four")]
	c, _ := cid.Decode(e.Chunks[0])
	if err := d.PutChunk(c, p.chunks[c]); err != nil {
		t.Fatal(err)
	}
	if got := countKeys(t, s, prefixUnsynced); got != 0 {
		t.Fatalf("w/ keys with no object placed: %d", got)
	}
	before = n.Load()
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if got := n.Load() - before; got != 1 {
		t.Errorf("checkpoint after a chunk was recorded: %d syncfs calls, want 1", got)
	}
	before = n.Load()
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if got := n.Load() - before; got != 0 {
		t.Errorf("second checkpoint with nothing new: %d syncfs calls, want 0", got)
	}
	// A record made durable at once (a name) leaves the checkpoint
	// nothing to do.
	if err := s.AddName("ck-alias", "2", p.cid); err != nil {
		t.Fatal(err)
	}
	before = n.Load()
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if got := n.Load() - before; got != 0 {
		t.Errorf("checkpoint after a durable record only: %d syncfs calls, want 0", got)
	}
}

// TestCheckpointSyncsSetuidTrees: with checkpoints, a setuid variant
// (built at an install, covered by no w/ key) is still synced before it
// is renamed into place.
func TestCheckpointSyncsSetuidTrees(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("owners need root")
	}
	p := archivePkg(t)
	var n atomic.Int64
	s := openCheckpointed(t, t.TempDir(), &n)
	install(t, s, p, "pkg", "1")
	before := n.Load()
	if _, err := s.SetuidTree(p.cid); err != nil {
		t.Fatal(err)
	}
	if got := n.Load() - before; got == 0 {
		t.Error("setuid tree built with checkpoints: no syncfs before it was renamed into place")
	}
}

// TestCheckpointLoopAndClose: the interval's checkpoint and Close's drop
// the w/ keys; a closed store is recorded as closed.
func TestCheckpointLoopAndClose(t *testing.T) {
	p := crashPkg(t)
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir, Checkpoint: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	install(t, s, p, "ck", "1")
	deadline := time.Now().Add(10 * time.Second)
	for countKeys(t, s, prefixUnsynced) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := countKeys(t, s, prefixUnsynced); got != 0 {
		t.Fatalf("w/ keys 10 s after the commit, checkpoints every 20 ms: %d", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	if s.lastRun.cut {
		t.Error("a store closed by Close reads as cut by a power failure")
	}
}

// setBoot makes bootID read id until the test ends. Tests that call it
// do not run in parallel: bootIDPath is the package's.
func setBoot(t *testing.T, id string) {
	p := filepath.Join(t.TempDir(), "boot_id")
	if err := os.WriteFile(p, []byte(id+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := bootIDPath
	bootIDPath = p
	t.Cleanup(func() { bootIDPath = old })
}

// cutPower closes s as a power cut leaves it: no last checkpoint, and its
// run still recorded as open.
func cutPower(t *testing.T, s *Store) {
	t.Helper()
	s.owner = false
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// writable makes p's directory writable (trees are read-only).
func writable(t *testing.T, p string) {
	t.Helper()
	if err := os.Chmod(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestPowerCutChecksUnsynced: after a power cut (the store not closed, and
// the boot id changed), Open re-hashes the objects and rebuilds the trees
// recorded after the last checkpoint, and writes their manifest files
// again: what the disk lost or tore is never served. A process that was
// only killed (same boot) leaves the page cache, and so its files, whole.
func TestPowerCutChecksUnsynced(t *testing.T) {
	p := crashPkg(t)
	four := p.m.Entries[entryIndex(p, "four")]
	setBoot(t, "boot-1")

	t.Run("tree and manifest torn", func(t *testing.T) {
		dir, s := installCheckpointed(t, p)
		tree, manifest := s.TreePath(p.cid), s.manifestPath(p.cid.String())
		cutPower(t, s)
		lost := filepath.Join(tree, "d", "one")
		writable(t, lost)
		if err := os.Remove(lost); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(manifest, 3); err != nil {
			t.Fatal(err)
		}
		setBoot(t, "boot-2")
		s = openStore(t, dir)
		info, err := s.Package(p.cid)
		if err != nil || info.State != StateComplete {
			t.Fatalf("after the power cut: %+v, %v; want complete", info, err)
		}
		checkTree(t, tree, p)
		if _, _, err := s.readManifestFile(p.cid); err != nil {
			t.Errorf("manifest file after the power cut: %v", err)
		}
		if got := countKeys(t, s, prefixUnsynced); got != 0 {
			t.Errorf("w/ keys after Open: %d", got)
		}
		verifyClean(t, s)
	})

	t.Run("object torn", func(t *testing.T) {
		dir, s := installCheckpointed(t, p)
		obj := s.ObjectPath(four.Hash, variantOf(currentLayout, &four))
		cutPower(t, s)
		if err := os.Chmod(obj, 0o644); err != nil {
			t.Fatal(err)
		}
		zeros := make([]byte, 4096)
		f, err := os.OpenFile(obj, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(zeros, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
		setBoot(t, "boot-2")
		s = openStore(t, dir)
		if got := s.DamageCounts().Damaged; got != 1 {
			t.Errorf("objects quarantined at Open: %d, want 1", got)
		}
		info, err := s.Package(p.cid)
		if err != nil || info.State == StateComplete {
			t.Fatalf("package using the torn object: %+v, %v; want partial", info, err)
		}
		reps, err := s.RepairsPending()
		if err != nil || len(reps) != 1 {
			t.Fatalf("RepairsPending = %v, %v; want the package", reps, err)
		}
		install(t, s, p, "ck", "1")
		checkTree(t, s.TreePath(p.cid), p)
		verifyClean(t, s)
	})

	t.Run("killed, same boot", func(t *testing.T) {
		dir, s := installCheckpointed(t, p)
		cutPower(t, s)
		s = openStore(t, dir)
		if s.lastRun.cut {
			t.Error("a store killed without a reboot reads as cut by a power failure")
		}
		if got := countKeys(t, s, prefixUnsynced); got != 0 {
			t.Errorf("w/ keys after Open: %d, want 0 (its checkpoint)", got)
		}
		checkTree(t, s.TreePath(p.cid), p)
	})

	// The complete record (and its w/ key) lost, the tree on disk: the
	// tree is removed and built again by the next commit. The begin
	// record lost too: Open does not take the tree for a lost index.
	for _, lose := range []string{"complete record", "package record"} {
		t.Run(lose+" lost", func(t *testing.T) {
			dir, s := installCheckpointed(t, p)
			key := p.cid.String()
			err := s.db.Update(func(txn *badger.Txn) error {
				if err := txn.Delete([]byte(prefixUnsyncedPackage + key)); err != nil {
					return err
				}
				if lose == "package record" {
					if err := txn.Delete([]byte(prefixPackage + key)); err != nil {
						return err
					}
					return txn.Delete(nameKey("ck", "1"))
				}
				_, err := updatePackageTxn(txn, key, func(r *pkgRecord) { r.State = StatePartial })
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			cutPower(t, s)
			setBoot(t, "boot-2")
			s = openStore(t, dir)
			if _, err := os.Lstat(s.TreePath(p.cid)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("tree of a package not recorded complete after a power cut: %v, want removed", err)
			}
			install(t, s, p, "ck", "1")
			checkTree(t, s.TreePath(p.cid), p)
			verifyClean(t, s)
		})
	}

	// A kernel without a boot id: every unclosed run reads as cut, and a
	// tree a mount uses (a view's) is left in place, not rebuilt or
	// removed under the view.
	t.Run("mounted tree, no boot id", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("bind mounts need root")
		}
		dir, s := installCheckpointed(t, p)
		tree := s.TreePath(p.cid)
		at := t.TempDir()
		if err := unix.Mount(tree, at, "", unix.MS_BIND, ""); err != nil {
			t.Skipf("bind mount: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(at, unix.MNT_DETACH) })
		before, err := os.Stat(filepath.Join(at, "d", "one"))
		if err != nil {
			t.Fatal(err)
		}
		cutPower(t, s)
		setBoot(t, "")
		s = openStore(t, dir)
		if !s.lastRun.cut {
			t.Fatal("without a boot id an unclosed run does not read as cut")
		}
		after, err := os.Stat(filepath.Join(at, "d", "one"))
		if err != nil || !os.SameFile(before, after) {
			t.Errorf("the view's file after Open: %v, same file %v; want the tree left in place", err, err == nil && os.SameFile(before, after))
		}
	})

	// A run that synced at each step leaves no torn tree: a tree unknown
	// to the index still means the index was lost.
	t.Run("unknown tree after a run without checkpoints", func(t *testing.T) {
		dir := t.TempDir()
		s := openStore(t, dir)
		install(t, s, p, "ck", "1")
		key := p.cid.String()
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(prefixPackage + key)) }); err != nil {
			t.Fatal(err)
		}
		cutPower(t, s)
		setBoot(t, "boot-3")
		_, err := Open(Config{Dir: dir})
		if !errors.Is(err, ErrIndexLost) || !strings.Contains(err.Error(), "unknown") {
			t.Fatalf("Open = %v; want ErrIndexLost naming the unknown tree", err)
		}
	})
}
