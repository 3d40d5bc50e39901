package share

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// PackageInfo describes a package in the store.
type PackageInfo struct {
	ManifestCID cid.Cid
	Name        string
	Version     string
	State       PackageState
	Keep        bool  // kept without installs (see SetKeep)
	Size        int64 // bytes of all files (metadata.Manifest.TotalSize)
	Have        int64 // bytes of them the store holds
	Files       int   // file entries
	TreePath    string
	Installs    []string // VMs that installed it, sorted
	// Setuid counts the files whose mode has setuid or setgid: views
	// apply those bits only for VMs whose policy allows it (SetuidTree).
	Setuid int

	layout int // how its tree is built (pkgRecord.Layout)
}

// Install is one VM's view of a package, under one of its names. A VM has
// at most one install per package name.
type Install struct {
	VM          string
	Name        string // the name it was installed as
	Version     string
	ManifestCID cid.Cid
	Root        string // the directory Into is resolved beneath (the VM's root)
	Into        string // where the VM sees the tree: Root/...
	Mode        string // a ViewMode
	// Setuid says the view shows the package's setuid variant, mounted
	// without nosuid (the VM's policy allowed it when it was made).
	Setuid  bool
	Created time.Time
}

// Package describes the package whose manifest is manifestCID.
func (s *Store) Package(manifestCID cid.Cid) (*PackageInfo, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	var info *PackageInfo
	err := s.db.View(func(txn *badger.Txn) (err error) {
		info, err = s.packageInfo(txn, manifestCID)
		return err
	})
	return info, err
}

// Packages describes every package in the store, one entry per
// name@version (content published under two names is listed twice, with
// one manifest CID), sorted by name and version. Installs lists the VMs
// that installed it under that name.
func (s *Store) Packages() ([]PackageInfo, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	var out []PackageInfo
	err := s.db.View(func(txn *badger.Txn) error {
		recs := map[cid.Cid]pkgRecord{}
		err := scanPackages(txn, func(key string, r *pkgRecord) error {
			if c, err := cid.Decode(key); err == nil {
				recs[c] = *r
			}
			return nil
		})
		if err != nil {
			return err
		}
		byName, err := installsByName(txn, recs)
		if err != nil {
			return err
		}
		for c, r := range recs {
			info, err := s.packageInfo(txn, c)
			if err != nil {
				return err
			}
			for _, n := range r.names() {
				one := *info
				one.Name, one.Version = n.Name, n.Version
				one.Installs = byName[c.String()+"\x00"+n.Name]
				out = append(out, one)
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		if out[i].Version != out[j].Version {
			return out[i].Version < out[j].Version
		}
		return out[i].ManifestCID.String() < out[j].ManifestCID.String()
	})
	return out, err
}

// installsByName maps "<manifest CID>\x00<name>" to the VMs that
// installed that package under that name, sorted.
func installsByName(txn *badger.Txn, recs map[cid.Cid]pkgRecord) (map[string][]string, error) {
	out := map[string][]string{}
	err := scanJSON(txn, prefixInstall, func(_ []byte, r *installRecord) error {
		if r.Name == "" { // an older record: the package's first name
			c, err := cid.Decode(r.ManifestCID)
			if err != nil {
				return nil
			}
			r.Name = recs[c].Name
		}
		key := r.ManifestCID + "\x00" + r.Name
		out[key] = append(out[key], r.VM)
		return nil
	})
	for _, vms := range out {
		sort.Strings(vms)
	}
	return out, err
}

// Lookup describes the package registered as NAME@VERSION.
func (s *Store) Lookup(name, version string) (*PackageInfo, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	var info *PackageInfo
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(nameKey(name, version))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("package %s@%s: %w", name, version, ErrNotFound)
		}
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		c, err := cid.Decode(string(v))
		if err != nil {
			return fmt.Errorf("package %s@%s: index: %w", name, version, err)
		}
		if info, err = s.packageInfo(txn, c); err != nil {
			return err
		}
		info.Name, info.Version = name, version
		return nil
	})
	return info, err
}

