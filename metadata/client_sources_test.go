package metadata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// sources is the in-memory fake of CheckingFetcher: it asks its peers in
// order, then the origin, and follows the interface's error contract.
type sources struct {
	origin Fetcher
	peers  []Fetcher
}

var _ CheckingFetcher = (*sources)(nil)

// Fetch checks a manifest against the CID in its path; other files it
// takes from the first source that has them.
func (s *sources) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	check := func([]byte) error { return nil }
	if name, ok := strings.CutPrefix(p, ManifestsDir+"/"); ok {
		c, err := cid.Decode(name)
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", p, ErrInvalidPath)
		}
		check = func(b []byte) error { return VerifyCID(c, b) }
	}
	return s.FetchChecked(ctx, p, maxLen, check)
}

func (s *sources) FetchChecked(ctx context.Context, p string, maxLen int64, check func([]byte) error) ([]byte, error) {
	b, _, err := s.best(ctx, p, maxLen, func(b []byte) (int64, error) { return 0, check(b) }, true)
	return b, err
}

func (s *sources) FetchNewest(ctx context.Context, p string, maxLen int64, check func([]byte) (int64, error)) ([]byte, error) {
	b, _, err := s.best(ctx, p, maxLen, check, false)
	return b, err
}

func (s *sources) best(ctx context.Context, p string, maxLen int64, check func([]byte) (int64, error), first bool) ([]byte, int64, error) {
	var best []byte
	var bestV int64 = -1
	var originErr error
	for i, f := range append(append([]Fetcher{}, s.peers...), s.origin) {
		b, err := f.Fetch(ctx, p, maxLen)
		if err == nil {
			var v int64
			if v, err = check(b); err == nil && v > bestV {
				best, bestV = b, v
				if first {
					return best, bestV, nil
				}
			}
		}
		if i == len(s.peers) {
			originErr = err
		}
	}
	switch {
	case best != nil:
		return best, bestV, nil
	case originErr == nil:
		return nil, 0, fmt.Errorf("fetch %s: no copy", p)
	case errors.Is(originErr, ErrNotFound):
		return nil, 0, originErr
	case isDown(originErr):
		return nil, 0, fmt.Errorf("fetch %s: %w: %w (origin: %v)", p, ErrNotFound, ErrUnavailable, originErr)
	}
	return nil, 0, originErr
}

var errDown = errors.New("connection refused")

func isDown(err error) bool { return errors.Is(err, errDown) }

// downFetcher is an origin that cannot be reached.
type downFetcher struct{}

func (downFetcher) Fetch(context.Context, string, int64) ([]byte, error) {
	return nil, fmt.Errorf("GET origin: %w", errDown)
}

// peerOf serves what a client trusts (TrustedFile of its directory) and
// the repository's manifests (what its store would hold).
type peerOf struct {
	dir, repo string
}

func (p peerOf) Fetch(ctx context.Context, path string, maxLen int64) ([]byte, error) {
	if strings.HasPrefix(path, ManifestsDir+"/") {
		return DirFetcher{Dir: p.repo}.Fetch(ctx, path, maxLen)
	}
	return TrustedFile(p.dir, path, maxLen)
}

// overlay serves its own files first, then falls through to base: a peer
// that tampers with some files.
type overlay struct {
	files map[string][]byte
	base  Fetcher
}

func (o overlay) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	if b, ok := o.files[p]; ok {
		return readLimited(bytes.NewReader(b), p, maxLen)
	}
	return o.base.Fetch(ctx, p, maxLen)
}

