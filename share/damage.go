package share

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"

	"github.com/storkpm/stork/metadata"
)

// Damage is an object file changed on disk after it was stored: a flipped
// byte, a chmod, a write through a link view. It is found three ways:
//
//   - CheckPackage, before a tree is exposed to a VM: each object of the
//     package is lstat'ed and compared with the inode, size, mode and
//     modification time recorded when it was verified (objRecord.Ino,
//     Mtime); a mismatch, or no record of them, costs a full re-hash.
//   - Scrub, in the background at a bounded rate: every object is
//     re-hashed in turn, which also finds changes that kept the
//     modification time (bit rot, a time set back). An object whose
//     content was verified less than Config.ScrubFresh ago (as it was
//     stored, or by the previous pass) gets the cheap check instead: a
//     host that just fetched an upgrade does not hash it a second time
//     while it serves it, and bit rot is a matter of months.
//   - Verify with repair, with no daemon running.
//
// A mode changed on a file whose content still verifies is put back. An
// object that fails is quarantined (quarantineObject): its file moves to
// quarantine/, its records go (so it is never served to peers again), and
// every package using it becomes partial, with a q/ record saying why, so
// that its tree is not exposed to new installs and the next download of it
// (node re-fetches them: RepairsPending) fetches the file again and
// relinks the tree in place (relinkTree), where views bound to it see the
// good file. Commit drops the q/ record.

// prefixRepair keys the packages to fetch again: q/<manifest CID>.
const prefixRepair = "q/"

// repairRecord is a package waiting to be fetched again (q/ key).
type repairRecord struct {
	Objects []string  `json:"objects"` // damaged objects it uses
	Reason  string    `json:"reason"`  // the first damage found
	Since   time.Time `json:"since"`
}

// DamagedObject is an object found changed and quarantined.
type DamagedObject struct {
	Object   string    // object name (hash, and permission suffix)
	Reason   string    // what was wrong
	Packages []cid.Cid // packages using it, partial until fetched again
}

// CheckResult says what CheckPackage or Scrub found.
type CheckResult struct {
	Objects  int   // objects checked
	Rehashed int   // of them, re-hashed in full
	Bytes    int64 // bytes re-hashed
	Damaged  []DamagedObject
	// Relink lists packages whose tree did not match their objects (an
	// entry replaced): partial until their next commit relinks the tree.
	Relink []cid.Cid
}

// Repairing is true when packages are now partial and must be fetched
// again before use.
func (r *CheckResult) Repairing() bool { return len(r.Damaged) > 0 || len(r.Relink) > 0 }

// CheckPackage checks a complete package before its tree is exposed:
// every object it uses by its recorded stamp (re-hashing those that
// differ), and every file of its tree is its object's inode. Damaged
// objects are quarantined; if anything was wrong the package is partial
// afterwards (CheckResult.Repairing) and must be downloaded again.
func (s *Store) CheckPackage(c cid.Cid) (*CheckResult, error) {
	res := &CheckResult{}
	s.life.RLock()
	if s.isClosed() {
		s.life.RUnlock()
		return nil, ErrClosed
	}
	var prec pkgRecord
	var found bool
	err := s.db.View(func(txn *badger.Txn) (err error) {
		found, err = getJSON(txn, []byte(prefixPackage+c.String()), &prec)
		return err
	})
	if err == nil && !found {
		err = fmt.Errorf("package %s: %w", c, ErrNotFound)
	}
	if err != nil || prec.State != StateComplete {
		s.life.RUnlock()
		return res, err
	}
	m, _, err := s.Manifest(c)
	if err != nil {
		s.life.RUnlock()
		return nil, err
	}
	var names []string
	for i := range m.Entries {
		if e := &m.Entries[i]; e.Type == metadata.TypeFile {
			names = append(names, objectName(e.Hash, variantOf(prec.Layout, e)))
		}
	}
	recs, err := s.objectRecords(names)
	if err != nil {
		s.life.RUnlock()
		return nil, err
	}
	var bad []badObject
	treeBad := ""
	stamps := make(map[string]fileStamp) // object name → its file's stamp
	tree, err := openRoot(s.TreePath(c))
	if err == nil {
		defer unix.Close(tree)
	} // else every entry differs: the tree is rebuilt by the next download
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != metadata.TypeFile {
			continue
		}
		name := objectName(e.Hash, variantOf(prec.Layout, e))
		st, seen := stamps[name]
		if !seen {
			var reason string
			if reason, st = s.checkObject(name, recs[name], false, res); reason != "" {
				bad = append(bad, badObject{name, reason})
			}
			stamps[name] = st
		}
		if treeBad == "" && !treeStamp(tree, e.Path).sameInode(st) {
			treeBad = e.Path
		}
	}
	s.life.RUnlock()
	if err := s.quarantineAll(bad, res); err != nil {
		return res, err
	}
	if treeBad != "" && len(res.Damaged) == 0 {
		reason := fmt.Sprintf("tree entry %q is not its object", treeBad)
		if err := s.markRepair(c.String(), nil, reason); err != nil {
			return res, err
		}
		s.log.Warn("package tree changed: it is relinked by its next download", "manifest", c, "reason", reason)
		res.Relink = append(res.Relink, c)
	}
	return res, nil
}

