package share

import (
	"bytes"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// TestBeginPackageOthersGoOn: while one package's BeginPackage is held
// (here: reading its names file, made a FIFO no one writes to yet), the
// BeginPackage of another package completes. An upgrade begins hundreds
// of packages at once, each with several syncs; they do not queue behind
// one another.
func TestBeginPackageOthersGoOn(t *testing.T) {
	t.Parallel()
	s, err := Open(Config{Dir: t.TempDir(), UnsafeNoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := makePkg(t, testChunk, file("a", 0o644, []byte("package a")))
	b := makePkg(t, testChunk, file("b", 0o644, []byte("package b")))
	fifo := s.namesPath(a.cid.String())
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() {
		d, err := s.BeginPackage("a", "1", a.cid, a.bytes)
		if err == nil {
			d.Close()
		}
		aDone <- err
	}()
	// Once a reads the FIFO, a writer can open it (without blocking): a
	// then waits for the writer's bytes, or its close, holding its
	// BeginPackage.
	var w *os.File
	for deadline := time.Now().Add(10 * time.Second); w == nil; {
		w, err = os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil && time.Now().After(deadline) {
			t.Fatalf("BeginPackage(a) never read its names file: %v", err)
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	bDone := make(chan error, 1)
	go func() {
		d, err := s.BeginPackage("b", "1", b.cid, b.bytes)
		if err == nil {
			d.Close()
		}
		bDone <- err
	}()
	bWaited := false
	select {
	case err := <-bDone:
		if err != nil {
			t.Errorf("BeginPackage(b) = %v", err)
		}
	case <-time.After(10 * time.Second):
		bWaited = true
		t.Errorf("BeginPackage(b) still waits while BeginPackage(a) is held")
	}
	// Release a: the writer closes (an empty names file, which a
	// rewrites).
	w.Close()
	if err := <-aDone; err != nil {
		t.Logf("BeginPackage(a) after its names file was a FIFO: %v", err)
	}
	if bWaited {
		<-bDone
	}
}

// TestOpenRewritesPartialManifestFiles: BeginPackage writes the manifest
// file and names without syncing them (partialFiles), so a power cut may
// leave a partial package's files empty or torn while the index names the
// package. Open finds them wrong and writes them again from the index;
// Rebuild then recovers the package from them.
func TestOpenRewritesPartialManifestFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := makePkg(t, testChunk, file("a", 0o644, []byte("package a")))
	s, err := Open(Config{Dir: dir, SyncWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.BeginPackage("a", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	mpath, npath := s.manifestPath(p.cid.String()), s.namesPath(p.cid.String())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What a power cut leaves of files renamed into place but not synced.
	for _, f := range []string{mpath, npath} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(f, 0); err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, dir)
	if _, b, err := s.readManifestFile(p.cid); err != nil || !bytes.Equal(b, p.bytes) {
		t.Fatalf("manifest file after Open: %d bytes, %v; want the manifest's %d", len(b), err, len(p.bytes))
	}
	if !s.manifestFilesHold(p.cid, []pkgName{{Name: "a", Version: "1"}}) {
		t.Errorf("names file after Open does not name a@1")
	}
}

// TestSetKeepUnchangedWritesNothing: SetKeep with the keep a package has
// writes no index record (nor syncs one): the daemon calls it after every
// download, whose BeginPackage kept the package already.
func TestSetKeepUnchangedWritesNothing(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir())
	p := makePkg(t, testChunk, file("a", 0o644, []byte("package a")))
	d, err := s.BeginPackage("a", "1", p.cid, p.bytes)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	version := func() uint64 {
		t.Helper()
		var v uint64
		if err := s.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get([]byte(prefixPackage + p.cid.String()))
			if err == nil {
				v = item.Version()
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := version()
	if err := s.SetKeep(p.cid, true); err != nil {
		t.Fatal(err)
	}
	if after := version(); after != before {
		t.Errorf("SetKeep(true) on a kept package wrote its record (version %d to %d)", before, after)
	}
	if err := s.SetKeep(p.cid, false); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Package(p.cid); err != nil || info.Keep {
		t.Errorf("after SetKeep(false): %+v, %v; want not kept", info, err)
	}
}

// TestAddNameKnownWritesNothing: adding a name a package has already
// (the daemon does it for every package a fetch brings) writes nothing;
// a new name is recorded, and an old name moved to another package too.
func TestAddNameKnownWritesNothing(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir())
	p := makePkg(t, testChunk, file("a", 0o644, []byte("package a")))
	q := makePkg(t, testChunk, file("b", 0o644, []byte("package b")))
	install(t, s, p, "a", "1")
	install(t, s, q, "b", "1")
	versions := func() (pkg, name uint64) {
		t.Helper()
		if err := s.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get([]byte(prefixPackage + p.cid.String()))
			if err != nil {
				return err
			}
			pkg = item.Version()
			if item, err = txn.Get(nameKey("a", "1")); err != nil {
				return err
			}
			name = item.Version()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return pkg, name
	}
	pkg0, name0 := versions()
	if err := s.AddName("a", "1", p.cid); err != nil {
		t.Fatal(err)
	}
	if pkg1, name1 := versions(); pkg1 != pkg0 || name1 != name0 {
		t.Errorf("AddName(a@1) on the package named a@1 wrote (record version %d to %d, name %d to %d)", pkg0, pkg1, name0, name1)
	}
	if err := s.AddName("alias", "1", p.cid); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Lookup("alias", "1"); err != nil || !info.ManifestCID.Equals(p.cid) {
		t.Errorf("Lookup(alias@1) = %+v, %v; want %s", info, err, p.cid)
	}
	// b's record has the name b@1; pointing b@1 at p and back keeps
	// the name's key right.
	if err := s.AddName("b", "1", p.cid); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Lookup("b", "1"); err != nil || !info.ManifestCID.Equals(p.cid) {
		t.Errorf("after AddName(b@1, a's package): Lookup(b@1) = %+v, %v; want %s", info, err, p.cid)
	}
	if err := s.AddName("b", "1", q.cid); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Lookup("b", "1"); err != nil || !info.ManifestCID.Equals(q.cid) {
		t.Errorf("after AddName(b@1, b's package): Lookup(b@1) = %+v, %v; want %s", info, err, q.cid)
	}
}