// TestSourcesPeersAlone: with the origin unreachable, a new client follows
// the root chain, gets timestamp, snapshot, targets, a delegated role and
// the manifests from a peer that holds them, and resolves what it would
// have resolved from the origin.
func TestSourcesPeersAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	alice := mustKey(t)
	if err := e.repo.Delegate(ctx, DelegateOptions{Role: "alice", Patterns: []string{"alice-*"}, Keys: []*tufmeta.Key{alice.Public()}}); err != nil {
		t.Fatal(err)
	}
	pub, err := OpenRepo(e.dir, []*PrivateKey{alice, e.keys.snapshot, e.keys.timestamp}, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Add(ctx, AddOptions{Name: "alice-tool", Version: "1.0.0", Source: writeTree(t, map[string]string{"f": "alice"})}); err != nil {
		t.Fatal(err)
	}
	e.add("pkg", "1.0.0", "one")
	e.add("pkg", "1.1.0", "two")
	rot, err := OpenRepo(e.dir, e.keys.all(), e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := rot.UpdateRoot(ctx, RootUpdate{}); err != nil {
			t.Fatalf("UpdateRoot: %v", err)
		}
	}

	adir := filepath.Join(t.TempDir(), "a")
	a := e.client(adir)
	for _, ref := range []string{"pkg", "alice-tool"} {
		if _, err := a.Resolve(ctx, ref); err != nil {
			t.Fatalf("peer: Resolve(%s) = %v", ref, err)
		}
	}
	if err := e.clientWith("", downFetcher{}).Refresh(ctx); !errors.Is(err, errDown) {
		t.Fatalf("control: Refresh with the origin down and no peer = %v, want the origin's error", err)
	}
	bdir := filepath.Join(t.TempDir(), "b")
	b := e.clientWith(bdir, &sources{origin: downFetcher{}, peers: []Fetcher{peerOf{adir, e.dir}}})
	r, err := b.Resolve(ctx, "pkg")
	if err != nil || r.Version != "1.1.0" {
		t.Fatalf("Resolve(pkg) from a peer alone = %+v, %v, want 1.1.0", r, err)
	}
	if r, err := b.Resolve(ctx, "alice-tool"); err != nil || r.Role != "alice" {
		t.Fatalf("Resolve(alice-tool) from a peer alone = %+v, %v, want role alice", r, err)
	}
	if v := signedVersion(e.readClient(bdir, "root.json")); v != 3 {
		t.Errorf("trusted root version %d after following the chain from peers, want 3", v)
	}
	// What b trusts, it serves in turn: a third client learns it all from b.
	c := e.clientWith("", &sources{origin: downFetcher{}, peers: []Fetcher{peerOf{bdir, e.dir}}})
	if r, err := c.Resolve(ctx, "alice-tool"); err != nil {
		t.Fatalf("Resolve(alice-tool) from a peer that learnt it from peers = %+v, %v", r, err)
	}
}

// snapshotOf saves the repository's timestamp, snapshot and targets.
type repoState struct {
	ts                []byte
	snapVer, targsVer int64
	snap, targs       []byte
}

func (e *testEnv) save() repoState {
	e.t.Helper()
	st := e.state()
	s := repoState{ts: e.read(MetadataDir + "/timestamp.json"), snapVer: st.snapshot.Signed.Version, targsVer: st.targets["targets"].Signed.Version}
	s.snap = e.read(fmt.Sprintf("%s/%d.snapshot.json", MetadataDir, s.snapVer))
	s.targs = e.read(fmt.Sprintf("%s/%d.targets.json", MetadataDir, s.targsVer))
	return s
}

