package share

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"
)

// damagePkg is a package of two files, one of which the tests damage.
func damagePkg(t *testing.T) (*testPkg, int) {
	r := rand.New(rand.NewSource(31))
	p := makePkg(t, testChunk, dir("bin", 0o755), file("bin/victim", 0o755, randBytes(r, 3*testChunk+17)), file("other", 0o644, randBytes(r, 2*testChunk)))
	return p, entryIndex(p, "bin/victim")
}

// refetch downloads p again (what node does for a package under repair)
// and checks that only the damaged file's chunks were missing.
func refetch(t *testing.T, s *Store, p *testPkg, victim int) {
	t.Helper()
	d, err := s.BeginPackage("pkg", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(d.Missing()), len(p.m.Entries[victim].Chunks); got != want {
		t.Errorf("Missing = %d chunks, want %d (the damaged file's)", got, want)
	}
	putAll(t, d, p, 2, 9)
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestCheckPackageFindsDamage: each way an object file can be changed on
// disk is found by the cheap check before install, the object is
// quarantined (never served again), its package is partial until fetched
// again, and the fetch relinks the tree; a chmod alone is put back, and a
// copy with the same content is accepted.
func TestCheckPackageFindsDamage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		damage  func(t *testing.T, obj string)
		damaged bool
	}{
		{"byte flipped by a write", func(t *testing.T, obj string) { flipByte(t, obj, 5) }, true},
		{"truncated", func(t *testing.T, obj string) {
			if err := os.Truncate(obj, 100); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"removed", func(t *testing.T, obj string) {
			if err := os.Remove(obj); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"replaced by other bytes", func(t *testing.T, obj string) {
			replaceFile(t, obj, bytes.Repeat([]byte("x"), 3*testChunk+17))
		}, true},
		{"chmod only", func(t *testing.T, obj string) {
			if err := os.Chmod(obj, 0o777); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"replaced by an identical copy", func(t *testing.T, obj string) {
			b, err := os.ReadFile(obj)
			if err != nil {
				t.Fatal(err)
			}
			replaceFile(t, obj, b)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, victim := damagePkg(t)
			s := openStore(t, t.TempDir())
			install(t, s, p, "pkg", "1")
			e := p.m.Entries[victim]
			obj := s.ObjectPath(e.Hash, EntryVariant(&e))
			tt.damage(t, obj)

			res, err := s.CheckPackage(p.cid)
			if err != nil {
				t.Fatal(err)
			}
			info, _ := s.Package(p.cid)
			if tt.name == "replaced by an identical copy" {
				// The object is good but the tree links the old inode:
				// the tree is relinked by a commit with nothing to fetch.
				if len(res.Damaged) != 0 || len(res.Relink) != 1 || info.State != StatePartial {
					t.Fatalf("CheckPackage = %+v, state %s; want a relink only", *res, info.State)
				}
				d, err := s.BeginPackage("pkg", "1", p.cid, p.bytes)
				if err != nil {
					t.Fatal(err)
				}
				if n := len(d.Missing()); n != 0 {
					t.Errorf("Missing = %d, want none", n)
				}
				if err := d.Commit(); err != nil {
					t.Fatal(err)
				}
				verifyClean(t, s)
				return
			}
			if !tt.damaged {
				if res.Repairing() || info.State != StateComplete {
					t.Fatalf("CheckPackage = %+v, state %s; want nothing damaged", *res, info.State)
				}
				if st, err := os.Stat(obj); err != nil || st.Mode().Perm() != EntryVariant(&e).Perm {
					t.Errorf("object after the check: %v, %v; want mode %v", st.Mode(), err, EntryVariant(&e).Perm)
				}
				verifyClean(t, s)
				// The new stamp is recorded: the next check re-hashes nothing.
				if res, err := s.CheckPackage(p.cid); err != nil || res.Rehashed != 0 {
					t.Errorf("second CheckPackage = %+v, %v, want no re-hash", res, err)
				}
				return
			}
			if len(res.Damaged) != 1 || res.Damaged[0].Object != objectName(e.Hash, EntryVariant(&e)) ||
				len(res.Damaged[0].Packages) != 1 || !res.Damaged[0].Packages[0].Equals(p.cid) {
				t.Fatalf("CheckPackage = %+v, want the victim object damaged, used by the package", *res)
			}
			if info.State != StatePartial || info.TreePath != "" {
				t.Errorf("package after damage: %+v, want partial, no tree to install", info)
			}
			if reps, err := s.RepairsPending(); err != nil || len(reps) != 1 || !reps[0].Package.ManifestCID.Equals(p.cid) {
				t.Errorf("RepairsPending = %+v, %v, want the package", reps, err)
			}
			c0, _ := cid.Decode(e.Chunks[0])
			if _, err := s.ReadChunk(c0); !errors.Is(err, ErrNotFound) {
				t.Errorf("ReadChunk of a quarantined object's chunk = %v, want ErrNotFound", err)
			}
			if got := s.DamageCounts().Damaged; got != 1 {
				t.Errorf("DamageCounts.Damaged = %d, want 1", got)
			}
			// Waiting for its repair, it is not an unfinished download.
			if gc, err := s.GCWith(t.Context(), GCOptions{Partial: true}); err != nil || gc.Packages != 0 || gc.Trees != 0 {
				t.Errorf("GC --partial of a package waiting for repair = %+v, %v; want it kept", gc, err)
			}
			refetch(t, s, p, victim)
			checkTree(t, s.TreePath(p.cid), p)
			verifyClean(t, s)
			if reps, _ := s.RepairsPending(); len(reps) != 0 {
				t.Errorf("RepairsPending after the fetch = %+v, want none", reps)
			}
			if got := s.DamageCounts().Repaired; got != 1 {
				t.Errorf("DamageCounts.Repaired = %d, want 1", got)
			}
		})
	}
}

// replaceFile puts a new file with content b and p's mode and times in
// place of p.
func replaceFile(t *testing.T, p string, b []byte) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	tmp := p + ".new"
	if err := os.WriteFile(tmp, b, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// TestScrubFindsBitRot: a byte changed with the modification time put
// back passes the cheap check; Scrub re-hashes and finds it.
func TestScrubFindsBitRot(t *testing.T) {
	t.Parallel()
	p, victim := damagePkg(t)
	s := openStore(t, t.TempDir())
	install(t, s, p, "pkg", "1")
	e := p.m.Entries[victim]
	obj := s.ObjectPath(e.Hash, EntryVariant(&e))
	st, err := os.Stat(obj)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, obj, 3*testChunk+1)
	if err := os.Chtimes(obj, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if res, err := s.CheckPackage(p.cid); err != nil || res.Repairing() || res.Rehashed != 0 {
		t.Fatalf("CheckPackage = %+v, %v; want the cheap check to pass", res, err)
	}
	var damaged []DamagedObject
	passes, next := 0, ""
	for i := 0; i < 100; i++ { // one object (4 KiB) per call
		n, res, err := s.Scrub(t.Context(), next, 1)
		if err != nil {
			t.Fatal(err)
		}
		if res.Objects != 1 {
			t.Errorf("Scrub with a 1-byte budget checked %d objects, want 1", res.Objects)
		}
		damaged = append(damaged, res.Damaged...)
		if next = n; next == "" {
			passes++
			break
		}
	}
	if passes != 1 || len(damaged) != 1 || damaged[0].Object != objectName(e.Hash, EntryVariant(&e)) {
		t.Fatalf("one scrub pass found %+v, want the victim", damaged)
	}
	if got := s.DamageCounts().Scrubbed; got != int64(3*testChunk+17+2*testChunk) {
		t.Errorf("scrubbed %d bytes, want both objects'", got)
	}
	refetch(t, s, p, victim)
	verifyClean(t, s)
}

// TestScrubLeavesFreshObjects: with Config.ScrubFresh, a scrub pass right
// after a package was stored re-hashes nothing (its objects were verified
// as they were stored), so bit rot that keeps the file's stamp goes
// unseen until the objects are ScrubFresh old; then a pass re-hashes them
// and finds it. An object whose file changed visibly is re-hashed however
// fresh it is.
func TestScrubLeavesFreshObjects(t *testing.T) {
	t.Parallel()
	p, victim := damagePkg(t)
	s, err := Open(Config{Dir: t.TempDir(), SyncWrites: true, ScrubFresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now()
	s.now = func() time.Time { return now }
	install(t, s, p, "pkg", "1")
	e := p.m.Entries[victim]
	obj := s.ObjectPath(e.Hash, EntryVariant(&e))
	st, err := os.Stat(obj)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, obj, 3*testChunk+1)
	if err := os.Chtimes(obj, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	pass := func() *CheckResult {
		t.Helper()
		all := &CheckResult{}
		for next, i := "", 0; i < 100; i++ {
			n, res, err := s.Scrub(t.Context(), next, 1)
			if err != nil {
				t.Fatal(err)
			}
			all.Objects += res.Objects
			all.Rehashed += res.Rehashed
			all.Damaged = append(all.Damaged, res.Damaged...)
			if next = n; next == "" {
				return all
			}
		}
		t.Fatal("a scrub pass did not end")
		return nil
	}
	if res := pass(); res.Objects != 2 || res.Rehashed != 0 || len(res.Damaged) != 0 {
		t.Fatalf("pass just after storing = %d objects, %d re-hashed, damaged %+v; want 2, 0, none", res.Objects, res.Rehashed, res.Damaged)
	}
	now = now.Add(time.Hour + time.Second)
	res := pass()
	if res.Rehashed != 2 || len(res.Damaged) != 1 || res.Damaged[0].Object != objectName(e.Hash, EntryVariant(&e)) {
		t.Fatalf("pass an hour later = %d re-hashed, damaged %+v; want 2, the victim", res.Rehashed, res.Damaged)
	}
	refetch(t, s, p, victim)
	// The good object just stored again, and the other just re-hashed,
	// are fresh; a write that moves the time is seen at once.
	flipByte(t, obj, 1)
	if err := os.Chtimes(obj, st.ModTime(), st.ModTime().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if res := pass(); res.Rehashed != 1 || len(res.Damaged) != 1 {
		t.Fatalf("pass after a visible write = %d re-hashed, damaged %+v; want 1, the victim", res.Rehashed, res.Damaged)
	}
}

// TestRepairedFileReachesBindView: a VM's bind view of a tree whose
// object was damaged sees the good file once the package is fetched again.
func TestRepairedFileReachesBindView(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind views need root")
	}
	p, victim := damagePkg(t)
	s := openStore(t, t.TempDir())
	install(t, s, p, "pkg", "1")
	view := filepath.Join(t.TempDir(), "view")
	if err := MountView(viewAt(s.TreePath(p.cid), view, ViewBind, "")); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(view, unix.MNT_DETACH)
	e := p.m.Entries[victim]
	flipByte(t, s.ObjectPath(e.Hash, EntryVariant(&e)), 0)
	if b, _ := os.ReadFile(filepath.Join(view, "bin", "victim")); bytes.Equal(b, p.files[1].data) {
		t.Fatal("the damage did not reach the view: the test damages the wrong file")
	}
	if res, err := s.CheckPackage(p.cid); err != nil || len(res.Damaged) != 1 {
		t.Fatalf("CheckPackage = %+v, %v", res, err)
	}
	refetch(t, s, p, victim)
	checkTree(t, view, p)
}

// TestRepairMarksForRefetch: Repair (verify --repair) quarantines a bad
// object and marks a changed tree; both packages are then pending repair.
func TestRepairMarksForRefetch(t *testing.T) {
	t.Parallel()
	p, victim := damagePkg(t)
	q := makePkg(t, testChunk, file("q", 0o644, []byte("q file")), symlink("l", "q"))
	s := openStore(t, t.TempDir())
	install(t, s, p, "pkg", "1")
	install(t, s, q, "q", "1")
	e := p.m.Entries[victim]
	flipByte(t, s.ObjectPath(e.Hash, EntryVariant(&e)), 7)
	link := filepath.Join(s.TreePath(q.cid), "l")
	inWritableDir(filepath.Dir(link), func() error {
		os.Remove(link)
		return os.Symlink("/etc/passwd", link)
	})
	problems, res, err := s.Repair(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 2 || len(res.Damaged) != 1 || len(res.Relink) != 1 || !res.Relink[0].Equals(q.cid) {
		t.Fatalf("Repair = %q, %+v; want the object and q's tree", problems, *res)
	}
	reps, err := s.RepairsPending()
	if err != nil || len(reps) != 2 {
		t.Fatalf("RepairsPending = %+v, %v, want both packages", reps, err)
	}
	d, err := s.BeginPackage("q", "1", q.cid, q.bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	checkTree(t, s.TreePath(q.cid), q)
}

// BenchmarkCheckPackage measures the check before install of an intact
// 5,000-file package (every object's stamp as recorded: no re-hash), and
// a scrub pass over the same objects (every one re-hashed).
func BenchmarkCheckPackage(b *testing.B) {
	const nfiles, perDir = 5000, 100
	var files []tfile
	for d := 0; d < nfiles/perDir; d++ {
		dp := fmt.Sprintf("d%03d", d)
		files = append(files, dir(dp, 0o755))
		for f := 0; f < perDir; f++ {
			files = append(files, file(fmt.Sprintf("%s/f%03d", dp, f), 0o644, []byte(fmt.Sprintf("file %d/%d\n", d, f))))
		}
	}
	p := makePkg(b, testChunk, files...)
	s, err := Open(Config{Dir: b.TempDir(), UnsafeNoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	install(b, s, p, "bench", "1")
	b.Run("check", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			res, err := s.CheckPackage(p.cid)
			if err != nil || res.Rehashed != 0 || res.Objects != nfiles {
				b.Fatalf("CheckPackage = %+v, %v", res, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nfiles), "ns/file")
	})
	b.Run("scrub", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			n := 0
			for next := ""; ; {
				nx, res, err := s.Scrub(b.Context(), next, 1<<30)
				if err != nil || res.Repairing() {
					b.Fatalf("Scrub = %+v, %v", res, err)
				}
				n += res.Objects
				if next = nx; next == "" {
					break
				}
			}
			if n != nfiles {
				b.Fatalf("a scrub pass checked %d objects, want %d", n, nfiles)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nfiles), "ns/file")
	})
}

// TestScrubBudgetCountsFreshChecks: the cheap check of a fresh object
// counts against a Scrub's budget, so that a budget of one check's cost
// checks one fresh object per call, not every one up to maxScrubBatch
// (the daemon's scrubber, one call a second, went through a store of
// fresh objects at thousands a second).
func TestScrubBudgetCountsFreshChecks(t *testing.T) {
	t.Parallel()
	p, _ := damagePkg(t)
	s, err := Open(Config{Dir: t.TempDir(), ScrubFresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	install(t, s, p, "pkg", "1")
	n, res, err := s.Scrub(t.Context(), "", scrubCheckCost)
	if err != nil {
		t.Fatal(err)
	}
	if res.Objects != 1 || res.Rehashed != 0 || n == "" {
		t.Fatalf("Scrub of two fresh objects with one check's budget: %d objects, %d re-hashed, next %q; want 1, 0, the second to come", res.Objects, res.Rehashed, n)
	}
}
