package metadata

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// countingFetcher records the paths and bytes a client fetches.
type countingFetcher struct {
	f     Fetcher
	mu    sync.Mutex
	paths []string
	bytes int64
}

func (c *countingFetcher) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	b, err := c.f.Fetch(ctx, p, maxLen)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paths = append(c.paths, p)
	c.bytes += int64(len(b))
	return b, err
}

// take returns and forgets what was fetched so far.
func (c *countingFetcher) take() ([]string, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, b := c.paths, c.bytes
	c.paths, c.bytes = nil, 0
	return p, b
}

// metaPaths keeps the metadata paths of a fetch list, role names only
// (versions stripped), sorted.
func metaRoles(paths []string) []string {
	var out []string
	for _, p := range paths {
		f, ok := strings.CutPrefix(p, MetadataDir+"/")
		if !ok {
			continue
		}
		f = strings.TrimSuffix(f, ".json")
		if _, role, ok := strings.Cut(f, "."); ok {
			f = role
		}
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

func binnedEnv(t *testing.T, bins int) *testEnv {
	t.Helper()
	return newTestEnv(t, func(c *RepoConfig) { c.Bins = bins })
}

// binOfName returns the bin the repository puts name in.
func (e *testEnv) binOfName(name string) string {
	e.t.Helper()
	sr := succinctOf(e.state().targets[BinsRole])
	if sr == nil {
		e.t.Fatal("repository has no bins")
	}
	return binOf(sr, name)
}

func TestBinsInitAndAdd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := binnedEnv(t, 16)
	if n := e.repo.Bins(); n != 16 {
		t.Fatalf("Bins() = %d, want 16", n)
	}
	names := []string{"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}
	for _, n := range names {
		e.add(n, "1.0.0", n)
	}
	e.add("alpha", "1.1.0", "alpha two")
	st := e.state()
	if got := len(st.targets[tufmeta.TARGETS].Signed.Targets); got != 0 {
		t.Errorf("top-level targets lists %d targets, want none (all in bins)", got)
	}
	if v := st.targets[tufmeta.TARGETS].Signed.Version; v != 1 {
		t.Errorf("targets version %d after adds, want 1 (adds sign only bins)", v)
	}
	bin := e.binOfName("alpha")
	m, err := st.role(bin)
	if err != nil || m == nil {
		t.Fatalf("role(%s) = %v, %v", bin, m, err)
	}
	for _, p := range []string{"packages/alpha/1.0.0", "packages/alpha/1.1.0"} {
		if _, ok := m.Signed.Targets[p]; !ok {
			t.Errorf("bin %s lacks %s", bin, p)
		}
	}
	mf := st.snapshot.Signed.Meta[bin+".json"]
	if mf == nil || mf.Length != 0 || len(mf.Hashes) != 0 {
		t.Errorf("snapshot entry for %s = %+v, want a version only", bin, mf)
	}
	// Every version of a name is in its bin, and nowhere else.
	for role, m := range st.targets {
		for p := range m.Signed.Targets {
			n, _, _ := ParseTargetPath(p)
			if want := e.binOfName(n); role != want {
				t.Errorf("%s is in role %s, want %s", p, role, want)
			}
		}
	}
	pkgs, err := e.repo.Packages()
	if err != nil || len(pkgs) != len(names)+1 {
		t.Fatalf("Packages() = %d packages, %v, want %d", len(pkgs), err, len(names)+1)
	}
	c := e.client("")
	for _, n := range names {
		r, err := c.Resolve(ctx, n)
		if err != nil || r.Role != e.binOfName(n) {
			t.Errorf("Resolve(%s) = %+v, %v, want from bin %s", n, r, err, e.binOfName(n))
		}
	}
	if r, err := c.Resolve(ctx, "alpha"); err != nil || r.Version != "1.1.0" {
		t.Errorf("Resolve(alpha) = %+v, %v, want 1.1.0", r, err)
	}
	cpkgs, err := c.Packages(ctx)
	if err != nil || len(cpkgs) != len(pkgs) {
		t.Errorf("client Packages() = %d, %v, want %d", len(cpkgs), err, len(pkgs))
	}
	if _, err := c.Resolve(ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(nosuch) = %v, want ErrNotFound", err)
	}
}

func TestBinsCountRefused(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3, 1000, MaxBins * 2, -4} {
		k := mustKey(t)
		_, err := InitRepo(t.TempDir(), RepoConfig{RootKeys: []*PrivateKey{k}, TargetsKeys: []*PrivateKey{k},
			SnapshotKeys: []*PrivateKey{k}, TimestampKeys: []*PrivateKey{k}, Bins: n})
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("InitRepo(Bins: %d) = %v, want ErrMalformed", n, err)
		}
	}
}