type badObject struct{ name, reason string }

// treeStamp stamps the entry p of the tree whose root is open as tree,
// following no symlink on the way.
func treeStamp(tree int, p string) fileStamp {
	if tree < 0 {
		return fileStamp{statFailed: true}
	}
	st, err := lstatBeneath(tree, p)
	if err != nil {
		return fileStamp{statFailed: true}
	}
	return stampOf(&st)
}

// objectRecords reads the records of the named objects in one
// transaction; an object without one is absent from the map.
func (s *Store) objectRecords(names []string) (map[string]*objRecord, error) {
	out := make(map[string]*objRecord, len(names))
	err := s.db.View(func(txn *badger.Txn) error {
		for _, name := range names {
			if _, ok := out[name]; ok {
				continue
			}
			var rec objRecord
			found, err := getJSON(txn, []byte(prefixObject+name), &rec)
			if err != nil {
				return err
			}
			if found {
				out[name] = &rec
			}
		}
		return nil
	})
	return out, err
}

// checkObject checks the object called name, whose record is rec (nil:
// none), re-hashing it if force or if its stamp differs from the record;
// a file whose content verifies gets its mode put back and its new stamp
// recorded. It returns why the object is damaged (or "") and the stamp of
// its file. s.life is held shared.
func (s *Store) checkObject(name string, rec *objRecord, force bool, res *CheckResult) (string, fileStamp) {
	res.Objects++
	if rec == nil {
		return "no index record", fileStamp{}
	}
	p := s.ObjectPath(rec.Hash, rec.variant())
	st := lstamp(p)
	if !st.ok {
		return "object file missing", st
	}
	if !force && rec.stampMatches(st) {
		return "", st
	}
	if !sameOwner(st.uid, st.gid, rec.UID, rec.GID) && st.regular() && st.size == rec.Size {
		// A chown: put the owner back (the mode next: chown clears setuid).
		if err := os.Lchown(p, int(rec.UID), int(rec.GID)); err == nil {
			s.log.Warn("object owner changed on disk: put back", "object", name, "owner", fmt.Sprintf("%d:%d", st.uid, st.gid), "want", fmt.Sprintf("%d:%d", rec.UID, rec.GID))
		}
	}
	if st.mode&0o7777 != rec.Perm && st.regular() && st.size == rec.Size {
		// A chmod: put the mode back before the content is checked.
		if err := os.Chmod(p, os.FileMode(rec.Perm)); err == nil {
			s.log.Warn("object mode changed on disk: put back", "object", name, "mode", fmt.Sprintf("%#o", st.mode&0o7777), "want", fmt.Sprintf("%#o", rec.Perm))
		}
	}
	res.Rehashed++
	res.Bytes += rec.Size
	if err := verifyObjectFile(p, rec); err != nil {
		return err.Error(), st
	}
	now := lstamp(p)
	if !rec.stampMatches(now) || s.scrubFresh > 0 {
		rec.setStamp(now)
		rec.Verified = s.now().UnixNano()
		if err := s.updateLazy(func(txn *badger.Txn) error { return setJSON(txn, []byte(prefixObject+name), rec) }); err != nil {
			s.log.Warn("record object stamp", "object", name, "err", err)
		}
	}
	return "", now
}

