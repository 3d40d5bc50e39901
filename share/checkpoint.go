package share

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
)

// Durability by checkpoints (Config.Checkpoint).
//
// By default every step of a download waits for its bytes to be durable
// before it is recorded: the chunk group's data and the placed object
// (syncfs or fdatasync), then the tree before it is renamed into trees/
// (syncfs) and trees/ itself (fsync). That is several flushes per
// package, each a handful of small writes and a cache flush of the disk,
// and an upgrade of hundreds of small packages waits on them.
//
// With a checkpoint interval no step of a download waits for a sync: a
// placed object and a completed package are recorded at once, with a w/
// key beside their record ("written, not yet synced", in the same
// transaction), and those transactions are not synced either (updateLazy;
// badger's SyncWrites is off). Every interval a checkpoint syncs the file
// system once, which writes back the index's memory-mapped logs too, and
// then drops the w/ keys that were there before it; Close makes a last
// one. A record that must be durable when its call returns (an install, a
// name, a removal) syncs the index's logs (update, syncIndex). A power
// cut may then lose the index's last writes, whole transactions at a
// time, and the files written since the last checkpoint. The records
// that may describe files that did not reach the disk are those whose w/
// keys survived, and Open checks them before anything is served:
//
//   - an object is re-hashed; one that fails is quarantined (its packages
//     become partial and are fetched again, damage.go);
//   - a package's tree is built again from its objects, and its manifest
//     file and names written again from the index;
//   - a tree whose package is not recorded complete (its complete record
//     was lost with its w/ key) is removed, to be built again by the
//     package's next commit (dropTornTrees).
//
// A process that was only killed (the kernel, and its page cache, lived
// on) leaves its w/ keys for the next checkpoint: nothing was lost. Open
// tells the two apart by the kernel's boot id, recorded at every Open.
// Chunks of partial files need no w/ key: a partial file is not trusted
// after a restart, so it is read back and checked in full before it
// becomes an object (prepareObject), and chunks served from it are hashed
// on the way out.
const (
	prefixUnsynced        = "w/"
	prefixUnsyncedObject  = "w/o/"
	prefixUnsyncedPackage = "w/p/"
)

// keyBootID records the boot id of the kernel that last opened the store.
var keyBootID = []byte("s/boot")

// bootIDPath is where Linux tells this boot apart from every other.
var bootIDPath = "/proc/sys/kernel/random/boot_id"

// markUnsynced adds the w/ key of an object or package record written in
// txn, in checkpoint mode.
func (s *Store) markUnsynced(txn *badger.Txn, prefix, name string) error {
	if s.ckpt <= 0 {
		return nil
	}
	return txn.Set([]byte(prefix+name), nil)
}

// waitsForFiles reports whether each step syncs the files it wrote before
// recording them (no checkpoints, and syncing on).
func (s *Store) waitsForFiles() bool { return s.sync && s.ckpt <= 0 }

// checkpointLoop runs a checkpoint every s.ckpt until stop is closed.
func (s *Store) checkpointLoop(stop <-chan struct{}) {
	t := time.NewTicker(s.ckpt)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if err := s.checkpoint(); err != nil {
			s.log.Warn("store checkpoint failed; retried at the next", "err", err)
		}
	}
}

// checkpoint makes every file and index record written before it durable
// (one syncfs, shared with any other caller) and then drops the w/ keys
// that were there before the sync. With no w/ key and no record written
// lazily since the last checkpoint (a download's presence records, say),
// it does nothing.
func (s *Store) checkpoint() error {
	written := s.lazyWrites.Load()
	keys, err := s.unsyncedKeys(prefixUnsynced)
	if err != nil || (len(keys) == 0 && written == s.lazySynced.Load()) {
		return err
	}
	if s.sync {
		if err := s.fsync.flush(); err != nil {
			return fmt.Errorf("checkpoint: sync: %w", err)
		}
	}
	s.lazySynced.Store(written)
	// Not counted as a lazy write: dropping a w/ key is safe to lose.
	if err := s.deleteBatch(keys); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// unsyncedKeys lists the w/ keys under prefix.
func (s *Store) unsyncedKeys(prefix string) ([][]byte, error) {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, prefix, func(k []byte, _ *badger.Item) error {
			keys = append(keys, bytes.Clone(k))
			return nil
		})
	})
	return keys, err
}

// bootID is this boot's id, "" if the kernel does not say.
func bootID() string {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// keyOpen is set while a run has the store open, to the way it made
// files durable: runCheckpoint or runSync. Close deletes it.
var keyOpen = []byte("s/open")

const (
	runCheckpoint = "checkpoint"
	runSync       = "sync"
)

// readLastRun notes whether the last run that opened the store ended
// without Close and before a reboot: a power cut or a kernel crash may
// have lost what it wrote after its last checkpoint.
func (s *Store) readLastRun() error {
	var open, boot []byte
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		if open, err = getValue(txn, keyOpen); err == nil {
			boot, err = getValue(txn, keyBootID)
		}
		return err
	})
	if err != nil {
		return err
	}
	now := bootID()
	s.lastRun.cut = open != nil && (now == "" || string(boot) != now)
	s.lastRun.checkpoints = string(open) == runCheckpoint
	return nil
}