// TestBinsClientFetchesOnlyChangedBin: a client that is up to date reads,
// after one package changes, the timestamp, the snapshot and the one bin
// that changed (plus the probe for a newer root), and resolving a name
// from cold reads one bin, not all of them.
func TestBinsClientFetchesOnlyChangedBin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := binnedEnv(t, 64)
	for i := range 40 {
		e.add(fmt.Sprintf("pkg%02d", i), "1.0.0", fmt.Sprint(i))
	}
	cf := &countingFetcher{f: DirFetcher{Dir: e.dir}}
	cdir := filepath.Join(t.TempDir(), "trusted")
	c := e.clientWith(cdir, cf)
	if _, err := c.Resolve(ctx, "pkg07"); err != nil {
		t.Fatal(err)
	}
	paths, _ := cf.take()
	want := []string{"bins", e.binOfName("pkg07"), "root", "snapshot", "targets", "timestamp"}
	slices.Sort(want)
	if got := metaRoles(paths); !slices.Equal(got, want) {
		t.Errorf("cold Resolve(pkg07) fetched metadata %v, want %v: the root probe, timestamp, snapshot, targets, bins and one bin", got, want)
	}
	if _, err := c.Packages(ctx); err != nil {
		t.Fatal(err)
	}
	cf.take()

	e.add("pkg03", "1.1.0", "three again")
	for _, cc := range []struct {
		name string
		c    *Client
	}{{"same client", c}, {"restarted client", e.clientWith(cdir, cf)}} {
		name, c := cc.name, cc.c
		if err := c.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if r, err := c.Resolve(ctx, "pkg03"); err != nil || r.Version != "1.1.0" {
			t.Fatalf("%s: Resolve(pkg03) = %+v, %v", name, r, err)
		}
		if _, err := c.Packages(ctx); err != nil {
			t.Fatal(err)
		}
		paths, _ := cf.take()
		var meta []string
		for _, p := range paths {
			if strings.HasPrefix(p, MetadataDir+"/") {
				meta = append(meta, p)
			}
		}
		changed := fmt.Sprintf("%s/%d.%s.json", MetadataDir, e.state().snapshot.Signed.Meta[e.binOfName("pkg03")+".json"].Version, e.binOfName("pkg03"))
		if name == "same client" {
			wantMeta := []string{MetadataDir + "/2.root.json", MetadataDir + "/timestamp.json",
				fmt.Sprintf("%s/%d.snapshot.json", MetadataDir, e.state().snapshot.Signed.Version), changed}
			if !slices.Equal(meta, wantMeta) {
				t.Errorf("%s: after one change fetched %v, want %v", name, meta, wantMeta)
			}
		} else if slices.Contains(meta, changed) || len(meta) != 2 {
			// Restarted on the same directory: the timestamp and root
			// probe only; the snapshot and bins it holds are current.
			t.Errorf("%s: fetched %v, want the root probe and timestamp only", name, meta)
		}
	}
}