// quarantineAll quarantines every bad object and adds it to res.
func (s *Store) quarantineAll(bad []badObject, res *CheckResult) error {
	for _, b := range bad {
		pkgs, err := s.quarantineObject(b.name, b.reason)
		if err != nil {
			return err
		}
		if pkgs != nil {
			res.Damaged = append(res.Damaged, DamagedObject{Object: b.name, Reason: b.reason, Packages: pkgs})
		}
	}
	return nil
}

// quarantineObject moves a damaged object out of objects/, drops its
// records, and marks every package using it for repair (partial, with a
// q/ record). It first checks again, holding the store exclusively, that
// the object is indexed and still fails (another check, or GC, may have
// dealt with it); it returns nil packages if there was nothing to do.
func (s *Store) quarantineObject(name, reason string) ([]cid.Cid, error) {
	s.life.Lock()
	defer s.life.Unlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	var rec objRecord
	var found bool
	if err := s.db.View(func(txn *badger.Txn) (err error) {
		found, err = getJSON(txn, []byte(prefixObject+name), &rec)
		return err
	}); err != nil {
		return nil, err
	}
	p := s.ObjectPath(rec.Hash, rec.variant())
	if !found || verifyObjectFile(p, &rec) == nil {
		return nil, nil
	}
	dst := ""
	if _, err := os.Lstat(p); err == nil {
		if dst, err = s.quarantineFile(p, name); err != nil {
			return nil, err
		}
	}
	if err := s.dropObjectRecords(&rec, name); err != nil {
		return nil, fmt.Errorf("object %s: %w", name, err)
	}
	pkgs, err := s.packagesUsing(name)
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, c := range pkgs {
		if err := s.markRepair(c.String(), []string{name}, reason); err != nil {
			return nil, err
		}
		refs = append(refs, c.String())
	}
	s.damaged.Add(1)
	s.log.Warn("object damaged on disk: quarantined; the packages using it are fetched again",
		"object", name, "reason", reason, "quarantine", dst, "packages", strings.Join(refs, ","))
	return pkgs, nil
}

// dropObjectRecords drops an object's record, and where its chunks are
// unless another variant (permission) of the content remains.
func (s *Store) dropObjectRecords(rec *objRecord, name string) error {
	return s.update(func(txn *badger.Txn) error {
		if err := txn.Delete([]byte(prefixObject + name)); err != nil {
			return err
		}
		others, err := findObject(txn, rec.Hash)
		if err != nil {
			return err
		}
		for _, o := range others {
			if objectName(o.Hash, o.variant()) != name {
				return nil
			}
		}
		id := partialID(rec.Hash, rec.Size)
		for _, c := range rec.Chunks {
			if err := txn.Delete(chunkLocKey(c, id)); err != nil {
				return err
			}
		}
		return nil
	})
}

// packagesUsing lists the packages whose manifests link object name.
func (s *Store) packagesUsing(name string) ([]cid.Cid, error) {
	var out []cid.Cid
	err := s.db.View(func(txn *badger.Txn) error {
		type pkg struct {
			c      cid.Cid
			layout int
		}
		var pkgs []pkg
		if err := scanPackages(txn, func(key string, r *pkgRecord) error {
			c, err := cid.Decode(key)
			if err != nil {
				return nil
			}
			pkgs = append(pkgs, pkg{c, r.Layout})
			return nil
		}); err != nil {
			return err
		}
		for _, p := range pkgs {
			c := p.c
			m, _, err := s.manifestTxn(txn, c)
			if err != nil {
				return err
			}
			for i := range m.Entries {
				e := &m.Entries[i]
				if e.Type == metadata.TypeFile && objectName(e.Hash, variantOf(p.layout, e)) == name {
					out = append(out, c)
					break
				}
			}
		}
		return nil
	})
	return out, err
}