// getValue is the value of key in txn, nil if it has none.
func getValue(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// dropTornTrees removes, after a power cut in a run with checkpoints,
// every tree whose package the index does not record as complete: its
// complete record (written after the tree was renamed into trees/, and
// not synced) was lost, and so may be some of the tree. The package's
// next commit builds it again. A tree a mount uses is left to that
// commit's relink (no mount outlives a reboot; this is for a kernel that
// gives no boot id).
func (s *Store) dropTornTrees() error {
	if !s.lastRun.cut || !s.lastRun.checkpoints {
		return nil
	}
	des, err := os.ReadDir(s.path(treesDir))
	if err != nil {
		return err
	}
	mounted, err := s.mountedTrees()
	if err != nil {
		return err
	}
	var torn []string
	err = s.db.View(func(txn *badger.Txn) error {
		for _, de := range des {
			var rec pkgRecord
			found, err := getJSON(txn, []byte(prefixPackage+de.Name()), &rec)
			if err != nil {
				return err
			}
			if (!found || rec.State != StateComplete) && mounted[de.Name()] == nil {
				torn = append(torn, de.Name())
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range torn {
		s.log.Warn("store not closed before a reboot: removing a tree whose package was not recorded complete", "tree", name)
		if err := removeAll(s.path(treesDir, name)); err != nil {
			return fmt.Errorf("tree %s: %w", name, err)
		}
	}
	return nil
}

// recoverUnsynced checks, after a power cut, what the last run recorded
// after its last checkpoint (see the top of this file), makes a
// checkpoint, and records this run. Open calls it before the store
// serves anything.
func (s *Store) recoverUnsynced() error {
	keys, err := s.unsyncedKeys(prefixUnsynced)
	if err != nil {
		return err
	}
	if len(keys) > 0 {
		if s.lastRun.cut {
			if err := s.checkUnsynced(keys); err != nil {
				return err
			}
		}
		if err := s.checkpoint(); err != nil {
			return err
		}
	}
	mode := runSync
	if s.ckpt > 0 {
		mode = runCheckpoint
	}
	err = s.update(func(txn *badger.Txn) error {
		if err := txn.Set(keyOpen, []byte(mode)); err != nil {
			return err
		}
		return txn.Set(keyBootID, []byte(bootID()))
	})
	if err == nil {
		s.owner = true
	}
	return err
}

// closeRun makes the last checkpoint and records that this run ended.
func (s *Store) closeRun() error {
	if !s.owner {
		return nil
	}
	if err := s.checkpoint(); err != nil {
		return err
	}
	return s.update(func(txn *badger.Txn) error { return txn.Delete(keyOpen) })
}

// checkUnsynced re-hashes the objects and rebuilds the trees whose w/
// keys are in keys.
func (s *Store) checkUnsynced(keys [][]byte) error {
	var objs []string
	var pkgs []cid.Cid
	for _, k := range keys {
		switch ks := string(k); {
		case strings.HasPrefix(ks, prefixUnsyncedObject):
			objs = append(objs, strings.TrimPrefix(ks, prefixUnsyncedObject))
		case strings.HasPrefix(ks, prefixUnsyncedPackage):
			c, err := cid.Decode(strings.TrimPrefix(ks, prefixUnsyncedPackage))
			if err != nil {
				continue // not ours: dropped by the checkpoint
			}
			pkgs = append(pkgs, c)
		}
	}
	s.log.Warn("store not closed since the last reboot: checking what was written after its last checkpoint",
		"objects", len(objs), "packages", len(pkgs))
	recs, err := s.objectRecords(objs)
	if err != nil {
		return err
	}
	res := &CheckResult{}
	var bad []badObject
	for _, name := range objs {
		if recs[name] == nil {
			continue // dropped since
		}
		if reason, _ := s.checkObject(name, recs[name], true, res); reason != "" {
			bad = append(bad, badObject{name, reason})
		}
	}
	if err := s.quarantineAll(bad, res); err != nil {
		return err
	}
	mounted, err := s.mountedTrees()
	if err != nil {
		return err
	}
	for _, c := range pkgs {
		if err := s.rebuildUnsyncedTree(c, mounted[c.String()] != nil); err != nil {
			return err
		}
	}
	return nil
}

// rebuildUnsyncedTree builds the tree of the complete package c again and
// writes its manifest file and names again from the index: after a power
// cut, any of them may be missing or torn. A tree a mount uses (no
// mount outlives a reboot; this is for a kernel that gives no boot id)
// is left in place for the views bound to it: CheckPackage checks it
// before each use. A package made partial by a quarantine is left to its
// next download.
func (s *Store) rebuildUnsyncedTree(c cid.Cid, mounted bool) error {
	var rec pkgRecord
	var found bool
	if err := s.db.View(func(txn *badger.Txn) (err error) {
		found, err = getJSON(txn, []byte(prefixPackage+c.String()), &rec)
		return err
	}); err != nil || !found || rec.State != StateComplete {
		return err
	}
	m, b, err := s.Manifest(c)
	if err != nil {
		return err
	}
	if !s.manifestFilesHold(c, rec.names()) {
		s.removeManifest(c.String())
		for _, n := range rec.names() {
			if err := s.saveManifest(c, b, n.Name, n.Version, true); err != nil {
				return err
			}
		}
	}
	if mounted {
		s.log.Warn("tree written after the last checkpoint is in use by a mount: left in place", "manifest", c)
		return nil
	}
	if err := removeAll(s.TreePath(c)); err != nil {
		return fmt.Errorf("package %s: tree: %w", c, err)
	}
	if err := s.commitTree(c, m); err != nil {
		return err
	}
	s.log.Info("tree built again after a reboot", "manifest", c)
	return nil
}