// timestampLike returns the current timestamp bumped to version+bump,
// expiring at expires, signed by key.
func (e *testEnv) timestampLike(bump int64, expires time.Time, key *PrivateKey) []byte {
	e.t.Helper()
	ts, _ := cloneMeta(e.state().timestamp)
	ts.Signed.Version += bump
	ts.Signed.Expires = expires
	if err := signMeta(ts, []*PrivateKey{key}); err != nil {
		e.t.Fatal(err)
	}
	b, err := ts.ToBytes(true)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// TestSourcesRefuseBadPeers: a peer serving old, expired, forged or
// mixed-and-matched metadata, or a manifest that is not its CID's, is
// refused; the client goes on with its other sources, and with none it
// keeps its trusted state.
func TestSourcesRefuseBadPeers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	type env struct {
		e      *testEnv
		s0, s1 repoState
		pkgCID string
	}
	tests := []struct {
		name string
		bad  func(v env) map[string][]byte
		// alone is what a client that trusts s0 resolves with the bad
		// peer as its only source: "1.0.0" when it keeps its trusted
		// state, "1.1.0" when the refused file was not needed, "" when
		// it cannot complete the refresh.
		alone string
	}{
		{"older timestamp", func(v env) map[string][]byte {
			return map[string][]byte{"metadata/timestamp.json": v.s0.ts}
		}, "1.0.0"},
		{"expired timestamp", func(v env) map[string][]byte {
			return map[string][]byte{"metadata/timestamp.json": v.e.timestampLike(5, v.e.clock.Now().Add(-time.Minute), v.e.keys.timestamp)}
		}, "1.0.0"},
		{"timestamp signed by a stranger", func(v env) map[string][]byte {
			return map[string][]byte{"metadata/timestamp.json": v.e.timestampLike(5, v.e.clock.Now().Add(time.Hour), mustKey(v.e.t))}
		}, "1.0.0"},
		{"older snapshot under the current name", func(v env) map[string][]byte {
			return map[string][]byte{fmt.Sprintf("metadata/%d.snapshot.json", v.s1.snapVer): v.s0.snap}
		}, ""},
		{"older targets under the current name", func(v env) map[string][]byte {
			return map[string][]byte{fmt.Sprintf("metadata/%d.targets.json", v.s1.targsVer): v.s0.targs}
		}, ""},
		{"next root signed by a stranger", func(v env) map[string][]byte {
			nr, _ := cloneMeta(v.e.state().root)
			nr.Signed.Version = 2
			_ = signMeta(nr, []*PrivateKey{mustKey(v.e.t)})
			b, _ := nr.ToBytes(true)
			return map[string][]byte{"metadata/2.root.json": b}
		}, "1.1.0"},
		{"manifest that is not its CID's", func(v env) map[string][]byte {
			return map[string][]byte{"manifests/" + v.pkgCID: []byte(`{"format":1}`)}
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, nil)
			e.add("pkg", "1.0.0", "one")
			v := env{e: e, s0: e.save()}
			bdir, cdir := filepath.Join(t.TempDir(), "b"), filepath.Join(t.TempDir(), "c")
			for _, dir := range []string{bdir, cdir} {
				if _, err := e.client(dir).Resolve(ctx, "pkg"); err != nil {
					t.Fatal(err)
				}
			}
			trustedTS := e.readClient(cdir, "timestamp.json")
			r1 := e.add("pkg", "1.1.0", "two")
			v.s1, v.pkgCID = e.save(), r1.ManifestCID.String()
			adir := filepath.Join(t.TempDir(), "a")
			if _, err := e.client(adir).Resolve(ctx, "pkg"); err != nil {
				t.Fatal(err)
			}
			good := peerOf{adir, e.dir}
			bad := overlay{files: tt.bad(v), base: good}

			b := e.clientWith(bdir, &sources{origin: downFetcher{}, peers: []Fetcher{bad, good}})
			if r, err := b.Resolve(ctx, "pkg"); err != nil || r.Version != "1.1.0" {
				t.Fatalf("Resolve(pkg) with a bad peer asked first and a good one = %+v, %v, want 1.1.0", r, err)
			}

			c := e.clientWith(cdir, &sources{origin: downFetcher{}, peers: []Fetcher{bad}})
			r, err := c.Resolve(ctx, "pkg")
			switch {
			case tt.alone == "" && err == nil:
				t.Errorf("Resolve(pkg) with the bad peer alone = %s, want an error", r.Version)
			case tt.alone != "" && (err != nil || r.Version != tt.alone):
				t.Errorf("Resolve(pkg) with the bad peer alone = %+v, %v, want %s", r, err, tt.alone)
			case tt.alone == "1.0.0" && !bytes.Equal(e.readClient(cdir, "timestamp.json"), trustedTS):
				t.Error("the trusted timestamp changed after a bad peer's copy was refused")
			}
			if err == nil && r.ManifestCID.String() != v.pkgCID && r.Version == "1.1.0" {
				t.Errorf("Resolve(pkg) = manifest %s, want the genuine %s", r.ManifestCID, v.pkgCID)
			}
		})
	}
}