func TestBinsDelegatedPublisher(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := binnedEnv(t, 16)
	alice := mustKey(t)
	if err := e.repo.Delegate(ctx, DelegateOptions{Role: "alice", Patterns: []string{"alice-*"}, Keys: []*tufmeta.Key{alice.Public()}}); err != nil {
		t.Fatalf("Delegate: %v", err)
	}
	for _, bad := range []string{"bins", "bin-00"} {
		if err := e.repo.Delegate(ctx, DelegateOptions{Role: bad, Patterns: []string{"x-*"}, Keys: []*tufmeta.Key{alice.Public()}}); !errors.Is(err, ErrMalformed) {
			t.Errorf("Delegate(role %q) = %v, want ErrMalformed", bad, err)
		}
	}
	pub, err := OpenRepo(e.dir, []*PrivateKey{alice, e.keys.snapshot, e.keys.timestamp}, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := pub.Add(ctx, AddOptions{Name: "alice-tool", Version: "1.0.0", Source: writeTree(t, map[string]string{"f": "a"})}); err != nil || res.Role != "alice" {
		t.Fatalf("publisher Add(alice-tool) = %+v, %v, want role alice", res, err)
	}
	if _, err := pub.Add(ctx, AddOptions{Name: "bob", Version: "1.0.0", Source: writeTree(t, map[string]string{"f": "b"})}); !errors.Is(err, ErrMissingKey) {
		t.Errorf("publisher Add(bob) = %v, want ErrMissingKey", err)
	}
	e.add("bob", "1.0.0", "bob")
	// The targets keys may publish an alice-* name too: it goes to the bin.
	e.add("alice-lib", "2.0.0", "lib")
	c := e.client("")
	for ref, role := range map[string]string{"alice-tool": "alice", "bob": e.binOfName("bob"), "alice-lib": e.binOfName("alice-lib")} {
		if r, err := c.Resolve(ctx, ref); err != nil || r.Role != role {
			t.Errorf("Resolve(%s) = %+v, %v, want role %s", ref, r, err, role)
		}
	}
	// The publisher signing a name outside its patterns is not believed,
	// and neither is a bin listing a name that hashes elsewhere.
	e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){"alice": addTargetLike(e.target("packages/alice-tool/1.0.0"), "packages/mallory/1.0.0")},
		roleKeys: []*PrivateKey{alice}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
	if r, err := e.client("").Resolve(ctx, "mallory"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(mallory) signed by alice = %+v, %v, want ErrNotFound", r, err)
	}
}

// otherBin returns a bin that is not name's.
func (e *testEnv) otherBin(name string) string {
	own := e.binOfName(name)
	for _, b := range succinctOf(e.state().targets[BinsRole]).GetRoles() {
		if b != own {
			return b
		}
	}
	e.t.Fatal("one bin only")
	return ""
}