// AddName records that the package manifestCID is also published as
// name@version (BeginPackage records the name a download starts with).
func (s *Store) AddName(name, version string, manifestCID cid.Cid) error {
	if name == "" || version == "" || hasNUL(name) || hasNUL(version) {
		return fmt.Errorf("package %q@%q: %w: empty name or version, or NUL", name, version, ErrInvalid)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return ErrClosed
	}
	key := manifestCID.String()
	// On disk first, as BeginPackage does (see Rebuild).
	if err := s.saveName(key, name, version, true); err != nil {
		return fmt.Errorf("package %s@%s (%s): %w", name, version, manifestCID, err)
	}
	return s.updateIfWrites(func(txn *badger.Txn) (bool, error) {
		var rec pkgRecord
		found, err := getJSON(txn, []byte(prefixPackage+key), &rec)
		if err != nil {
			return false, err
		}
		if !found {
			return false, fmt.Errorf("package %s@%s (%s): %w", name, version, manifestCID, ErrNotFound)
		}
		if rec.addName(name, version) {
			if err := setJSON(txn, []byte(prefixPackage+key), &rec); err != nil {
				return false, err
			}
		} else if known, err := namedAs(txn, name, version, key); err != nil || known {
			// A name the package has already (the daemon adds every
			// fetched package's): no write, and so no sync.
			return false, err
		}
		return true, txn.Set(nameKey(name, version), []byte(key))
	})
}

// namedAs reports whether name@version names the package key.
func namedAs(txn *badger.Txn, name, version, key string) (bool, error) {
	item, err := txn.Get(nameKey(name, version))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	v, err := item.ValueCopy(nil)
	return string(v) == key, err
}

func (s *Store) packageInfo(txn *badger.Txn, c cid.Cid) (*PackageInfo, error) {
	key := c.String()
	var rec pkgRecord
	found, err := getJSON(txn, []byte(prefixPackage+key), &rec)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("package %s: %w", c, ErrNotFound)
	}
	m, _, err := s.manifestTxn(txn, c)
	if err != nil {
		return nil, err
	}
	info := &PackageInfo{ManifestCID: c, Name: rec.Name, Version: rec.Version, State: rec.State, Keep: rec.Keep, Size: m.TotalSize(), layout: rec.Layout}
	if rec.State == StateComplete {
		info.TreePath = s.TreePath(c)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != metadata.TypeFile {
			continue
		}
		info.Files++
		if e.Mode&0o6000 != 0 {
			info.Setuid++
		}
		if rec.State == StateComplete {
			continue
		}
		n, err := haveBytes(txn, e, m.ChunkSize)
		if err != nil {
			return nil, err
		}
		info.Have += n
	}
	if rec.State == StateComplete {
		info.Have = info.Size
	}
	err = scanKeys(txn, prefixRef+key+"/", func(k []byte, _ *badger.Item) error {
		info.Installs = append(info.Installs, strings.TrimPrefix(string(k), prefixRef+key+"/"))
		return nil
	})
	return info, err
}

// haveBytes counts the bytes of e the store holds: all of them if its
// object exists, else those of the chunks recorded present.
func haveBytes(txn *badger.Txn, e *metadata.Entry, chunkSize int64) (int64, error) {
	recs, err := findObject(txn, e.Hash)
	if err != nil {
		return 0, err
	}
	if len(recs) > 0 {
		return e.Size, nil
	}
	id := partialID(e.Hash, e.Size)
	var n int64
	for j, cs := range e.Chunks {
		ok, err := exists(txn, presenceKey(id, cs))
		if err != nil {
			return 0, err
		}
		if ok {
			n += min(chunkSize, e.Size-int64(j)*chunkSize)
		}
	}
	return n, nil
}

// Manifest returns the manifest of a package in the store and its bytes.
func (s *Store) Manifest(manifestCID cid.Cid) (*metadata.Manifest, []byte, error) {
	if s.isClosed() {
		return nil, nil, ErrClosed
	}
	var m *metadata.Manifest
	var b []byte
	err := s.db.View(func(txn *badger.Txn) (err error) {
		m, b, err = s.manifestTxn(txn, manifestCID)
		return err
	})
	return m, b, err
}

