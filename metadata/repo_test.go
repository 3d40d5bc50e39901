package metadata

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// fakeClock is an injected clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// roleKeys are the four top-level keys of a test repository, all distinct
// so that a test can play an attacker holding only some of them.
type roleKeys struct{ root, targets, snapshot, timestamp *PrivateKey }

func (k roleKeys) all() []*PrivateKey {
	return []*PrivateKey{k.root, k.targets, k.snapshot, k.timestamp}
}

func (k roleKeys) online() []*PrivateKey { return []*PrivateKey{k.snapshot, k.timestamp} }

// testEnv is a repository in t.TempDir() with an injected clock.
type testEnv struct {
	t     *testing.T
	dir   string
	keys  roleKeys
	clock *fakeClock
	repo  *Repo
}

func mustKey(t testing.TB) *PrivateKey {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newTestEnv builds a repository with distinct keys per role; mod may adjust
// the config.
func newTestEnv(t *testing.T, mod func(*RepoConfig)) *testEnv {
	t.Helper()
	e := &testEnv{t: t, dir: t.TempDir(), clock: newFakeClock()}
	e.keys = roleKeys{mustKey(t), mustKey(t), mustKey(t), mustKey(t)}
	cfg := RepoConfig{
		RootKeys: []*PrivateKey{e.keys.root}, TargetsKeys: []*PrivateKey{e.keys.targets},
		SnapshotKeys: []*PrivateKey{e.keys.snapshot}, TimestampKeys: []*PrivateKey{e.keys.timestamp},
		Now: e.clock.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := InitRepo(e.dir, cfg)
	if err != nil {
		t.Fatalf("InitRepo: %v", err)
	}
	e.repo = r
	return e
}

// writeTree writes a small sample tree and returns its directory.
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, s := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// add publishes name@version with a one-file tree whose content is body.
func (e *testEnv) add(name, version, body string, deps ...string) *AddResult {
	e.t.Helper()
	res, err := e.repo.Add(context.Background(), AddOptions{
		Name: name, Version: version, Depends: deps,
		Source: writeTree(e.t, map[string]string{"bin/" + name: body, "README": "about " + name}),
	})
	if err != nil {
		e.t.Fatalf("Add(%s@%s): %v", name, version, err)
	}
	return res
}

// rootBytes returns N.root.json.
func (e *testEnv) rootBytes(n int) []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, MetadataDir, strconv.Itoa(n)+".root.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// client returns a client trusting 1.root.json, reading the repository
// directory, with its trusted state in cdir ("" for a fresh temp dir).
func (e *testEnv) client(cdir string) *Client {
	e.t.Helper()
	return e.clientWith(cdir, DirFetcher{Dir: e.dir})
}

func (e *testEnv) clientWith(cdir string, f Fetcher) *Client {
	e.t.Helper()
	if cdir == "" {
		cdir = filepath.Join(e.t.TempDir(), "trusted")
	}
	c, err := NewClient(ClientConfig{Dir: cdir, Root: e.rootBytes(1), Fetcher: f, Now: e.clock.Now})
	if err != nil {
		e.t.Fatalf("NewClient: %v", err)
	}
	return c
}

func (e *testEnv) path(p ...string) string {
	return filepath.Join(append([]string{e.dir}, p...)...)
}

func TestInitRepoLayout(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	for _, p := range []string{"metadata/1.root.json", "metadata/root.json", "metadata/timestamp.json",
		"metadata/1.snapshot.json", "metadata/1.targets.json", "manifests", "chunks"} {
		if _, err := os.Stat(e.path(p)); err != nil {
			t.Errorf("after InitRepo: %v", err)
		}
	}
	if _, err := InitRepo(e.dir, RepoConfig{RootKeys: e.keys.all(), TargetsKeys: e.keys.all(),
		SnapshotKeys: e.keys.all(), TimestampKeys: e.keys.all()}); !errors.Is(err, ErrExists) {
		t.Errorf("InitRepo(existing) = %v, want ErrExists", err)
	}
	res := e.add("hello", "1.0.0", "hi")
	for _, p := range []string{"metadata/2.targets.json", "metadata/2.snapshot.json", "manifests/" + res.ManifestCID.String()} {
		if _, err := os.Stat(e.path(p)); err != nil {
			t.Errorf("after Add: %v", err)
		}
	}
	// Version 1 files stay for clients still on them (consistent snapshots).
	if _, err := os.Stat(e.path("metadata/1.targets.json")); err != nil {
		t.Errorf("old targets removed: %v", err)
	}
}

func TestInitRepoNeedsKeys(t *testing.T) {
	t.Parallel()
	k := mustKey(t)
	_, err := InitRepo(t.TempDir(), RepoConfig{RootKeys: []*PrivateKey{k}, RootThreshold: 2,
		TargetsKeys: []*PrivateKey{k}, SnapshotKeys: []*PrivateKey{k}, TimestampKeys: []*PrivateKey{k}})
	if !errors.Is(err, ErrMissingKey) || !strings.Contains(err.Error(), "root") {
		t.Errorf("InitRepo(threshold 2, one key) = %v, want ErrMissingKey naming root", err)
	}
}

func TestAddIdempotentAndConflict(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	src := writeTree(t, map[string]string{"a.txt": "alpha", "dir/b.txt": "beta beta"})
	ctx := context.Background()
	first, err := e.repo.Add(ctx, AddOptions{Name: "pkg", Version: "1.0", Source: src, Depends: []string{"lib>=1"}})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	if first.Unchanged || first.Version != "1.0" || first.Chunks != 2 || first.NewChunks != 2 || first.Size != 14 {
		t.Errorf("Add = %+v, want version 1.0 (as given), 2 new chunks, size 14", first)
	}
	tsBefore := e.repo.timestamp.Signed.Version
	again, err := e.repo.Add(ctx, AddOptions{Name: "pkg", Version: "1.0.0", Source: src, Depends: []string{"lib>=1"}})
	if err != nil {
		t.Fatalf("Add again: %v", err)
	}
	if !again.Unchanged || !again.ManifestCID.Equals(first.ManifestCID) || again.Version != "1.0" {
		t.Errorf("Add again = %+v, want Unchanged with the same CID, as the equal version 1.0", again)
	}
	if got := e.repo.timestamp.Signed.Version; got != tsBefore {
		t.Errorf("timestamp version after idempotent add = %d, want %d", got, tsBefore)
	}
	// Reopened from disk, the same holds.
	r2, err := OpenRepo(e.dir, e.keys.all(), e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	other := writeTree(t, map[string]string{"a.txt": "ALPHA", "dir/b.txt": "beta beta"})
	tests := []struct {
		name string
		opts AddOptions
	}{
		{"other content", AddOptions{Name: "pkg", Version: "1.0.0", Source: other, Depends: []string{"lib>=1"}}},
		{"other depends", AddOptions{Name: "pkg", Version: "1.0.0", Source: src, Depends: []string{"lib>=2"}}},
	}
	for _, tt := range tests {
		_, err := r2.Add(ctx, tt.opts)
		if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "pkg@1.0.0") {
			t.Errorf("%s: Add = %v, want ErrExists naming pkg@1.0.0", tt.name, err)
		}
	}
	// A second package sharing a chunk writes only the new one.
	third := writeTree(t, map[string]string{"a.txt": "gamma", "dir/b.txt": "beta beta"})
	res, err := r2.Add(ctx, AddOptions{Name: "pkg", Version: "1.1.0", Source: third})
	if err != nil {
		t.Fatal(err)
	}
	if res.NewChunks != 1 {
		t.Errorf("Add(pkg@1.1.0).NewChunks = %d, want 1", res.NewChunks)
	}
	pkgs, err := r2.Packages()
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 2 || pkgs[0].Version != "1.0" || pkgs[1].Version != "1.1.0" || pkgs[0].Depends[0] != "lib>=1" {
		t.Errorf("Packages() = %+v", pkgs)
	}
}

func TestAddRefusesBadInput(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	src := writeTree(t, map[string]string{"f": "x"})
	tests := []struct {
		name string
		opts AddOptions
		want error
	}{
		{"upper-case name", AddOptions{Name: "Foo", Version: "1.0.0", Source: src}, ErrMalformed},
		{"slash in name", AddOptions{Name: "a/b", Version: "1.0.0", Source: src}, ErrMalformed},
		{"long name", AddOptions{Name: strings.Repeat("a", 129), Version: "1.0.0", Source: src}, ErrMalformed},
		{"bad version", AddOptions{Name: "foo", Version: "one", Source: src}, ErrMalformed},
		{"build metadata", AddOptions{Name: "foo", Version: "1.0.0+b1", Source: src}, ErrMalformed},
		{"bad constraint", AddOptions{Name: "foo", Version: "1.0.0", Source: src, Depends: []string{"bar>=1.0/2"}}, ErrMalformed},
		{"no operator", AddOptions{Name: "foo", Version: "1.0.0", Source: src, Depends: []string{"bar 1.0"}}, ErrMalformed},
		{"listed twice", AddOptions{Name: "foo", Version: "1.0.0", Source: src, Depends: []string{"bar>=1", "bar<2"}}, ErrDependency},
		{"bad provides", AddOptions{Name: "foo", Version: "1.0.0", Source: src, Provides: []string{"Bar"}}, ErrMalformed},
		{"bad provided version", AddOptions{Name: "foo", Version: "1.0.0", Source: src, Provides: []string{"bar=one"}}, ErrMalformed},
		{"missing source", AddOptions{Name: "foo", Version: "1.0.0", Source: filepath.Join(src, "nope")}, nil},
	}
	for _, tt := range tests {
		_, err := e.repo.Add(context.Background(), tt.opts)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: Add = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestOperationsNeedKeys(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	ctx := context.Background()
	src := writeTree(t, map[string]string{"f": "x"})
	tests := []struct {
		name string
		keys []*PrivateKey
		op   func(r *Repo) error
		role string
	}{
		{"add without targets key", e.keys.online(), func(r *Repo) error {
			_, err := r.Add(ctx, AddOptions{Name: "foo", Version: "1.0.0", Source: src})
			return err
		}, "targets"},
		{"add without snapshot key", []*PrivateKey{e.keys.targets, e.keys.timestamp}, func(r *Repo) error {
			_, err := r.Add(ctx, AddOptions{Name: "foo", Version: "1.0.0", Source: src})
			return err
		}, "snapshot"},
		{"refresh without timestamp key", []*PrivateKey{e.keys.targets}, func(r *Repo) error { return r.Refresh(ctx) }, "timestamp"},
		{"delegate without targets key", e.keys.online(), func(r *Repo) error {
			return r.Delegate(ctx, DelegateOptions{Role: "alice", Patterns: []string{"alice-*"}, Keys: []*tufmeta.Key{mustKey(t).Public()}})
		}, "targets"},
		{"update root without root key", []*PrivateKey{e.keys.targets}, func(r *Repo) error {
			return r.UpdateRoot(ctx, RootUpdate{})
		}, "root"},
	}
	for _, tt := range tests {
		r, err := OpenRepo(e.dir, tt.keys, e.clock.Now)
		if err != nil {
			t.Fatal(err)
		}
		err = tt.op(r)
		if !errors.Is(err, ErrMissingKey) || !strings.Contains(err.Error(), "role "+tt.role) {
			t.Errorf("%s: got %v, want ErrMissingKey naming role %s", tt.name, err, tt.role)
		}
	}
}

func TestSingleKeyRepo(t *testing.T) {
	t.Parallel()
	k := mustKey(t)
	dir := t.TempDir()
	clock := newFakeClock()
	one := []*PrivateKey{k}
	if _, err := InitRepo(dir, RepoConfig{RootKeys: one, TargetsKeys: one, SnapshotKeys: one, TimestampKeys: one, Now: clock.Now}); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "k.json")
	if err := k.Save(keyFile); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenRepo(dir, []*PrivateKey{loaded}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(context.Background(), AddOptions{Name: "a", Version: "0.1.0", Source: writeTree(t, map[string]string{"x": "y"})}); err != nil {
		t.Fatalf("Add: %v", err)
	}
	root, _ := os.ReadFile(filepath.Join(dir, MetadataDir, "root.json"))
	c, err := NewClient(ClientConfig{Root: root, Fetcher: DirFetcher{Dir: dir}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Resolve(context.Background(), "a"); err != nil || got.Version != "0.1.0" {
		t.Errorf("Resolve(a) = %+v, %v, want 0.1.0", got, err)
	}
}

func TestRefreshExtendsTimestamp(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	e.add("hello", "1.0.0", "hi")
	c := e.client("")
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	oldExp := e.repo.timestamp.Signed.Expires
	oldVer := e.repo.timestamp.Signed.Version
	e.clock.Add(25 * time.Hour) // past the 1-day timestamp lifetime
	if err := c.Refresh(ctx); !errors.Is(err, ErrExpired) {
		t.Fatalf("Refresh with expired timestamp = %v, want ErrExpired", err)
	}
	if err := e.repo.Refresh(ctx); err != nil {
		t.Fatalf("Repo.Refresh: %v", err)
	}
	ts := e.repo.timestamp.Signed
	if !ts.Expires.After(oldExp) || ts.Version != oldVer+1 {
		t.Errorf("after Refresh timestamp v%d expires %v, want v%d after %v", ts.Version, ts.Expires, oldVer+1, oldExp)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Errorf("client Refresh after repo Refresh = %v", err)
	}
	// Past half the 7-day snapshot lifetime Refresh re-signs the snapshot too;
	// past half of targets' 90 days it re-signs targets.
	snapVer, tgVer := e.repo.snapshot.Signed.Version, e.repo.targets["targets"].Signed.Version
	e.clock.Add(5 * 24 * time.Hour)
	if err := e.repo.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if e.repo.snapshot.Signed.Version != snapVer+1 || e.repo.targets["targets"].Signed.Version != tgVer {
		t.Errorf("after 5 days: snapshot v%d targets v%d, want v%d, v%d", e.repo.snapshot.Signed.Version, e.repo.targets["targets"].Signed.Version, snapVer+1, tgVer)
	}
	e.clock.Add(60 * 24 * time.Hour)
	if err := e.repo.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if e.repo.targets["targets"].Signed.Version != tgVer+1 {
		t.Errorf("after 65 days: targets v%d, want v%d", e.repo.targets["targets"].Signed.Version, tgVer+1)
	}
	if _, err := c.Resolve(ctx, "hello"); err != nil {
		t.Errorf("Resolve after refreshes: %v", err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Errorf("client Refresh: %v", err)
	}
}