func TestAttackBins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// seen: a client that resolved pkg before the attack (its bin and
	// snapshot kept in its directory) must refuse too; otherwise only a
	// new client is attacked (the other keeps a valid copy of the bin).
	tests := []struct {
		name   string
		attack func(e *testEnv)
		want   error
		seen   bool
	}{
		{"older bin served under the current version", func(e *testEnv) {
			bin := e.binOfName("pkg")
			v := e.state().snapshot.Signed.Meta[bin+".json"].Version
			e.write(fmt.Sprintf("%s/%d.%s.json", MetadataDir, v, bin), e.read(fmt.Sprintf("%s/%d.%s.json", MetadataDir, v-1, bin)))
		}, ErrRollback, false},
		{"snapshot naming an older bin version", func(e *testEnv) {
			bin := e.binOfName("pkg")
			e.forge(forgery{snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp},
				editSnap: func(s *tufmeta.SnapshotType) { s.Meta[bin+".json"].Version-- }})
		}, ErrRollback, true},
		{"bin signed by the snapshot key", func(e *testEnv) {
			bin := e.binOfName("pkg")
			e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){bin: addTargetLike(e.target("packages/pkg/1.1.0"), "packages/pkg/9.9.9")},
				roleKeys: []*PrivateKey{e.keys.snapshot}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
		}, ErrSignature, true},
		{"bin edited in place", func(e *testEnv) {
			bin := e.binOfName("pkg")
			v := e.state().snapshot.Signed.Meta[bin+".json"].Version
			p := fmt.Sprintf("%s/%d.%s.json", MetadataDir, v, bin)
			e.write(p, []byte(strings.Replace(string(e.read(p)), "packages/pkg/1.1.0", "packages/pkg/9.9.9", 1)))
		}, ErrSignature, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := binnedEnv(t, 16)
			e.add("pkg", "1.0.0", "one")
			e.add("pkg", "1.1.0", "two")
			cdir := filepath.Join(t.TempDir(), "trusted")
			if r, err := e.client(cdir).Resolve(ctx, "pkg"); err != nil || r.Version != "1.1.0" {
				t.Fatalf("control: Resolve(pkg) = %+v, %v", r, err)
			}
			tt.attack(e)
			clients := map[string]*Client{"new client": e.client("")}
			if tt.seen {
				clients = map[string]*Client{"client that saw the bin": e.client(cdir)}
			}
			for name, c := range clients {
				_, err := c.Resolve(ctx, "pkg")
				if !errors.Is(err, tt.want) {
					t.Errorf("%s: Resolve(pkg) = %v, want %v", name, err, tt.want)
				}
			}
		})
	}
	t.Run("target in a bin that is not its name's", func(t *testing.T) {
		t.Parallel()
		e := binnedEnv(t, 16)
		e.add("pkg", "1.0.0", "one")
		// The bins key holder signs pkg@6.6.6 into the wrong bin: a
		// client looking up pkg reads pkg's bin only, and listing every
		// package does not show it either.
		wrong := e.otherBin("pkg")
		e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){wrong: addTargetLike(e.target("packages/pkg/1.0.0"), "packages/pkg/6.6.6")},
			roleKeys: []*PrivateKey{e.keys.targets}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
		c := e.client("")
		if r, err := c.Resolve(ctx, "pkg"); err != nil || r.Version != "1.0.0" {
			t.Errorf("Resolve(pkg) = %+v, %v, want 1.0.0", r, err)
		}
		if r, err := c.Resolve(ctx, "pkg@6.6.6"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve(pkg@6.6.6) = %+v, %v, want ErrNotFound", r, err)
		}
		pkgs, err := c.Packages(ctx)
		if err != nil || len(pkgs) != 1 {
			t.Errorf("Packages() = %v, %v, want pkg@1.0.0 only", pkgs, err)
		}
	})
}

func TestUseBinsMigrates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	alice := mustKey(t)
	if err := e.repo.Delegate(ctx, DelegateOptions{Role: "alice", Patterns: []string{"alice-*"}, Keys: []*tufmeta.Key{alice.Public()}}); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		e.add(fmt.Sprintf("p%d", i), "1.0.0", fmt.Sprint(i))
	}
	pub, _ := OpenRepo(e.dir, []*PrivateKey{alice, e.keys.snapshot, e.keys.timestamp}, e.clock.Now)
	if _, err := pub.Add(ctx, AddOptions{Name: "alice-tool", Version: "1.0.0", Source: writeTree(t, map[string]string{"f": "a"})}); err != nil {
		t.Fatal(err)
	}
	before, err := e.repo.Packages()
	if err != nil {
		t.Fatal(err)
	}
	cdir := filepath.Join(t.TempDir(), "trusted")
	if _, err := e.client(cdir).Resolve(ctx, "p3"); err != nil {
		t.Fatal(err)
	}
	r, _ := OpenRepo(e.dir, e.keys.all(), e.clock.Now)
	tgBefore := r.targets[tufmeta.TARGETS].Signed.Version
	if err := r.UseBins(ctx, 8); err != nil {
		t.Fatalf("UseBins: %v", err)
	}
	if err := r.UseBins(ctx, 8); !errors.Is(err, ErrExists) {
		t.Errorf("UseBins again = %v, want ErrExists", err)
	}
	st := e.state()
	if v := st.targets[tufmeta.TARGETS].Signed.Version; v != tgBefore+1 {
		t.Errorf("targets version %d, want %d (signed once)", v, tgBefore+1)
	}
	if n := len(st.targets[tufmeta.TARGETS].Signed.Targets); n != 0 {
		t.Errorf("targets still lists %d targets", n)
	}
	if d := st.targets[tufmeta.TARGETS].Signed.Delegations; d.Roles[0].Name != "alice" || d.Roles[1].Name != BinsRole {
		t.Errorf("delegations %s, %s, want alice, then bins", d.Roles[0].Name, d.Roles[1].Name)
	}
	after, err := e.repo.Packages()
	if err != nil || len(after) != len(before) {
		t.Fatalf("Packages() after = %d, %v, want %d", len(after), err, len(before))
	}
	for i := range before {
		want := before[i]
		if want.Role == tufmeta.TARGETS {
			want.Role = e.binOfName(want.Name)
		}
		if fmt.Sprint(after[i]) != fmt.Sprint(want) {
			t.Errorf("package %d after migration %+v, want %+v", i, after[i], want)
		}
	}
	for _, c := range []*Client{e.client(cdir), e.client("")} {
		for _, ref := range []string{"p3", "p11", "alice-tool"} {
			if _, err := c.Resolve(ctx, ref); err != nil {
				t.Errorf("Resolve(%s) after migration = %v", ref, err)
			}
		}
	}
	// Publishing after the migration goes to the bins, and the delegated
	// publisher keeps its role.
	if res := e.add("p12", "1.0.0", "twelve"); res.Role != e.binOfName("p12") {
		t.Errorf("Add(p12) role %s, want %s", res.Role, e.binOfName("p12"))
	}
	pub, _ = OpenRepo(e.dir, []*PrivateKey{alice, e.keys.snapshot, e.keys.timestamp}, e.clock.Now)
	if res, err := pub.Add(ctx, AddOptions{Name: "alice-tool", Version: "2.0.0", Source: writeTree(t, map[string]string{"f": "a2"})}); err != nil || res.Role != "alice" {
		t.Errorf("publisher Add after migration = %+v, %v", res, err)
	}
	if _, err := os.Stat(e.path(MetadataDir, "1.bins.json")); err != nil {
		t.Errorf("bins role file: %v", err)
	}
}

