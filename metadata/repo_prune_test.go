package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

func exists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Stat(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// orphan imports a tree into the repository's chunks and writes its
// manifest without publishing it (as an add that failed at commit does),
// and returns the manifest path and the path of a chunk only it uses.
func (e *testEnv) orphan(body string) (string, string) {
	e.t.Helper()
	res, mb, err := e.repo.importPackage(context.Background(), AddOptions{Source: writeTree(e.t, map[string]string{"orphan": body})})
	if err != nil {
		e.t.Fatal(err)
	}
	mp := e.path(ManifestsDir, res.ManifestCID.String())
	if err := os.WriteFile(mp, mb, 0o644); err != nil {
		e.t.Fatal(err)
	}
	m, err := DecodeManifest(mb, Limits{})
	if err != nil {
		e.t.Fatal(err)
	}
	return mp, e.path(ChunksDir, m.ChunkRefs()[0].CID.String())
}

// snapshotNames returns, per snapshot version on disk, the role files
// (N.role.json) it names.
func (e *testEnv) snapshotNames() map[int64][]string {
	e.t.Helper()
	out := map[int64][]string{}
	files, _, err := listRoleFiles(e.path(MetadataDir))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range files {
		if f.role != tufmeta.SNAPSHOT {
			continue
		}
		s, err := loadRole[tufmeta.SnapshotType](e.path(MetadataDir, f.name))
		if err != nil {
			e.t.Fatal(err)
		}
		for name, mf := range s.Signed.Meta {
			out[f.version] = append(out[f.version], fmt.Sprintf("%d.%s", mf.Version, name))
		}
	}
	return out
}

// interrupted writes a version of role one past the current one, naming
// an extra target whose manifest is manifestCID, and no snapshot naming
// it: what a commit interrupted after writing its roles leaves.
func (e *testEnv) interrupted(role, manifestCID string) string {
	e.t.Helper()
	m, err := cloneMeta(e.state().targets[role])
	if err != nil {
		e.t.Fatal(err)
	}
	m.Signed.Version++
	custom := json.RawMessage(fmt.Sprintf(`{"manifest":%q,"size":1}`, manifestCID))
	m.Signed.Targets[TargetPrefix+"orphan/1.0.0"] = &tufmeta.TargetFiles{Length: 1, Hashes: targetHashes([]byte("x")), Path: TargetPrefix + "orphan/1.0.0", Custom: &custom}
	b, err := m.ToBytes(false)
	if err != nil {
		e.t.Fatal(err)
	}
	name := fmt.Sprintf("%d.%s.json", m.Signed.Version, role)
	e.write(MetadataDir+"/"+name, b)
	return name
}

// TestPruneKeepsSnapshotGenerations: the current snapshot and the two it
// superseded last stay with every role version they name, however old;
// older snapshots and role versions only they name go, however recent.
// Root versions and timestamp.json stay; an unpublished manifest, its
// chunk and the role version an interrupted commit left go at once. An
// up-to-date client, one that refreshed an hour ago, one from before the
// kept snapshots and a new one all update.
func TestPruneKeepsSnapshotGenerations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := binnedEnv(t, 16)
	e.add("a", "1.0.0", "a")
	e.add("x", "1.0.0", "x")
	e.add("x", "1.5.0", "x15")
	before := filepath.Join(t.TempDir(), "before")
	if err := e.client(before).Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	e.add("a", "1.1.0", "a2")
	e.add("b", "1.0.0", "b")
	hourAgo := filepath.Join(t.TempDir(), "hour-ago")
	if err := e.client(hourAgo).Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Hour)
	e.add("c", "1.0.0", "c")
	e.clock.Add(3 * time.Hour) // the kept snapshots are hours old
	e.add("x", "2.0.0", "x2")
	upToDate := filepath.Join(t.TempDir(), "up-to-date")
	if err := e.client(upToDate).Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	cur := e.state().snapshot.Signed.Version
	names := e.snapshotNames()
	binX := e.binOfName("x")
	orphanManifest, orphanChunk := e.orphan("never published")
	torn := e.interrupted(binX, filepath.Base(orphanManifest))
	var kept, gone []string // role files named by kept snapshots, by older ones only
	keptSet := map[string]bool{}
	for v := cur - 2; v <= cur; v++ {
		for _, n := range names[v] {
			keptSet[n] = true
		}
	}
	for v, ns := range names {
		for _, n := range ns {
			if keptSet[n] {
				kept = append(kept, n)
			} else if v < cur-2 {
				gone = append(gone, n)
			}
		}
	}
	if len(gone) == 0 {
		t.Fatal("setup: no role version named by old snapshots only")
	}

	r, err := OpenRepo(e.dir, nil, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	opts := PruneOptions{KeepSnapshots: 2, Keep: time.Hour}
	dry, err := r.Prune(ctx, PruneOptions{KeepSnapshots: 2, Keep: time.Hour, DryRun: true})
	if err != nil || dry.Metadata == 0 || !exists(t, e.path(MetadataDir, gone[0])) {
		t.Fatalf("Prune(dry run) = %+v, %v; want deletions counted, none done", dry, err)
	}
	res, err := r.Prune(ctx, opts)
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if *res != *dry {
		t.Errorf("Prune = %+v, dry run said %+v", res, dry)
	}
	if res.Snapshots != 3 {
		t.Errorf("Prune kept %d snapshots, want 3", res.Snapshots)
	}
	for v := int64(1); v <= cur+1; v++ {
		p := e.path(MetadataDir, fmt.Sprintf("%d.snapshot.json", v))
		if want := v >= cur-2 && v <= cur; exists(t, p) != want {
			t.Errorf("%d.snapshot.json kept = %v, want %v", v, !want, want)
		}
	}
	for _, n := range kept {
		if !exists(t, e.path(MetadataDir, n)) {
			t.Errorf("%s (named by a kept snapshot) pruned", n)
		}
	}
	for _, n := range gone {
		if exists(t, e.path(MetadataDir, n)) {
			t.Errorf("%s (named by older snapshots only) kept", n)
		}
	}
	for _, f := range []string{"1.root.json", "root.json", "timestamp.json"} {
		if !exists(t, e.path(MetadataDir, f)) {
			t.Errorf("%s pruned", f)
		}
	}
	if exists(t, orphanManifest) || exists(t, orphanChunk) || exists(t, e.path(MetadataDir, torn)) {
		t.Errorf("unpublished manifest, its chunk or the interrupted commit's %s kept", torn)
	}
	if res.Manifests != 1 || res.Chunks != 1 || res.Retired != 0 || res.InWindow != 0 {
		t.Errorf("Prune = %+v, want 1 manifest and 1 chunk deleted, none retired", res)
	}
	if exists(t, e.path(retiredFile)) {
		t.Errorf("%s written with nothing retired", retiredFile)
	}
	for _, pi := range mustPackages(t, e.repo) {
		if !exists(t, e.path(ManifestsDir, pi.ManifestCID.String())) {
			t.Errorf("manifest of %s@%s pruned", pi.Name, pi.Version)
		}
	}

	clients := map[string]string{"up to date": upToDate, "refreshed an hour before the last add": hourAgo, "refreshed before the kept snapshots": before, "new": ""}
	for name, dir := range clients {
		c := e.client(dir)
		for ref, want := range map[string]string{"x": "2.0.0", "a": "1.1.0", "c": "1.0.0"} {
			if v, err := resolveVersion(ctx, c, ref); err != nil || v != want {
				t.Errorf("client %s: Resolve(%s) = %s, %v, want %s", name, ref, v, err, want)
			}
		}
	}

	// KeepSnapshots 0 keeps the current snapshot only.
	if res, err := r.Prune(ctx, PruneOptions{}); err != nil || res.Snapshots != 1 || exists(t, e.path(MetadataDir, fmt.Sprintf("%d.snapshot.json", cur-1))) {
		t.Errorf("Prune(KeepSnapshots 0) = %+v, %v; want the current snapshot only", res, err)
	}
}

