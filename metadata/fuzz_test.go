package metadata

import (
	"bytes"
	"context"
	"testing"
)

// fuzzOpts keep fuzzed imports small: 4 KiB chunks, 1 MiB files, 4 MiB
// trees, 1000 entries.
var fuzzOpts = ImportOptions{
	ChunkSize: MinChunkSize,
	Limits:    Limits{MaxFileSize: 1 << 20, MaxTotalSize: 4 << 20, MaxEntries: 1000, MaxPathLen: 256, MaxManifestSize: 1 << 20},
}

// checkImported checks what an accepted fuzzed import must satisfy.
func checkImported(t *testing.T, m *Manifest) {
	t.Helper()
	if err := m.Validate(fuzzOpts.Limits); err != nil {
		t.Fatalf("imported manifest does not validate: %v", err)
	}
	enc := mustEncode(t, m)
	d, err := DecodeManifest(enc, fuzzOpts.Limits)
	if err != nil {
		t.Fatalf("DecodeManifest(imported) = %v", err)
	}
	if !bytes.Equal(mustEncode(t, d), enc) {
		t.Fatalf("imported manifest does not round-trip")
	}
}

func FuzzDecodeManifest(f *testing.F) {
	m := goodManifest(f)
	good := mustEncode(f, m)
	f.Add(good)
	f.Add([]byte(`{"stork_manifest":1,"chunk_size":4096,"entries":[]}`))
	f.Add([]byte(`{"stork_manifest":1,"chunk_size":4096,"entries":[{"path":"l","type":"symlink","mode":511,"target":"a/../.."}]}`))
	f.Add([]byte(`{"stork_manifest":1,"chunk_size":4096,"entries":[{"path":"a","type":"symlink","mode":511,"target":"b"},{"path":"b","type":"symlink","mode":511,"target":"a/x"}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"stork_manifest":1,"chunk_size":4096,"entries":[{"path_b64":"Yf8=","type":"symlink","mode":511,"uid":7,"gid":8,"user":"u","group":"g","target_b64":"L2Vc/w=="}]}`))
	f.Add([]byte(`{"stork_manifest":1,"chunk_size":4096,"entries":[{"path":"a\\b","type":"dir","mode":3583,"gid":42,"group":"shadow"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data, fuzzOpts.Limits)
		if err != nil {
			return
		}
		if enc := mustEncode(t, m); !bytes.Equal(enc, data) {
			t.Fatalf("accepted manifest re-encodes differently:\n%s\n%s", data, enc)
		}
		if err := m.Validate(fuzzOpts.Limits); err != nil {
			t.Fatalf("accepted manifest does not validate: %v", err)
		}
	})
}

// FuzzRawNames: any path and symlink target bytes either fail Validate or
// survive the encoding byte for byte (base64 where they are not UTF-8).
func FuzzRawNames(f *testing.F) {
	f.Add("a", "b", uint32(0), "")
	f.Add("a\xff", "/abs\\x", uint32(1000), "user")
	f.Add(`c\d`, "../../..", uint32(5), "\xff")
	f.Add("a\x00", "", uint32(1<<32-1), "x")
	f.Fuzz(func(t *testing.T, p, target string, uid uint32, user string) {
		m := &Manifest{Format: ManifestFormat, ChunkSize: MinChunkSize, Entries: []Entry{
			{Path: p, Type: TypeSymlink, Mode: 0o777, UID: uid, User: user, Target: target},
		}}
		if m.Validate(fuzzOpts.Limits) != nil {
			return
		}
		enc := mustEncode(t, m)
		d, err := DecodeManifest(enc, fuzzOpts.Limits)
		if err != nil {
			t.Fatalf("DecodeManifest(%s) = %v", enc, err)
		}
		if got := d.Entries[0]; got.Path != p || got.Target != target || got.UID != uid || got.User != user {
			t.Fatalf("round trip of %q -> %q (%d %q) gave %q -> %q (%d %q)", p, target, uid, user, got.Path, got.Target, got.UID, got.User)
		}
	})
}

// fuzzTarSeeds are small archives covering every entry type.
func fuzzTarSeeds(f *testing.F) [][]byte {
	return [][]byte{
		makeTar(f),
		makeTar(f, tarFile("a/b", "hello"), tarSymlink("a/l", "b"), tarHardlink("h", "a/b"), tarDirEntry("d/")),
		makeTar(f, tarFile("big", string(benchData(3*MinChunkSize+5)))),
		makeTar(f, tarSymlink("a/up", ".."), tarSymlink("a/x", "up/..")),
		makeTar(f, tarFile("../x", "x")),
		makeTar(f, tarEntry{name: "f", typ: '0', mode: 0o644, body: "short", size: 100}),
		makeTar(f, tarEntry{name: "s\xffu", typ: '0', mode: 0o4755, body: "x", uid: 3, gid: 4, uname: "u", gname: "g"}, tarSymlink(`l\x`, "/abs")),
	}
}

func FuzzImportTar(f *testing.F) {
	for _, s := range fuzzTarSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ImportReader(context.Background(), bytes.NewReader(data), KindTar, "fuzz.tar", fuzzOpts, DiscardSink{})
		if err == nil {
			checkImported(t, m)
		}
	})
}

func FuzzImportTarGz(f *testing.F) {
	for _, s := range fuzzTarSeeds(f) {
		f.Add(gzipBytes(f, s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ImportReader(context.Background(), bytes.NewReader(data), KindTarGz, "fuzz.tar.gz", fuzzOpts, DiscardSink{})
		if err == nil {
			checkImported(t, m)
		}
	})
}

func FuzzImportDeb(f *testing.F) {
	for _, s := range fuzzTarSeeds(f)[:3] {
		f.Add(makeDeb(f, "data.tar", s))
		f.Add(makeDeb(f, "data.tar.gz", gzipBytes(f, s)))
		f.Add(makeDeb(f, "data.tar.xz", xzBytes(f, s)))
		f.Add(makeDeb(f, "data.tar.zst", zstdBytes(f, s)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ImportReader(context.Background(), bytes.NewReader(data), KindDeb, "fuzz.deb", fuzzOpts, DiscardSink{})
		if err == nil {
			checkImported(t, m)
		}
	})
}