// manifestTxn returns a stored manifest, decoded once and then cached by
// CID (manifests are content-addressed and immutable). Callers must not
// modify the returned manifest.
func (s *Store) manifestTxn(txn *badger.Txn, c cid.Cid) (*metadata.Manifest, []byte, error) {
	s.mcMu.Lock()
	hit, ok := s.mcache[c]
	s.mcMu.Unlock()
	if ok {
		return hit.m, hit.b, nil
	}
	m, b, err := manifestTxn(txn, c, s.lim)
	if err != nil {
		return nil, nil, err
	}
	s.mcMu.Lock()
	if s.mcache == nil || len(s.mcache) >= maxCachedManifests {
		s.mcache = make(map[cid.Cid]cachedManifest)
	}
	s.mcache[c] = cachedManifest{m: m, b: b}
	s.mcMu.Unlock()
	return m, b, nil
}

type cachedManifest struct {
	m *metadata.Manifest
	b []byte
}

// maxCachedManifests bounds the decoded-manifest cache.
const maxCachedManifests = 64

func manifestTxn(txn *badger.Txn, c cid.Cid, lim metadata.Limits) (*metadata.Manifest, []byte, error) {
	item, err := txn.Get([]byte(prefixManifest + c.String()))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil, fmt.Errorf("package %s: manifest: %w", c, ErrNotFound)
	}
	if err != nil {
		return nil, nil, err
	}
	b, err := item.ValueCopy(nil)
	if err != nil {
		return nil, nil, err
	}
	m, err := metadata.DecodeManifest(b, lim)
	if err != nil {
		return nil, nil, fmt.Errorf("package %s: stored manifest: %w: %w", c, ErrBadManifest, err)
	}
	return m, b, nil
}

// SetKeep marks a package kept (GC leaves it even without installs) or not.
// BeginPackage sets it; RemovePackage clears it with the package.
func (s *Store) SetKeep(manifestCID cid.Cid, keep bool) error {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return ErrClosed
	}
	key := []byte(prefixPackage + manifestCID.String())
	return s.updateIfWrites(func(txn *badger.Txn) (bool, error) {
		var rec pkgRecord
		found, err := getJSON(txn, key, &rec)
		if err != nil {
			return false, err
		}
		if !found {
			return false, fmt.Errorf("package %s: %w", manifestCID, ErrNotFound)
		}
		if rec.Keep == keep {
			// Nothing to write, nor to sync: the daemon marks every
			// package it fetched, which BeginPackage kept already.
			return false, nil
		}
		rec.Keep = keep
		return true, setJSON(txn, key, &rec)
	})
}

// RemovePackage removes a package's record, manifest and tree at once. It
// refuses with ErrInUse while any VM install references it or a mount (a
// view) uses its tree. Its objects and partial files are left to GC, which
// removes those no other package uses.
func (s *Store) RemovePackage(manifestCID cid.Cid) error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.isClosed() {
		return ErrClosed
	}
	key := manifestCID.String()
	var vms []string
	var found bool
	err := s.db.View(func(txn *badger.Txn) (err error) {
		if found, err = exists(txn, []byte(prefixPackage+key)); err != nil || !found {
			return err
		}
		return scanKeys(txn, prefixRef+key+"/", func(k []byte, _ *badger.Item) error {
			vms = append(vms, strings.TrimPrefix(string(k), prefixRef+key+"/"))
			return nil
		})
	})
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("package %s: %w", manifestCID, ErrNotFound)
	}
	if len(vms) > 0 {
		return fmt.Errorf("package %s: %w: installed in VMs %s", manifestCID, ErrInUse, strings.Join(vms, ", "))
	}
	if err := s.refuseMounted(key); err != nil {
		return err
	}
	if _, err := s.dropPackage(key); err != nil {
		return fmt.Errorf("package %s: %w", manifestCID, err)
	}
	s.log.Info("package removed", "manifest", manifestCID)
	return nil
}

// deletePackageTxn deletes a package's records (not its tree).
func deletePackageTxn(txn *badger.Txn, key string) error {
	var rec pkgRecord
	found, err := getJSON(txn, []byte(prefixPackage+key), &rec)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("package %s: %w", key, ErrNotFound)
	}
	for _, n := range rec.names() {
		item, err := txn.Get(nameKey(n.Name, n.Version))
		if err != nil {
			continue
		}
		if v, err := item.ValueCopy(nil); err == nil && string(v) == key {
			if err := txn.Delete(nameKey(n.Name, n.Version)); err != nil {
				return err
			}
		}
	}
	if err := txn.Delete([]byte(prefixManifest + key)); err != nil {
		return err
	}
	return txn.Delete([]byte(prefixPackage + key))
}