// TestSourcesFreezeAndRollbackAcrossRestart: metadata that came from peers
// protects a restarted client as metadata from the origin does: an older
// timestamp is refused (from a peer: ignored; from the origin: ErrRollback),
// and once the trusted timestamp has expired with nobody offering a newer
// one, the client refuses to act (ErrExpired).
func TestSourcesFreezeAndRollbackAcrossRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	e.add("pkg", "1.0.0", "one")
	s0 := e.save()
	e.add("pkg", "1.1.0", "two")
	adir := filepath.Join(t.TempDir(), "a")
	if _, err := e.client(adir).Resolve(ctx, "pkg"); err != nil {
		t.Fatal(err)
	}
	good := peerOf{adir, e.dir}
	stale := overlay{files: map[string][]byte{"metadata/timestamp.json": s0.ts}, base: good}

	bdir := filepath.Join(t.TempDir(), "b")
	if r, err := e.clientWith(bdir, &sources{origin: downFetcher{}, peers: []Fetcher{good}}).Resolve(ctx, "pkg"); err != nil || r.Version != "1.1.0" {
		t.Fatalf("Resolve(pkg) from peers = %+v, %v", r, err)
	}
	// Restarted, with only a stale peer: the older timestamp is ignored.
	b := e.clientWith(bdir, &sources{origin: downFetcher{}, peers: []Fetcher{stale}})
	if r, err := b.Resolve(ctx, "pkg"); err != nil || r.Version != "1.1.0" {
		t.Fatalf("after restart, stale peer only: Resolve(pkg) = %+v, %v, want 1.1.0 (trusted)", r, err)
	}
	// Restarted, the origin back but rolled back: refused.
	e.write(MetadataDir+"/timestamp.json", s0.ts)
	b = e.clientWith(bdir, &sources{origin: DirFetcher{Dir: e.dir}, peers: []Fetcher{stale}})
	if err := b.Refresh(ctx); !errors.Is(err, ErrRollback) {
		t.Errorf("after restart, origin rolled back: Refresh = %v, want ErrRollback", err)
	}
	// Frozen: a day later nobody has a newer timestamp.
	e.clock.Add(25 * time.Hour)
	for name, f := range map[string]Fetcher{
		"no source":  &sources{origin: downFetcher{}},
		"peers only": &sources{origin: downFetcher{}, peers: []Fetcher{good, stale}},
	} {
		if err := e.clientWith(bdir, f).Refresh(ctx); !errors.Is(err, ErrExpired) {
			t.Errorf("%s, trusted timestamp expired: Refresh = %v, want ErrExpired", name, err)
		}
	}
}

func TestTrustedFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	e.add("pkg", "1.0.0", "one")
	dir := filepath.Join(t.TempDir(), "trusted")
	if err := e.client(dir).Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	st := e.state()
	served := map[string]string{
		"metadata/timestamp.json": "timestamp.json",
		"metadata/1.root.json":    "root.json",
		fmt.Sprintf("metadata/%d.snapshot.json", st.snapshot.Signed.Version):          "snapshot.json",
		fmt.Sprintf("metadata/%d.targets.json", st.targets["targets"].Signed.Version): "targets.json",
	}
	for p, file := range served {
		got, err := TrustedFile(dir, p, 1<<20)
		if err != nil || !bytes.Equal(got, e.readClient(dir, file)) {
			t.Errorf("TrustedFile(%q) = %d bytes, %v; want %s", p, len(got), err, file)
		}
	}
	if _, err := TrustedFile(dir, "metadata/timestamp.json", 10); !errors.Is(err, ErrTooLarge) {
		t.Errorf("TrustedFile over maxLen = %v, want ErrTooLarge", err)
	}
	os.WriteFile(filepath.Join(filepath.Dir(dir), "secret.json"), []byte(`{"signed":{"version":1}}`), 0o600)
	os.Symlink("../secret.json", filepath.Join(dir, "delegated-link"))
	os.MkdirAll(filepath.Join(dir, delegatedDir), 0o700)
	os.Symlink("../../secret.json", filepath.Join(dir, delegatedDir, "evil.json"))
	for _, p := range []string{
		"metadata/2.root.json", "metadata/7.snapshot.json", "metadata/1.timestamp.json",
		"metadata/1.evil.json", "metadata/1.%2E%2E%2Fsecret.json", "metadata/01.root.json",
		"metadata/root.json", "metadata/../secret.json", "../secret.json", "/etc/passwd",
		"manifests/x", "chunks/x", "metadata/1.root.json/x", "metadata/tuf_tmp",
	} {
		if b, err := TrustedFile(dir, p, 1<<20); err == nil {
			t.Errorf("TrustedFile(%q) = %d bytes, want an error", p, len(b))
		}
	}
}