// TestBinsKeyRotation: rotating the targets keys re-keys the bins, so the
// old targets key can publish into no bin and a bin it signs is refused.
func TestBinsKeyRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := binnedEnv(t, 16)
	e.add("hello", "1.0.0", "hi")
	cdir := filepath.Join(t.TempDir(), "trusted")
	if _, err := e.client(cdir).Resolve(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	newTargets := mustKey(t)
	r, err := OpenRepo(e.dir, append(e.keys.all(), newTargets), e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.UpdateRoot(ctx, RootUpdate{TargetsKeys: []*tufmeta.Key{newTargets.Public()}}); err != nil {
		t.Fatalf("UpdateRoot: %v", err)
	}
	old, _ := OpenRepo(e.dir, e.keys.all(), e.clock.Now)
	if _, err := old.Add(ctx, AddOptions{Name: "x", Version: "1.0.0", Source: writeTree(t, map[string]string{"x": "x"})}); !errors.Is(err, ErrMissingKey) {
		t.Errorf("Add with only the old targets key = %v, want ErrMissingKey", err)
	}
	nw, _ := OpenRepo(e.dir, []*PrivateKey{newTargets, e.keys.snapshot, e.keys.timestamp}, e.clock.Now)
	if _, err := nw.Add(ctx, AddOptions{Name: "world", Version: "1.0.0", Source: writeTree(t, map[string]string{"w": "w"})}); err != nil {
		t.Fatalf("Add with the new targets key: %v", err)
	}
	for name, c := range map[string]*Client{"client that saw the old keys": e.client(cdir), "new client": e.client("")} {
		for _, ref := range []string{"hello", "world"} {
			if _, err := c.Resolve(ctx, ref); err != nil {
				t.Errorf("%s: Resolve(%s) = %v", name, ref, err)
			}
		}
	}
	// A bin signed by the old targets key is refused.
	e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){e.binOfName("hello"): addTargetLike(e.target("packages/hello/1.0.0"), "packages/hello/6.6.6")},
		roleKeys: []*PrivateKey{e.keys.targets}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
	if _, err := e.client(cdir).Resolve(ctx, "hello"); !errors.Is(err, ErrSignature) {
		t.Errorf("Resolve(hello) from a bin signed by the old targets key = %v, want ErrSignature", err)
	}
}