// dropPartial forgets the Partial of a removed package.
func (s *Store) dropPartial(key string) {
	s.mu.Lock()
	d := s.filling[key]
	delete(s.filling, key)
	s.mu.Unlock()
	if d != nil {
		d.removed.Store(true)
		d.release()
	}
}

// RecordInstall records VM in.VM's view of the package in.ManifestCID
// under in.Name (Version, Root, Into, Mode describe it). An install pins
// the package: neither GC nor RemovePackage removes it. A VM has one
// install per name: recording it again replaces the earlier record (an
// upgrade, a new mode).
func (s *Store) RecordInstall(in Install) error {
	if err := checkVM(in.VM); err != nil {
		return err
	}
	if in.Name == "" || hasNUL(in.Name) {
		return fmt.Errorf("install in VM %s: package name %q: %w", in.VM, in.Name, ErrInvalid)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return ErrClosed
	}
	key := in.ManifestCID.String()
	return s.update(func(txn *badger.Txn) error {
		ok, err := exists(txn, []byte(prefixPackage+key))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("install %s (%s) in VM %s: package %w", in.Name, in.ManifestCID, in.VM, ErrNotFound)
		}
		if err := dropInstallTxn(txn, in.VM, in.Name); err != nil {
			return err
		}
		rec := installRecord{VM: in.VM, Name: in.Name, Version: in.Version, ManifestCID: key, Root: in.Root, Into: in.Into, Mode: in.Mode, Setuid: in.Setuid, Created: time.Now().UTC()}
		if err := setJSON(txn, installKey(in.VM, in.Name), &rec); err != nil {
			return err
		}
		return txn.Set([]byte(prefixRef+key+"/"+in.VM), []byte{})
	})
}

// DropInstall drops VM vm's install of the package called name.
func (s *Store) DropInstall(vm, name string) error {
	if err := checkVM(vm); err != nil {
		return err
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return ErrClosed
	}
	return s.update(func(txn *badger.Txn) error {
		recs, err := vmInstallsTxn(txn, vm)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.rec.Name == name {
				return dropInstallTxn(txn, vm, name)
			}
		}
		return fmt.Errorf("install of %s in VM %s: %w", name, vm, ErrNotFound)
	})
}

// vmInstall is an install record with its key, its name filled in.
type vmInstall struct {
	key []byte
	rec installRecord
}