// FuzzTrustedFile asks TrustedFile for arbitrary paths: never a panic, and
// whatever it serves is one of the files a client trusts, byte for byte.
func FuzzTrustedFile(f *testing.F) {
	dir := f.TempDir()
	files := map[string]string{
		"timestamp.json":         `{"signed":{"version":3}}`,
		"root.json":              `{"signed":{"version":2}}`,
		"roots/1.root.json":      `{"signed":{"version":1}}`,
		"snapshot.json":          `{"signed":{"version":4}}`,
		"targets.json":           `{"signed":{"version":5}}`,
		"delegated/alice.json":   `{"signed":{"version":6}}`,
		"delegated/a%2Fb.json":   `{"signed":{"version":7}}`,
		"../outside.json":        `{"signed":{"version":1}}`,
		"delegated/../x.json":    `{"signed":{"version":1}}`,
		"other/1.something.json": `{"signed":{"version":1}}`,
	}
	served := map[string]bool{}
	for p, s := range files {
		full := filepath.Join(dir, "trusted", p)
		os.MkdirAll(filepath.Dir(full), 0o700)
		os.WriteFile(full, []byte(s), 0o600)
		if !strings.HasPrefix(p, "..") && !strings.Contains(p, "/../") && !strings.HasPrefix(p, "other/") {
			served[s] = true
		}
	}
	for _, s := range []string{"metadata/timestamp.json", "metadata/2.root.json", "metadata/1.root.json", "metadata/6.alice.json",
		"metadata/7.a%2Fb.json", "metadata/1.x.json", "metadata/../outside.json", "metadata/1.%2E%2E.json", "manifests/x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		b, err := TrustedFile(filepath.Join(dir, "trusted"), p, 1<<10)
		if err == nil && !served[string(b)] {
			t.Fatalf("TrustedFile(%q) = %q, not a trusted file", p, b)
		}
	})
}

// TestCooperativePath: manifests and fixed-version metadata other than
// root and timestamp; nothing else, and nothing that leaves its directory.
func TestCooperativePath(t *testing.T) {
	c := SumCID([]byte("m")).String()
	for p, want := range map[string]bool{
		"manifests/" + c: true, "metadata/7.snapshot.json": true, "metadata/5.targets.json": true,
		"metadata/3.bin-2a.json": true, "metadata/2.a%2Fb.json": true,
		"metadata/timestamp.json": false, "metadata/2.root.json": false, "metadata/1.timestamp.json": false,
		"metadata/snapshot.json": false, "metadata/07.snapshot.json": false, "metadata/1.%2E%2E.json": false,
		"metadata/../1.x.json": false, "manifests/x": false, "manifests/" + c + "/x": false, "chunks/" + c: false,
		"/manifests/" + c: false, "": false,
	} {
		if got := CooperativePath(p); got != want {
			t.Errorf("CooperativePath(%q) = %v, want %v", p, got, want)
		}
	}
}

// FuzzCooperativePath: a peer's path never panics CooperativePath, and
// one it accepts is a clean path under metadata/ or manifests/.
func FuzzCooperativePath(f *testing.F) {
	for _, s := range []string{"manifests/" + SumCID([]byte("m")).String(), "metadata/7.snapshot.json", "metadata/2.root.json",
		"metadata/1.%2E%2E.json", "metadata/../1.x.json", "manifests/x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !CooperativePath(p) {
			return
		}
		if _, err := cleanRepoPath(p); err != nil {
			t.Fatalf("CooperativePath(%q) accepted a path cleanRepoPath refuses: %v", p, err)
		}
		if !strings.HasPrefix(p, MetadataDir+"/") && !strings.HasPrefix(p, ManifestsDir+"/") {
			t.Fatalf("CooperativePath(%q) accepted a path outside metadata/ and manifests/", p)
		}
	})
}
