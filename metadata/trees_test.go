package metadata

import (
	"archive/tar"
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestImportKeepsTreesAsArchived: what a Linux file system holds inside a
// package comes through an import unchanged: names with backslashes and
// bytes that are not UTF-8, symlink targets as written (absolute, climbing
// out, looping), full modes and owners; hard links share their target's
// content, mode and owner.
func TestImportKeepsTreesAsArchived(t *testing.T) {
	t.Parallel()
	own := func(e tarEntry, uid, gid int, user, group string) tarEntry {
		e.uid, e.gid, e.uname, e.gname = uid, gid, user, group
		return e
	}
	withMode := func(e tarEntry, mode int64) tarEntry { e.mode = mode; return e }
	archive := makeTar(t,
		own(tarDirEntry("./"), 0, 0, "root", "root"),
		own(tarDirEntry("./etc/"), 0, 0, "root", "root"),
		own(tarFile(`./lib/systemd/system/system-systemd\x2dcryptsetup.slice`, "slice"), 0, 0, "root", "root"),
		own(tarFile("./usr/share/caf\xe9", "latin-1 name"), 0, 0, "root", "root"),
		own(tarSymlink("./etc/localtime", "/usr/share/zoneinfo/Etc/UTC"), 0, 0, "root", "root"),
		own(tarSymlink("./etc/up", "../../../../etc/shadow"), 0, 0, "root", "root"),
		own(tarSymlink("./etc/loop", "loop"), 0, 0, "root", "root"),
		own(tarSymlink("./etc/raw", "caf\xe9"), 0, 0, "root", "root"),
		own(withMode(tarFile("./bin/su", "su binary"), 0o4755), 0, 0, "root", "root"),
		own(withMode(tarFile("./usr/bin/chage", "chage binary"), 0o2755), 0, 42, "root", "shadow"),
		own(withMode(tarDirEntry("./tmp/"), 0o1777), 0, 0, "root", "root"),
		own(withMode(tarFile("./etc/secret", "600"), 0o600), 0, 0, "root", "root"),
		own(withMode(tarFile("./etc/open", "777"), 0o777), 0, 0, "root", "root"),
		own(withMode(tarDirEntry("./var/mail/"), 0o2775), 0, 8, "root", "mail"),
		own(tarFile("./home/user/own", "owned"), 1000, 1000, "user", "user"),
		own(tarHardlink("./bin/su2", "./bin/su"), 0, 0, "root", "root"),
		own(withMode(tarDirEntry("./empty/"), 0o750), 0, 0, "root", "root"),
	)
	m, err := importBytes(archive, KindTar, smallOpts)
	if err != nil {
		t.Fatalf("ImportReader = %v", err)
	}
	byPath := map[string]Entry{}
	for _, e := range m.Entries {
		byPath[e.Path] = e
	}
	want := []Entry{
		{Path: "etc", Type: TypeDir, Mode: 0o755},
		{Path: `lib/systemd/system/system-systemd\x2dcryptsetup.slice`, Type: TypeFile, Mode: 0o644},
		{Path: "usr/share/caf\xe9", Type: TypeFile, Mode: 0o644},
		{Path: "etc/localtime", Type: TypeSymlink, Mode: 0o777, Target: "/usr/share/zoneinfo/Etc/UTC"},
		{Path: "etc/up", Type: TypeSymlink, Mode: 0o777, Target: "../../../../etc/shadow"},
		{Path: "etc/loop", Type: TypeSymlink, Mode: 0o777, Target: "loop"},
		{Path: "etc/raw", Type: TypeSymlink, Mode: 0o777, Target: "caf\xe9"},
		{Path: "bin/su", Type: TypeFile, Mode: 0o4755},
		{Path: "bin/su2", Type: TypeFile, Mode: 0o4755},
		{Path: "usr/bin/chage", Type: TypeFile, Mode: 0o2755, GID: 42, Group: "shadow"},
		{Path: "tmp", Type: TypeDir, Mode: 0o1777},
		{Path: "etc/secret", Type: TypeFile, Mode: 0o600},
		{Path: "etc/open", Type: TypeFile, Mode: 0o777},
		{Path: "var/mail", Type: TypeDir, Mode: 0o2775, GID: 8, Group: "mail"},
		{Path: "home/user/own", Type: TypeFile, Mode: 0o644, UID: 1000, GID: 1000, User: "user", Group: "user"},
		{Path: "empty", Type: TypeDir, Mode: 0o750},
	}
	for _, w := range want {
		got, ok := byPath[w.Path]
		if !ok {
			t.Errorf("entry %q missing", w.Path)
			continue
		}
		if got.Type != w.Type || got.Mode != w.Mode || got.Target != w.Target || got.UID != w.UID || got.GID != w.GID || got.User != w.User || got.Group != w.Group {
			t.Errorf("entry %q = %s %#o %d:%d %q:%q -> %q, want %s %#o %d:%d %q:%q -> %q", w.Path,
				got.Type, got.Mode, got.UID, got.GID, got.User, got.Group, got.Target,
				w.Type, w.Mode, w.UID, w.GID, w.User, w.Group, w.Target)
		}
	}
	if su, su2 := byPath["bin/su"], byPath["bin/su2"]; su.Hash != su2.Hash || su.Size != su2.Size {
		t.Errorf("hard link bin/su2 = %s, want the content of bin/su %s", su2.Hash, su.Hash)
	}
	enc := mustEncode(t, m)
	if !bytes.Contains(enc, []byte(`"path_b64":`)) || !bytes.Contains(enc, []byte(`"target_b64":`)) {
		t.Errorf("encoding of names that are not UTF-8 has no path_b64/target_b64: %s", enc)
	}
	if !bytes.Contains(enc, []byte(`"path":"lib/systemd/system/system-systemd\\x2dcryptsetup.slice"`)) {
		t.Errorf("backslash name not encoded as a JSON string: %s", enc)
	}
	d, err := DecodeManifest(enc, Limits{})
	if err != nil {
		t.Fatalf("DecodeManifest(imported) = %v", err)
	}
	for i := range m.Entries {
		if d.Entries[i].Path != m.Entries[i].Path || d.Entries[i].Target != m.Entries[i].Target {
			t.Errorf("entry %d decodes as %q -> %q, want %q -> %q", i, d.Entries[i].Path, d.Entries[i].Target, m.Entries[i].Path, m.Entries[i].Target)
		}
	}
}

// TestRawNamesAreDistinct: two names that differ only in bytes that are
// not UTF-8 (both would become U+FFFD as JSON strings) stay two entries,
// sorted by their bytes, and survive the encoding; a byte-exact duplicate
// is refused.
func TestRawNamesAreDistinct(t *testing.T) {
	t.Parallel()
	m, err := importBytes(makeTar(t, tarFile("a\xfe", "one"), tarFile("a\xff", "two"), tarFile("a\xef\xbf\xbd", "utf8")), KindTar, smallOpts)
	if err != nil {
		t.Fatalf("ImportReader = %v", err)
	}
	var paths []string
	for _, e := range m.Entries {
		paths = append(paths, e.Path)
	}
	if want := []string{"a\xef\xbf\xbd", "a\xfe", "a\xff"}; strings.Join(paths, "|") != strings.Join(want, "|") {
		t.Fatalf("paths = %q, want %q (byte order)", paths, want)
	}
	d, err := DecodeManifest(mustEncode(t, m), Limits{})
	if err != nil {
		t.Fatalf("DecodeManifest = %v", err)
	}
	for i := range paths {
		if d.Entries[i].Path != paths[i] {
			t.Errorf("decoded path %d = %q, want %q", i, d.Entries[i].Path, paths[i])
		}
	}
	_, err = importBytes(makeTar(t, tarFile("a\xfe", "one"), tarFile("a\xfe", "two")), KindTar, smallOpts)
	if !errors.Is(err, ErrDuplicatePath) {
		t.Errorf("ImportReader(byte-exact duplicate) = %v, want %v", err, ErrDuplicatePath)
	}
}

// TestOwnerRefusals: owners that cannot be an owner are refused, naming
// the entry.
func TestOwnerRefusals(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		e    tarEntry
	}{
		{"uid -1 as unsigned", tarEntry{name: "f", typ: tar.TypeReg, mode: 0o644, uid: 1<<32 - 1}},
		{"gid over 32 bits", tarEntry{name: "f", typ: tar.TypeReg, mode: 0o644, gid: 1 << 33}},
		{"user with control character", tarEntry{name: "f", typ: tar.TypeReg, mode: 0o644, uname: "a\x1bb"}},
		{"group not UTF-8", tarEntry{name: "f", typ: tar.TypeReg, mode: 0o644, gname: "\xff"}},
	} {
		_, err := importBytes(makeTar(t, tt.e), KindTar, smallOpts)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), `"f"`) {
			t.Errorf("ImportReader(%s) = %v, want %v naming the entry", tt.name, err, ErrMalformed)
		}
	}
}