// vmInstallsTxn reads VM vm's install records. A record written before
// names were keys gets its package's first name.
func vmInstallsTxn(txn *badger.Txn, vm string) ([]vmInstall, error) {
	var out []vmInstall
	err := scanJSON(txn, prefixInstall+vm+"\x00", func(k []byte, r *installRecord) error {
		out = append(out, vmInstall{key: bytes.Clone(k), rec: *r})
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		r := &out[i].rec
		if r.Name != "" {
			continue
		}
		var p pkgRecord
		if _, err := getJSON(txn, []byte(prefixPackage+r.ManifestCID), &p); err != nil {
			return nil, err
		}
		r.Name, r.Version = p.Name, p.Version
		if r.Root == "" {
			r.Root = filepath.Dir(r.Into)
		}
	}
	return out, nil
}

// dropInstallTxn deletes VM vm's record of name, if any, and the VM's
// reference to its package unless another of the VM's installs uses it.
func dropInstallTxn(txn *badger.Txn, vm, name string) error {
	recs, err := vmInstallsTxn(txn, vm)
	if err != nil {
		return err
	}
	var dropped []string
	for _, r := range recs {
		if r.rec.Name == name {
			if err := txn.Delete(r.key); err != nil {
				return err
			}
			dropped = append(dropped, r.rec.ManifestCID)
		}
	}
	for _, c := range dropped {
		used := false
		for _, r := range recs {
			used = used || (r.rec.Name != name && r.rec.ManifestCID == c)
		}
		if !used {
			if err := txn.Delete([]byte(prefixRef + c + "/" + vm)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Installs lists VM vm's installs; vm "" lists every VM's.
func (s *Store) Installs(vm string) ([]Install, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	var vms []string
	err := s.db.View(func(txn *badger.Txn) error {
		if vm != "" {
			vms = []string{vm}
		} else {
			seen := map[string]bool{}
			if err := scanKeys(txn, prefixInstall, func(k []byte, _ *badger.Item) error {
				id, _, _ := strings.Cut(strings.TrimPrefix(string(k), prefixInstall), "\x00")
				if !seen[id] {
					seen[id] = true
					vms = append(vms, id)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Install
	for _, id := range vms {
		var recs []vmInstall
		if err := s.db.View(func(txn *badger.Txn) (err error) {
			recs, err = vmInstallsTxn(txn, id)
			return err
		}); err != nil {
			return nil, err
		}
		for _, r := range recs {
			c, err := cid.Decode(r.rec.ManifestCID)
			if err != nil {
				return nil, fmt.Errorf("install record %q: %w", r.key, err)
			}
			out = append(out, Install{VM: r.rec.VM, Name: r.rec.Name, Version: r.rec.Version, ManifestCID: c,
				Root: r.rec.Root, Into: r.rec.Into, Mode: r.rec.Mode, Setuid: r.rec.Setuid, Created: r.rec.Created})
		}
	}
	return out, nil
}

func installKey(vm, name string) []byte { return []byte(prefixInstall + vm + "\x00" + name) }

func checkVM(vm string) error {
	if vm == "" || len(vm) > 255 || strings.ContainsAny(vm, "/\x00") {
		return fmt.Errorf("VM id %q: %w: want 1 to 255 bytes, no '/' or NUL", vm, ErrInvalid)
	}
	return nil
}

// ReadChunk returns chunk c from an object or from a partial file where it
// is recorded present, re-verified against c. ErrNotFound if the store does
// not hold it (or holds only bytes that no longer verify).
func (s *Store) ReadChunk(c cid.Cid) ([]byte, error) { return s.ReadChunkInto(c, nil) }

// ReadChunkInto is ReadChunk into buf when it has the capacity (and, for
// direct I/O, the alignment); it returns the chunk, in buf or not.
func (s *Store) ReadChunkInto(c cid.Cid, buf []byte) ([]byte, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	if l, ok := s.places.get(c); ok {
		// Whatever hashes to c is c: a stale place fails the check.
		if data, err := s.readPlace(c, l, buf); err == nil {
			return data, nil
		}
		s.places.drop(c)
	}
	cs := c.String()
	type found struct {
		chunkPlace
		rec *objRecord // the object's record, nil for a partial file
	}
	var locs []found
	err := s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, prefixChunkLoc+cs+"/", func(k []byte, item *badger.Item) error {
			_, id, ok := splitChunkLocKey(k)
			if !ok {
				return nil
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			off, n, ok := decodeLoc(v)
			if !ok {
				return nil
			}
			recs, err := findObject(txn, hashOfPartialID(id))
			if err != nil {
				return err
			}
			for i := range recs {
				r := &recs[i]
				locs = append(locs, found{chunkPlace{path: s.ObjectPath(r.Hash, r.variant()), off: off, n: n}, r})
			}
			if len(recs) == 0 {
				if ok, err := exists(txn, presenceKey(id, cs)); err != nil {
					return err
				} else if ok {
					locs = append(locs, found{chunkPlace: chunkPlace{path: s.partialPath(id), off: off, n: n, partial: true}})
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for _, l := range locs {
		data, err := s.readPlace(c, l.chunkPlace, buf)
		if err != nil {
			if errors.Is(err, metadata.ErrHashMismatch) {
				s.log.Warn("stored chunk fails verification", "chunk", c, "path", l.path)
			} else {
				s.log.Debug("read chunk", "chunk", c, "path", l.path, "err", err)
			}
			continue
		}
		if l.rec != nil {
			// The rest of the object's chunks are served from it too:
			// one index lookup (one record decoded) per object, not per chunk.
			s.places.putObject(l.path, l.rec)
			s.places.put(c, l.chunkPlace)
		}
		return data, nil
	}
	return nil, fmt.Errorf("chunk %s: %w", c, ErrNotFound)
}

// readPlace reads chunk c at l and checks it against c, unless l is in an
// object this process verified in full and whose file has not been written
// since (same inode, size and modification time: placeCache.verified).
func (s *Store) readPlace(c cid.Cid, l chunkPlace, buf []byte) ([]byte, error) {
	data, st, err := s.readChunkAt(l.path, l.off, l.n, buf)
	if err != nil {
		return nil, err
	}
	if !l.partial && s.places.unchanged(l.path, st) {
		return data, nil
	}
	if err := metadata.VerifyCID(c, data); err != nil {
		return nil, err
	}
	return data, nil
}

// chunkPlace is where a chunk's bytes are: a file, an offset, a length.
type chunkPlace struct {
	path    string
	off, n  int64
	partial bool
}

// placeCache remembers where ReadChunk found chunks in objects, so that
// serving them skips the index (an iterator seek, an object record
// decoded: most of ReadChunk's CPU for a small chunk, and more the more
// chunks the object has). It needs no invalidation: ReadChunk checks what
// it reads against the CID, and a place that no longer holds the chunk
// fails and is looked up again.
//
// It also remembers the objects this process verified in full as it stored
// them (every chunk hashed when it arrived, the file untouched by anyone
// else since: see prepareObject) with the file's stamp then. A chunk read
// from such an object whose file still has that inode, size and
// modification time is not hashed again before it is uploaded: a write or
// truncate by anyone moves the modification time (hard links into package
// trees and views move only the change time, which is why that is not
// compared). What it does not catch is someone setting the time back on
// purpose, or the disk returning other bytes than were written (bit rot);
// the receiver's own check still keeps such a chunk out of its store (and
// bans this host for that package), as a BitTorrent peer would. A restart
// forgets it all: objects from an earlier run are checked chunk by chunk.
// Bounded: each map is emptied when full.
type placeCache struct {
	mu   sync.Mutex
	m    map[cid.Cid]chunkPlace
	good map[string]fileStamp // object path -> its stamp when verified
}

const (
	maxPlaces   = 1 << 16
	maxVerified = 1 << 14
)

func (pc *placeCache) get(c cid.Cid) (chunkPlace, bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	l, ok := pc.m[c]
	return l, ok
}

func (pc *placeCache) put(c cid.Cid, l chunkPlace) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.m == nil || len(pc.m) >= maxPlaces {
		pc.m = make(map[cid.Cid]chunkPlace)
	}
	pc.m[c] = l
}

// putObject records the place of every chunk of the object at path (its
// chunks at multiples of the chunk size), unless it has a quarter of the
// cache's room or more.
func (pc *placeCache) putObject(path string, rec *objRecord) {
	if len(rec.Chunks) >= maxPlaces/4 || rec.ChunkSize <= 0 {
		return
	}
	places := make([]cid.Cid, len(rec.Chunks))
	for j, cs := range rec.Chunks {
		c, err := cid.Decode(cs)
		if err != nil {
			return
		}
		places[j] = c
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.m == nil || len(pc.m)+len(places) > maxPlaces {
		pc.m = make(map[cid.Cid]chunkPlace)
	}
	for j, c := range places {
		off := int64(j) * rec.ChunkSize
		pc.m[c] = chunkPlace{path: path, off: off, n: min(rec.ChunkSize, rec.Size-off)}
	}
}

func (pc *placeCache) drop(c cid.Cid) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	delete(pc.m, c)
}

// verified records that the object file at path holds exactly its
// content while its stamp is st.
func (pc *placeCache) verified(path string, st fileStamp) {
	if !st.ok {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.good == nil || len(pc.good) >= maxVerified {
		pc.good = make(map[string]fileStamp)
	}
	pc.good[path] = st
}

// unchanged reports whether the object file at path was verified and
// has not been written since.
func (pc *placeCache) unchanged(path string, st fileStamp) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	v, ok := pc.good[path]
	return ok && v.sameContent(st)
}

// HasChunk reports whether the store holds chunk c, in an object or
// recorded present in a partial file, without reading it. ReadChunk still
// re-verifies the bytes before it returns them.
func (s *Store) HasChunk(c cid.Cid) bool {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return false
	}
	cs := c.String()
	found := false
	_ = s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, prefixChunkLoc+cs+"/", func(k []byte, _ *badger.Item) error {
			if found {
				return nil
			}
			_, id, ok := splitChunkLocKey(k)
			if !ok {
				return nil
			}
			recs, err := findObject(txn, hashOfPartialID(id))
			if err != nil {
				return err
			}
			if len(recs) > 0 {
				found = true
				return nil
			}
			ok, err = exists(txn, presenceKey(id, cs))
			found = err == nil && ok
			return err
		})
	})
	return found
}