// remove publishes a new version of the role signing name@version
// without that target, through the repository's own commit.
func (e *testEnv) remove(name, version string) {
	e.t.Helper()
	role := e.binOfName(name)
	r := e.repo
	unlock, err := r.begin(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	defer unlock()
	m, err := r.roleForUpdate(role)
	if err != nil {
		e.t.Fatal(err)
	}
	p := TargetPrefix + name + "/" + version
	if _, ok := m.Signed.Targets[p]; !ok {
		e.t.Fatalf("remove: %s not in %s", p, role)
	}
	delete(m.Signed.Targets, p)
	if err := r.commit(commitSpec{roles: map[string]*tufmeta.Metadata[tufmeta.TargetsType]{role: m}}); err != nil {
		e.t.Fatal(err)
	}
}

// content returns the manifest path of a published add and the paths of
// the chunks its manifest names.
func (e *testEnv) content(res *AddResult) (string, []string) {
	e.t.Helper()
	mp := e.path(ManifestsDir, res.ManifestCID.String())
	m, err := DecodeManifest(e.read(ManifestsDir+"/"+res.ManifestCID.String()), Limits{})
	if err != nil {
		e.t.Fatal(err)
	}
	var chunks []string
	for _, ref := range m.ChunkRefs() {
		chunks = append(chunks, e.path(ChunksDir, ref.CID.String()))
	}
	return mp, chunks
}

// journal returns the retired-content journal's entries.
func (e *testEnv) journal() map[string]time.Time {
	e.t.Helper()
	j, _, err := loadRetired(e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	return j.Manifests
}

// TestPruneContentWindow: content stays for Keep after the prune that
// deleted the last metadata naming it, though that metadata is gone,
// then goes; a chunk another package uses stays.
func TestPruneContentWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := binnedEnv(t, 16)
	t0 := e.clock.Now()
	e.add("live", "1.0.0", "shared")
	q := e.add("q", "1.0.0", "only q")
	rr := e.add("r", "1.0.0", "shared") // bin/r has the same chunk as bin/live
	qManifest, qChunks := e.content(q)
	rManifest, rChunks := e.content(rr)
	filler := 0
	publishMore := func() { // three publishes: the snapshots naming what went are no longer kept
		for range 3 {
			filler++
			e.add(fmt.Sprintf("filler%d", filler), "1.0.0", fmt.Sprint("filler ", filler))
		}
	}
	prune := func(step string) *PruneResult {
		t.Helper()
		res, err := e.state().Prune(ctx, PruneOptions{KeepSnapshots: 2, Keep: time.Hour})
		if err != nil {
			t.Fatalf("%s: Prune: %v", step, err)
		}
		return res
	}
	present := func(step, what string, want bool, paths ...string) {
		t.Helper()
		for _, p := range paths {
			if got := exists(t, p); got != want {
				t.Errorf("%s: %s %s present = %v, want %v", step, what, filepath.Base(p), got, want)
			}
		}
	}
	qBin := fmt.Sprintf("%d.%s.json", e.state().snapshot.Signed.Meta[e.binOfName("q")+".json"].Version, e.binOfName("q"))

	e.remove("q", "1.0.0")
	publishMore()
	res := prune("t0")
	if exists(t, e.path(MetadataDir, qBin)) {
		t.Errorf("t0: %s (the last metadata naming q) kept", qBin)
	}
	present("t0", "q's content (retired now)", true, append(qChunks, qManifest)...)
	if res.Retired != 1 || res.InWindow != 1 || !e.journal()[q.ManifestCID.String()].Equal(t0) {
		t.Errorf("t0: Prune = %+v, journal %v; want q retired at %s", res, e.journal(), t0)
	}

	e.clock.Add(30 * time.Minute)
	prune("t0+30m")
	present("t0+30m", "q's content (retired 30m ago)", true, append(qChunks, qManifest)...)

	e.clock.Add(90 * time.Minute)
	e.remove("r", "1.0.0")
	publishMore()
	res = prune("t0+2h")
	present("t0+2h", "q's content (retired 2h ago)", false, append(qChunks, qManifest)...)
	present("t0+2h", "r's content (retired now)", true, append(rChunks, rManifest)...)
	if j := e.journal(); res.Retired != 1 || res.InWindow != 1 || len(j) != 1 || !j[rr.ManifestCID.String()].Equal(t0.Add(2*time.Hour)) {
		t.Errorf("t0+2h: Prune = %+v, journal %v; want r alone retired at t0+2h", res, j)
	}

	e.clock.Add(30 * time.Minute)
	prune("t0+2h30m")
	present("t0+2h30m", "r's content (retired 30m ago)", true, append(rChunks, rManifest)...)

	e.clock.Add(31 * time.Minute)
	res = prune("t0+3h01m")
	present("t0+3h01m", "r's manifest (retired 61m ago)", false, rManifest)
	for _, c := range rChunks {
		shared := slices.ContainsFunc(mustPackages(t, e.repo), func(pi PackageInfo) bool {
			_, lc := e.content(&AddResult{ManifestCID: pi.ManifestCID})
			return slices.Contains(lc, c)
		})
		present("t0+3h01m", fmt.Sprintf("r's chunk (used by a live package: %v)", shared), shared, c)
	}
	if len(e.journal()) != 0 || res.InWindow != 0 {
		t.Errorf("t0+3h01m: Prune = %+v, journal %v; want it empty", res, e.journal())
	}
	if live := e.add("live", "1.0.0", "shared"); !live.Unchanged {
		t.Errorf("live@1.0.0 changed")
	}
}

// TestPruneJournalForgetsContentNamedAgain: a retired manifest published
// again leaves the journal and stays as long as it is named; retired
// again, its window starts again.
func TestPruneJournalForgetsContentNamedAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := binnedEnv(t, 16)
	q := e.add("q", "1.0.0", "q")
	qManifest, _ := e.content(q)
	fill := 0
	cycle := func() {
		for range 3 {
			fill++
			e.add(fmt.Sprintf("f%d", fill), "1.0.0", fmt.Sprint(fill))
		}
		if _, err := e.state().Prune(ctx, PruneOptions{KeepSnapshots: 2, Keep: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	e.remove("q", "1.0.0")
	cycle()
	if _, ok := e.journal()[q.ManifestCID.String()]; !ok {
		t.Fatalf("journal %v lacks q after its removal", e.journal())
	}
	if again := e.add("q", "1.0.0", "q"); again.ManifestCID != q.ManifestCID {
		t.Fatalf("republished q has manifest %s, want %s", again.ManifestCID, q.ManifestCID)
	}
	cycle()
	if _, ok := e.journal()[q.ManifestCID.String()]; ok {
		t.Errorf("journal %v keeps q, named again", e.journal())
	}
	e.clock.Add(2 * time.Hour)
	cycle()
	if !exists(t, qManifest) {
		t.Error("q's manifest, named again, pruned")
	}
	e.remove("q", "1.0.0")
	cycle()
	if got := e.journal()[q.ManifestCID.String()]; !got.Equal(e.clock.Now()) {
		t.Errorf("journal time of q retired again = %v, want %v", got, e.clock.Now())
	}
	e.clock.Add(59 * time.Minute)
	cycle()
	if !exists(t, qManifest) {
		t.Error("q's manifest pruned 59m after it was retired again")
	}
}

// TestPruneJournalStops: a journal that does not decode, or a manifest it
// keeps that is corrupt, stops the prune before it deletes anything; a
// dry run writes no journal; a torn journal write goes.
func TestPruneJournalStops(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := binnedEnv(t, 16)
	q := e.add("q", "1.0.0", "q")
	e.remove("q", "1.0.0")
	for i := range 3 {
		e.add(fmt.Sprintf("f%d", i), "1.0.0", fmt.Sprint(i))
	}
	orphanManifest, _ := e.orphan("orphan")
	opts := PruneOptions{KeepSnapshots: 2, Keep: time.Hour}
	if res, err := e.state().Prune(ctx, PruneOptions{KeepSnapshots: 2, Keep: time.Hour, DryRun: true}); err != nil || res.Retired != 1 || exists(t, e.path(retiredFile)) {
		t.Fatalf("Prune(dry run) = %+v, %v; want q retired, no journal written", res, err)
	}
	e.write(retiredFile, []byte(`{"stork_retired":1,"manifests":{}} `))
	if _, err := e.state().Prune(ctx, opts); !errors.Is(err, ErrMalformed) || !exists(t, orphanManifest) {
		t.Fatalf("Prune with a malformed journal = %v, orphan kept %v; want ErrMalformed, nothing deleted", err, exists(t, orphanManifest))
	}
	if err := os.Remove(e.path(retiredFile)); err != nil {
		t.Fatal(err)
	}
	torn := e.path(".tmp-" + retiredFile + "-1")
	e.write(filepath.Base(torn), []byte("{"))
	if res, err := e.state().Prune(ctx, opts); err != nil || exists(t, torn) || res.Temporary != 1 {
		t.Fatalf("Prune = %+v, %v; want the torn journal write deleted", res, err)
	}
	e.write(ManifestsDir+"/"+q.ManifestCID.String(), []byte("{}"))
	orphanManifest, _ = e.orphan("orphan 2")
	if _, err := e.state().Prune(ctx, opts); !errors.Is(err, ErrMalformed) || !exists(t, orphanManifest) {
		t.Fatalf("Prune with a corrupt retired manifest = %v; want ErrMalformed, nothing deleted", err)
	}
}

func mustPackages(t *testing.T, r *Repo) []PackageInfo {
	t.Helper()
	pkgs, err := r.Packages()
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// TestClientRetriesPrunedBin: a client holding a snapshot whose bin
// version was pruned (after a newer snapshot) refreshes and loads the
// current bin instead of failing.
func TestClientRetriesPrunedBin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := binnedEnv(t, 16)
	e.add("x", "1.0.0", "x")
	e.add("y", "1.0.0", "y")
	cf := &countingFetcher{f: DirFetcher{Dir: e.dir}}
	c := e.clientWith("", cf)
	if _, err := c.Resolve(ctx, "y"); err != nil { // holds the snapshot; x's bin not loaded yet
		t.Fatal(err)
	}
	e.add("x", "2.0.0", "x2")
	if _, err := e.state().Prune(ctx, PruneOptions{Keep: 0}); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Resolve(ctx, "x"); err != nil || r.Version != "2.0.0" {
		t.Errorf("Resolve(x) after its bin version was pruned = %+v, %v, want 2.0.0 after a refresh", r, err)
	}
	if r, err := c.Resolve(ctx, "y"); err != nil || r.Version != "1.0.0" {
		t.Errorf("Resolve(y) = %+v, %v", r, err)
	}
}

// hookFetcher runs hook once, after the first fetch of timestamp.json
// (whose old bytes it still returns): the repository changes while a
// client's update is in flight.
type hookFetcher struct {
	f    Fetcher
	hook func()
	once sync.Once
}

func (h *hookFetcher) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	b, err := h.f.Fetch(ctx, p, maxLen)
	if p == MetadataDir+"/timestamp.json" {
		h.once.Do(h.hook)
	}
	return b, err
}

// TestPruneClientsInFlight: with the default count, a client that holds a
// snapshot superseded twice, or is between reading the timestamp and the
// snapshot while two publishes and a prune land, goes on without noticing.
// Superseded three times, its lazily loaded bin is gone and it refreshes
// and retries by itself; a refresh whose snapshot went fails, and the
// next one succeeds.
func TestPruneClientsInFlight(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := binnedEnv(t, 16)
	x := "x"
	y := "y"
	for i := 0; e.binOfName(x) == e.binOfName(y); i++ {
		y = fmt.Sprintf("y%d", i)
	}
	e.add(x, "1.0.0", "x")
	e.add(y, "1.0.0", "y")
	fill := 0
	publish := func(n int) {
		for range n {
			fill++
			e.add(fmt.Sprintf("f%d", fill), "1.0.0", fmt.Sprint(fill))
		}
	}
	prune := func() {
		if _, err := e.state().Prune(ctx, PruneOptions{KeepSnapshots: DefaultPruneKeepSnapshots, Keep: DefaultPruneKeep}); err != nil {
			t.Fatal(err)
		}
	}
	twice := &countingFetcher{f: DirFetcher{Dir: e.dir}}
	thrice := &countingFetcher{f: DirFetcher{Dir: e.dir}}
	cTwice, cThrice := e.clientWith("", twice), e.clientWith("", thrice)
	for _, c := range []*Client{cTwice, cThrice} {
		if _, err := c.Resolve(ctx, y); err != nil { // holds the snapshot; x's bin not loaded
			t.Fatal(err)
		}
	}
	twice.take()
	thrice.take()
	e.add(x, "2.0.0", "x2")
	publish(1)
	prune()
	if v, err := resolveVersion(ctx, cTwice, x); err != nil || v != "1.0.0" {
		t.Errorf("Resolve(x) from a snapshot superseded twice = %s, %v; want 1.0.0 from the snapshot it holds", v, err)
	}
	if paths, _ := twice.take(); slices.Contains(paths, MetadataDir+"/timestamp.json") {
		t.Errorf("client whose snapshot was superseded twice refreshed: %v", paths)
	}
	publish(1)
	prune()
	if v, err := resolveVersion(ctx, cThrice, x); err != nil || v != "2.0.0" {
		t.Errorf("Resolve(x) from a snapshot superseded thrice = %s, %v; want 2.0.0 after a refresh", v, err)
	}
	if paths, _ := thrice.take(); !slices.Contains(paths, MetadataDir+"/timestamp.json") {
		t.Errorf("client whose bin version was pruned did not refresh: %v", paths)
	}

	for _, tc := range []struct {
		publishes int
		wantErr   error
	}{{2, nil}, {3, ErrNotFound}} {
		c := e.clientWith("", &hookFetcher{f: DirFetcher{Dir: e.dir}, hook: func() { publish(tc.publishes); prune() }})
		if err := c.Refresh(ctx); !errors.Is(err, tc.wantErr) {
			t.Errorf("Refresh while %d publishes and a prune land = %v, want %v", tc.publishes, err, tc.wantErr)
		}
		if v, err := resolveVersion(ctx, c, x); err != nil || v != "2.0.0" {
			t.Errorf("after an update in flight across %d publishes: Resolve(x) = %s, %v, want 2.0.0", tc.publishes, v, err)
		}
	}
}

// resolveVersion returns the version c resolves ref to.
func resolveVersion(ctx context.Context, c *Client, ref string) (string, error) {
	r, err := c.Resolve(ctx, ref)
	if err != nil {
		return "", err
	}
	return r.Version, nil
}
