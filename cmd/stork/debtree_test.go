package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// treeEntry is what a comparison of package trees looks at for one path.
type treeEntry struct {
	typ      string // "file", "dir", "symlink", or another type
	mode     uint32 // permission and special bits (0o7777)
	uid, gid uint32
	target   string // symlink target
	sum      string // sha256 of a file's content
	size     int64
}

func (e treeEntry) String() string {
	s := fmt.Sprintf("%s %#o %d:%d", e.typ, e.mode, e.uid, e.gid)
	switch e.typ {
	case "symlink":
		s += " -> " + e.target
	case "file":
		s += fmt.Sprintf(" %d bytes %.12s", e.size, e.sum)
	}
	return s
}

// scanTree records every entry below root (relative slash paths, root
// itself left out) with lstat, following no symlink.
func scanTree(root string) (map[string]treeEntry, error) {
	out := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e := treeEntry{mode: st.Mode & 0o7777, uid: st.Uid, gid: st.Gid}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.typ, e.size = "file", st.Size
			if e.sum, err = fileSum(p); err != nil {
				return err
			}
		case unix.S_IFDIR:
			e.typ = "dir"
		case unix.S_IFLNK:
			e.typ = "symlink"
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			e.typ = fmt.Sprintf("type %#o", st.Mode&unix.S_IFMT)
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	return out, err
}

func fileSum(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// debOwners reads the numeric owner of every entry of a .deb's data
// archive (dpkg-deb --fsys-tarfile): dpkg-deb -x maps owner names to this
// host's ids, the archive's numbers are what a package carries.
func debOwners(deb string) (map[string][2]uint32, error) {
	out, err := exec.Command("dpkg-deb", "--fsys-tarfile", deb).Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w", deb, err)
	}
	owners := map[string][2]uint32{}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return owners, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: data archive: %w", deb, err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if name != "" && name != "." {
			owners[name] = [2]uint32{uint32(h.Uid), uint32(h.Gid)}
		}
	}
}

// expectDeb extracts deb with dpkg-deb -x into a new directory under tmp
// and returns its tree as dpkg would install it: types, modes, contents
// and symlink targets from the extraction, owners from the archive.
func expectDeb(deb, tmp string) (map[string]treeEntry, error) {
	dir, err := os.MkdirTemp(tmp, "x-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if out, err := exec.Command("dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x %s: %v: %s", deb, err, out)
	}
	want, err := scanTree(dir)
	if err != nil {
		return nil, err
	}
	owners, err := debOwners(deb)
	if err != nil {
		return nil, err
	}
	for p, e := range want {
		o, ok := owners[p]
		if !ok {
			return nil, fmt.Errorf("%s: %q extracted but not in the data archive", deb, p)
		}
		e.uid, e.gid = o[0], o[1]
		want[p] = e
	}
	return want, nil
}

// diffTrees lists how got differs from want, one line per path, sorted.
// With dropSetuid, files in got are expected without setuid and setgid
// (a view of a VM whose policy does not allow them).
func diffTrees(want, got map[string]treeEntry, dropSetuid bool) []string {
	var out []string
	for p, w := range want {
		if dropSetuid && w.typ == "file" {
			w.mode &^= 0o6000
		}
		g, ok := got[p]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%q: missing (want %s)", p, w))
		case g != w:
			out = append(out, fmt.Sprintf("%q: %s, want %s", p, g, w))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			out = append(out, fmt.Sprintf("%q: extra %s", p, g))
		}
	}
	sort.Strings(out)
	return out
}

// checkView fails t if the tree at view differs from what dpkg-deb -x
// makes of deb.
func checkView(t *testing.T, deb, view string, dropSetuid bool) {
	t.Helper()
	want, err := expectDeb(deb, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got, err := scanTree(view)
	if err != nil {
		t.Fatalf("scan %s: %v", view, err)
	}
	for _, d := range diffTrees(want, got, dropSetuid) {
		t.Errorf("%s at %s: %s", filepath.Base(deb), view, d)
	}
}

// noSetuidBelow fails t if any file below dir has setuid or setgid.
func noSetuidBelow(t *testing.T, dir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		if info, err := d.Info(); err == nil && info.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			t.Errorf("%s has mode %v: store objects never carry setuid or setgid", p, info.Mode())
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Errorf("walk %s: %v, %d files", dir, err, n)
	}
}
