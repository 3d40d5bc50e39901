package share

import (
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// Identical content published under two names is stored once and keeps
// both names: each is listed, looked up and installed as itself.
func TestSameContentTwoNames(t *testing.T) {
	t.Parallel()
	p := makePkg(t, testChunk, file("a", 0o644, []byte("same bytes")))
	s := openStore(t, t.TempDir())
	install(t, s, p, "alpha", "1")
	if err := s.AddName("beta", "2", p.cid); err != nil {
		t.Fatalf("AddName(beta@2) = %v", err)
	}
	pkgs, err := s.Packages()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pi := range pkgs {
		if !pi.ManifestCID.Equals(p.cid) {
			t.Errorf("Packages: %s@%s has CID %s, want %s", pi.Name, pi.Version, pi.ManifestCID, p.cid)
		}
		got = append(got, pi.Name+"@"+pi.Version)
	}
	if len(got) != 2 || got[0] != "alpha@1" || got[1] != "beta@2" {
		t.Fatalf("Packages() = %v, want [alpha@1 beta@2]", got)
	}
	for _, n := range []struct{ name, version string }{{"alpha", "1"}, {"beta", "2"}} {
		info, err := s.Lookup(n.name, n.version)
		if err != nil || info.Name != n.name || info.Version != n.version {
			t.Errorf("Lookup(%s@%s) = %+v, %v, want that name", n.name, n.version, info, err)
		}
	}

	// One VM installs both names: two views, one reference.
	for _, n := range []string{"alpha", "beta"} {
		if err := s.RecordInstall(Install{VM: "vm1", Name: n, Version: "x", ManifestCID: p.cid, Root: "/r", Into: "/r/" + n, Mode: "bind"}); err != nil {
			t.Fatalf("RecordInstall(%s) = %v", n, err)
		}
	}
	ins, err := s.Installs("vm1")
	if err != nil || len(ins) != 2 || ins[0].Name != "alpha" || ins[1].Name != "beta" {
		t.Fatalf("Installs(vm1) = %+v, %v, want alpha and beta", ins, err)
	}
	if pkgs, _ := s.Packages(); len(pkgs) != 2 || len(pkgs[0].Installs) != 1 || len(pkgs[1].Installs) != 1 {
		t.Errorf("Packages() installs = %+v, want vm1 under each name", pkgs)
	}
	if err := s.DropInstall("vm1", "alpha"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemovePackage(p.cid); !errors.Is(err, ErrInUse) {
		t.Errorf("RemovePackage with beta still installed = %v, want ErrInUse", err)
	}
	if err := s.DropInstall("vm1", "beta"); err != nil {
		t.Fatal(err)
	}
	if err := s.DropInstall("vm1", "beta"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DropInstall twice = %v, want ErrNotFound", err)
	}
	if err := s.RemovePackage(p.cid); err != nil {
		t.Fatalf("RemovePackage = %v", err)
	}
	for _, n := range []string{"alpha", "beta"} {
		if _, err := s.Lookup(n, map[string]string{"alpha": "1", "beta": "2"}[n]); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup(%s) after RemovePackage = %v, want ErrNotFound", n, err)
		}
	}
}

// A VM has one install per package name: recording it again (an upgrade)
// replaces the record and moves the reference to the new content.
func TestRecordInstallReplaces(t *testing.T) {
	t.Parallel()
	v1 := makePkg(t, testChunk, file("a", 0o644, []byte("one")))
	v2 := makePkg(t, testChunk, file("a", 0o644, []byte("two")))
	s := openStore(t, t.TempDir())
	install(t, s, v1, "app", "1")
	install(t, s, v2, "app", "2")
	for _, p := range []*testPkg{v1, v2} {
		if err := s.RecordInstall(Install{VM: "vm1", Name: "app", ManifestCID: p.cid, Root: "/r", Into: "/r/app", Mode: "bind"}); err != nil {
			t.Fatal(err)
		}
	}
	ins, err := s.Installs("vm1")
	if err != nil || len(ins) != 1 || !ins[0].ManifestCID.Equals(v2.cid) {
		t.Fatalf("Installs(vm1) = %+v, %v, want app at version 2 only", ins, err)
	}
	if err := s.RemovePackage(v1.cid); err != nil {
		t.Errorf("RemovePackage(version 1) after the upgrade = %v, want it unreferenced", err)
	}
	if err := s.RemovePackage(v2.cid); !errors.Is(err, ErrInUse) {
		t.Errorf("RemovePackage(version 2) = %v, want ErrInUse", err)
	}
}

// Install records written before names were keys (i/<vm>\x00<CID>, no
// name) are read with the package's name and dropped by it.
func TestOldInstallRecords(t *testing.T) {
	t.Parallel()
	p := makePkg(t, testChunk, file("a", 0o644, []byte("old")))
	s := openStore(t, t.TempDir())
	install(t, s, p, "legacy", "1")
	key := p.cid.String()
	err := s.update(func(txn *badger.Txn) error {
		if err := setJSON(txn, []byte(prefixInstall+"vm1\x00"+key), &installRecord{VM: "vm1", ManifestCID: key, Into: "/v/legacy", Mode: "bind"}); err != nil {
			return err
		}
		return txn.Set([]byte(prefixRef+key+"/vm1"), []byte{})
	})
	if err != nil {
		t.Fatal(err)
	}
	ins, err := s.Installs("vm1")
	if err != nil || len(ins) != 1 || ins[0].Name != "legacy" || ins[0].Root != "/v" {
		t.Fatalf("Installs(vm1) = %+v, %v, want legacy under root /v", ins, err)
	}
	if err := s.DropInstall("vm1", "legacy"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemovePackage(p.cid); err != nil {
		t.Errorf("RemovePackage after dropping the old record = %v", err)
	}
}
