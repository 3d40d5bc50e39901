package share

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/dgraph-io/badger/v4"
)

// An index that silently comes back empty (its directory deleted, a
// damaged value log) while trees and objects remain would let GC delete
// every object and tree, those bind-mounted into VMs included. Open
// therefore checks that the index is the store's own before anything uses
// it:
//
//   - The store has an identity, a random id kept both in the file
//     store-id and in the index (key s/id). An index without it, or with
//     another, is not this store's index.
//   - Every tree under trees/ has its package record: trees are built only
//     for recorded packages, and a package's tree is moved out of trees/
//     before its records are dropped (see dropPackage).
//
// Either failure refuses with ErrIndexLost, naming the recovery: Rebuild,
// with no daemon running.
const storeIDFile = "store-id"

var keyStoreID = []byte("s/id")

// defaultRebuildCommand is how an operator recovers from ErrIndexLost
// (Config.RebuildCommand).
const defaultRebuildCommand = "stork index rebuild"

// hintRebuild says how to recover from ErrIndexLost.
func (s *Store) hintRebuild() string {
	return "run `" + s.rebuildCmd + "` with the daemon stopped"
}

// checkIndex verifies that the index belongs to the store's files (see
// above), gives a store without an identity one, and marks partial every
// complete package whose tree is gone (a crash while it was dropped).
func (s *Store) checkIndex() error {
	fileID, ferr := readFileMax(s.path(storeIDFile), 128)
	if ferr != nil && !errors.Is(ferr, fs.ErrNotExist) {
		return fmt.Errorf("store %s: %s: %w", s.dir, storeIDFile, ferr)
	}
	fileID = bytes.TrimSpace(fileID)
	dbID, err := s.storeID()
	if err != nil {
		return fmt.Errorf("store %s: index: %w: %w; %s", s.dir, ErrIndexLost, err, s.hintRebuild())
	}
	npkg, err := s.countPackages()
	if err != nil {
		return fmt.Errorf("store %s: index: %w: %w; %s", s.dir, ErrIndexLost, err, s.hintRebuild())
	}
	switch {
	case len(fileID) > 0 && dbID == nil:
		return fmt.Errorf("store %s: the index has no store id but %s has one (%d packages in the index): %w; %s", s.dir, storeIDFile, npkg, ErrIndexLost, s.hintRebuild())
	case len(fileID) > 0 && !bytes.Equal(fileID, dbID):
		return fmt.Errorf("store %s: the index belongs to store %s, not %s: %w; %s", s.dir, dbID, fileID, ErrIndexLost, s.hintRebuild())
	case dbID == nil && npkg == 0:
		if has, what := s.holdsData(); has {
			return fmt.Errorf("store %s: the index is empty but %s: %w; %s", s.dir, what, ErrIndexLost, s.hintRebuild())
		}
	}
	if err := s.dropTornTrees(); err != nil {
		return fmt.Errorf("store %s: trees: %w", s.dir, err)
	}
	if err := s.checkTrees(npkg); err != nil {
		return err
	}
	if dbID == nil {
		if dbID, err = s.newStoreID(); err != nil {
			return fmt.Errorf("store %s: store id: %w", s.dir, err)
		}
	}
	if !bytes.Equal(fileID, dbID) {
		if err := s.writeFileAtomic(s.path(storeIDFile), append(bytes.Clone(dbID), '\n')); err != nil {
			return fmt.Errorf("store %s: %s: %w", s.dir, storeIDFile, err)
		}
	}
	return nil
}

// storeID returns the id the index holds (nil: none).
func (s *Store) storeID() ([]byte, error) {
	var id []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyStoreID)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		id, err = item.ValueCopy(nil)
		return err
	})
	return id, err
}

// newStoreID records a fresh random store id in the index.
func (s *Store) newStoreID() ([]byte, error) {
	id := []byte(hex.EncodeToString([]byte(randomSuffix() + randomSuffix())))
	return id, s.update(func(txn *badger.Txn) error { return txn.Set(keyStoreID, id) })
}

func (s *Store) countPackages() (int, error) {
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, prefixPackage, func([]byte, *badger.Item) error { n++; return nil })
	})
	return n, err
}

// holdsData reports whether trees/, manifests/ or objects/ hold anything,
// and says what.
func (s *Store) holdsData() (bool, string) {
	for _, d := range []string{treesDir, manifestsDir} {
		if des, err := os.ReadDir(s.path(d)); err == nil && len(des) > 0 {
			return true, fmt.Sprintf("%s/ holds %d entries", d, len(des))
		}
	}
	found := errors.New("found")
	if err := walkFiles(s.path(objectsDir), func(string, int64) error { return found }); errors.Is(err, found) {
		return true, "objects/ holds files"
	}
	return false, ""
}

// checkTrees refuses trees without a package record, and marks partial the
// complete packages whose tree is missing.
func (s *Store) checkTrees(npkg int) error {
	des, err := os.ReadDir(s.path(treesDir))
	if err != nil {
		return fmt.Errorf("store %s: trees: %w", s.dir, err)
	}
	var unknown []string
	err = s.db.View(func(txn *badger.Txn) error {
		for _, de := range des {
			ok, err := exists(txn, []byte(prefixPackage+de.Name()))
			if err != nil {
				return err
			}
			if !ok {
				unknown = append(unknown, de.Name())
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store %s: index: %w: %w; %s", s.dir, ErrIndexLost, err, s.hintRebuild())
	}
	if len(unknown) > 0 {
		return fmt.Errorf("store %s: index has %d packages but trees/ holds %d trees, %d unknown to it (first %s): %w; %s",
			s.dir, npkg, len(des), len(unknown), unknown[0], ErrIndexLost, s.hintRebuild())
	}
	return s.demoteTreeless()
}

// demoteTreeless marks partial every complete package whose tree is gone,
// so that the next download of it builds the tree again.
func (s *Store) demoteTreeless() error {
	var keys []string
	err := s.db.View(func(txn *badger.Txn) error {
		return scanPackages(txn, func(key string, r *pkgRecord) error {
			if r.State == StateComplete {
				if _, err := os.Lstat(s.path(treesDir, key)); errors.Is(err, fs.ErrNotExist) {
					keys = append(keys, key)
				}
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, key := range keys {
		s.log.Warn("complete package without its tree: marked partial", "manifest", key)
		if err := s.setState(key, StatePartial); err != nil {
			return err
		}
	}
	return nil
}

// setState sets the state of package key.
func (s *Store) setState(key string, st PackageState) error {
	return s.update(func(txn *badger.Txn) error {
		_, err := updatePackageTxn(txn, key, func(r *pkgRecord) { r.State = st })
		return err
	})
}
