package share

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// A stopped daemon's store can be read without writing to it: the packages
// are listed, nothing in the directory changes, two readers share it, and
// a writer (the daemon) keeps it to itself.
func TestOpenReadOnly(t *testing.T) {
	root := t.TempDir()
	s, err := Open(Config{Dir: root, SyncWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	p := makePkg(t, 4<<10, dir("bin", 0o755), file("bin/tool", 0o755, []byte("hello tool")), file("README", 0o644, make([]byte, 9000)))
	install(t, s, p, "tool", "1.0.0")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, root)

	r1, err := OpenReadOnly(Config{Dir: root})
	if err != nil {
		t.Fatalf("OpenReadOnly = %v", err)
	}
	r2, err := OpenReadOnly(Config{Dir: root})
	if err != nil {
		t.Fatalf("second OpenReadOnly = %v, want readers to share the store", err)
	}
	pkgs, err := r1.Packages()
	if err != nil || len(pkgs) != 1 || pkgs[0].Name != "tool" || pkgs[0].State != StateComplete {
		t.Fatalf("Packages() = %+v, %v; want tool complete", pkgs, err)
	}
	if _, err := Open(Config{Dir: root}); err == nil {
		t.Fatal("Open while readers hold the store = nil, want an error")
	}
	r1.Close()
	r2.Close()
	if after := snapshotDir(t, root); len(after) != len(before) {
		t.Errorf("read-only opening changed the directory: %d entries before, %d after", len(before), len(after))
	} else {
		for k, v := range before {
			if after[k] != v {
				t.Errorf("read-only opening changed %s", k)
			}
		}
	}
	if _, err := OpenReadOnly(Config{Dir: t.TempDir()}); err == nil {
		t.Error("OpenReadOnly of an empty directory = nil, want an error")
	}
}

// snapshotDir maps every path under dir to its size and modification time.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Name() == "LOCK" {
			return nil // badger's lock file is touched by every opening
		}
		out[p] = fi.ModTime().String() + " " + fi.Mode().String()
		if fi.Mode().IsRegular() {
			out[p] += " " + strconv.FormatInt(fi.Size(), 10)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