// markRepair marks package key partial and records (in its q/ record)
// the damaged objects and why it must be fetched again.
func (s *Store) markRepair(key string, objects []string, reason string) error {
	return s.update(func(txn *badger.Txn) error {
		found, err := updatePackageTxn(txn, key, func(r *pkgRecord) { r.State = StatePartial })
		if err != nil || !found {
			return err
		}
		var rr repairRecord
		if _, err := getJSON(txn, []byte(prefixRepair+key), &rr); err != nil {
			return err
		}
		if rr.Since.IsZero() {
			rr.Since, rr.Reason = time.Now().UTC(), reason
		}
		for _, o := range objects {
			if !containsString(rr.Objects, o) {
				rr.Objects = append(rr.Objects, o)
			}
		}
		return setJSON(txn, []byte(prefixRepair+key), &rr)
	})
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// repaired drops the q/ record of a package just committed, counting its
// damaged objects repaired.
func (s *Store) repaired(key string) {
	var rr repairRecord
	var found bool
	err := s.updateIfWrites(func(txn *badger.Txn) (bool, error) {
		var err error
		if found, err = getJSON(txn, []byte(prefixRepair+key), &rr); err != nil || !found {
			return false, err
		}
		return true, txn.Delete([]byte(prefixRepair + key))
	})
	if err != nil {
		s.log.Warn("drop repair record", "manifest", key, "err", err)
		return
	}
	if found {
		s.repairedObjects.Add(int64(len(rr.Objects)))
		s.log.Info("package repaired", "manifest", key, "objects", len(rr.Objects), "since", rr.Since)
	}
}

// Repair is a package waiting to be fetched again because objects it
// uses were damaged (or its tree changed).
type Repair struct {
	Package PackageInfo
	Objects []string
	Reason  string
	Since   time.Time
}

// RepairsPending lists the packages waiting to be fetched again, oldest
// first.
func (s *Store) RepairsPending() ([]Repair, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.isClosed() {
		return nil, ErrClosed
	}
	var out []Repair
	err := s.db.View(func(txn *badger.Txn) error {
		return scanJSON(txn, prefixRepair, func(k []byte, rr *repairRecord) error {
			c, err := cid.Decode(strings.TrimPrefix(string(k), prefixRepair))
			if err != nil {
				return nil
			}
			info, err := s.packageInfo(txn, c)
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			out = append(out, Repair{Package: *info, Objects: rr.Objects, Reason: rr.Reason, Since: rr.Since})
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out, err
}

// DamageCounts are the store's damage counters since it was opened.
type DamageCounts struct {
	Damaged  int64 // objects found damaged and quarantined
	Repaired int64 // damaged objects of packages committed again
	Scrubbed int64 // bytes Scrub re-hashed
}

// DamageCounts returns the store's damage counters.
func (s *Store) DamageCounts() DamageCounts {
	return DamageCounts{Damaged: s.damaged.Load(), Repaired: s.repairedObjects.Load(), Scrubbed: s.scrubbed.Load()}
}

// Scrub re-hashes object files in index order, starting after the object
// called after ("" : the first), until it has re-hashed budget bytes (at
// least one object) or reached the last object, and quarantines those
// that fail. Objects verified within Config.ScrubFresh are only
// compared with their stamps (and re-hashed if that differs), each
// counting scrubCheckCost bytes of the budget. It returns where the next
// call continues ("" once a pass is complete). Each call holds the store
// shared only while it hashes, so a rate-limited caller (node's
// scrubber) keeps it from delaying others.
func (s *Store) Scrub(ctx context.Context, after string, budget int64) (next string, res *CheckResult, err error) {
	return s.scrub(ctx, after, budget, s.scrubFresh)
}

// scrub is Scrub with objects verified within fresh left to the cheap
// check (0: none).
func (s *Store) scrub(ctx context.Context, after string, budget int64, fresh time.Duration) (next string, res *CheckResult, err error) {
	res = &CheckResult{}
	s.life.RLock()
	if s.isClosed() {
		s.life.RUnlock()
		return "", nil, ErrClosed
	}
	now := s.now()
	names, recs, more, err := s.objectsAfter(after, budget, now, fresh)
	if err != nil {
		s.life.RUnlock()
		return "", nil, err
	}
	var bad []badObject
	for i, name := range names {
		if err := ctx.Err(); err != nil {
			s.life.RUnlock()
			return after, res, err
		}
		if reason, _ := s.checkObject(name, recs[i], !isFresh(recs[i], now, fresh), res); reason != "" {
			bad = append(bad, badObject{name, reason})
		}
		after = name
	}
	s.life.RUnlock()
	s.scrubbed.Add(res.Bytes)
	if !more {
		after = ""
	}
	return after, res, s.quarantineAll(bad, res)
}

// isFresh reports whether the object rec describes had its content
// verified less than fresh before now.
func isFresh(rec *objRecord, now time.Time, fresh time.Duration) bool {
	if fresh <= 0 || rec == nil || rec.Verified == 0 {
		return false
	}
	age := now.Sub(time.Unix(0, rec.Verified))
	return age >= 0 && age < fresh
}

// objectsAfter lists the object names (and records) after `after` in
// index order whose sizes reach budget (at least one), and whether more
// follow. Fresh objects (which Scrub does not re-hash) count for
// scrubCheckCost bytes each.
func (s *Store) objectsAfter(after string, budget int64, now time.Time, fresh time.Duration) ([]string, []*objRecord, bool, error) {
	var names []string
	var recs []*objRecord
	more := false
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixObject)
		it := txn.NewIterator(opts)
		defer it.Close()
		var sum int64
		for it.Seek([]byte(prefixObject + after)); it.ValidForPrefix(opts.Prefix); it.Next() {
			name := strings.TrimPrefix(string(it.Item().Key()), prefixObject)
			if name == after {
				continue
			}
			if len(names) > 0 && (sum >= budget || len(names) >= maxScrubBatch) {
				more = true
				return nil
			}
			r := new(objRecord)
			if err := jsonUnmarshal(it.Item(), r); err != nil {
				return err
			}
			names = append(names, name)
			recs = append(recs, r)
			if isFresh(r, now, fresh) {
				sum += scrubCheckCost
			} else {
				sum += max(r.Size, 1)
			}
		}
		return nil
	})
	return names, recs, more, err
}

// maxScrubBatch bounds the objects one Scrub call checks (many empty or
// tiny files must not make one call unbounded).
const maxScrubBatch = 4096

// scrubCheckCost is what the cheap check of a fresh object (its index
// record decoded, its file's stamp read) counts for in a Scrub's budget:
// about the CPU of hashing 16 KiB. So a rate-limited scrubber goes
// through a store of fresh objects (every object just after an upgrade)
// at its rate too, not maxScrubBatch objects a call, pass after pass.
const scrubCheckCost = 16 << 10

// Repair re-hashes every object and checks every complete package's tree,
// with no daemon running: objects that fail are quarantined and packages
// whose trees differ from their manifests are marked, so that both are
// partial with a q/ record and the daemon fetches them again when it
// starts (node: RepairsPending). It returns one line per problem found,
// sorted, and what it did.
func (s *Store) Repair(ctx context.Context) ([]string, *CheckResult, error) {
	res := &CheckResult{}
	for next := ""; ; {
		n, r, err := s.scrub(ctx, next, 1<<62, 0)
		if r != nil {
			res.Objects += r.Objects
			res.Rehashed += r.Rehashed
			res.Bytes += r.Bytes
			res.Damaged = append(res.Damaged, r.Damaged...)
		}
		if err != nil {
			return nil, res, err
		}
		if n == "" {
			break
		}
		next = n
	}
	var problems []string
	for _, d := range res.Damaged {
		problems = append(problems, fmt.Sprintf("object %s: %s (quarantined; %d packages to fetch again)", d.Object, d.Reason, len(d.Packages)))
	}
	pkgs, err := s.Packages()
	if err != nil {
		return problems, res, err
	}
	for _, p := range pkgs {
		if p.State != StateComplete {
			continue
		}
		m, _, err := s.Manifest(p.ManifestCID)
		if err != nil {
			return problems, res, err
		}
		s.life.RLock()
		tp := s.checkTree(p.ManifestCID, m, p.layout, false)
		s.life.RUnlock()
		if len(tp) == 0 {
			continue
		}
		problems = append(problems, tp...)
		if err := s.markRepair(p.ManifestCID.String(), nil, tp[0]); err != nil {
			return problems, res, err
		}
		res.Relink = append(res.Relink, p.ManifestCID)
	}
	sort.Strings(problems)
	return problems, res, nil
}