// TestRootOwnedEncodingUnchanged: a root-owned tree with UTF-8 names has
// the encoding, and so the CID, that it had before owners and raw names
// were carried (the CID below is what the earlier code computed for this
// archive), whether the archive names the owner root or not.
func TestRootOwnedEncodingUnchanged(t *testing.T) {
	t.Parallel()
	rootOwned := func(e tarEntry) tarEntry { e.uname, e.gname = "root", "root"; return e }
	for _, named := range []bool{false, true} {
		entries := []tarEntry{tarDirEntry("d/"), tarFile("d/f", "content"), tarSymlink("d/l", "f"), tarEntry{name: "x", typ: tar.TypeReg, mode: 0o755, body: "exec"}}
		if named {
			for i := range entries {
				entries[i] = rootOwned(entries[i])
			}
		}
		m, err := importBytes(makeTar(t, entries...), KindTar, smallOpts)
		if err != nil {
			t.Fatalf("ImportReader = %v", err)
		}
		c, err := m.CID()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := c.String(), rootOwnedCID; got != want {
			t.Errorf("CID(root-owned tree, names %v) = %s, want %s\n%s", named, got, want, mustEncode(t, m))
		}
	}
}

// rootOwnedCID is the CID the code before owners computed for the archive
// of TestRootOwnedEncodingUnchanged.
const rootOwnedCID = "bafkreie4yeuxebqkr4hzfzijsxgqvfwogwgl6pkys2gtys7siaezbghqqu"
