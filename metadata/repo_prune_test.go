package metadata

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
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

// TestPruneKeepsWhatTheWindowNeeds: three adds three hours apart, then a
// prune keeping one hour. The snapshots current within the hour and what
// they name stay; older snapshots, role versions only they named, an
// unpublished manifest and its chunk go. A client that refreshed within
// the window updates without noticing; one that refreshed before it finds
// its bin version gone and refreshes again by itself.
func TestPruneKeepsWhatTheWindowNeeds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := binnedEnv(t, 16)
	e.add("a", "1.0.0", "a")
	e.add("x", "1.0.0", "x")
	e.add("x", "1.5.0", "x15") // x's bin version 1 is now named by old snapshots only
	oldClient := filepath.Join(t.TempDir(), "old")
	if err := e.client(oldClient).Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(3 * time.Hour)
	e.add("a", "1.1.0", "a2")
	e.add("b", "1.0.0", "b")
	recent := filepath.Join(t.TempDir(), "recent")
	if err := e.client(recent).Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	recentSnap := e.state().snapshot.Signed.Version
	e.clock.Add(3 * time.Hour)
	e.add("c", "1.0.0", "c")
	e.add("x", "2.0.0", "x2")
	st := e.state()
	cur := st.snapshot.Signed.Version
	binA := e.binOfName("a")
	binX := e.binOfName("x")
	oldBinX := fmt.Sprintf("%s/%d.%s.json", MetadataDir, 1, binX)
	orphanManifest, orphanChunk := e.orphan("never published")
	if !exists(t, e.path(oldBinX)) || !exists(t, orphanManifest) || !exists(t, orphanChunk) {
		t.Fatal("setup: files missing before prune")
	}

	r, err := OpenRepo(e.dir, nil, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	dry, err := r.Prune(ctx, PruneOptions{Keep: time.Hour, DryRun: true})
	if err != nil || dry.Metadata == 0 || !exists(t, e.path(oldBinX)) {
		t.Fatalf("Prune(dry run) = %+v, %v; want deletions counted, none done", dry, err)
	}
	res, err := r.Prune(ctx, PruneOptions{Keep: time.Hour})
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if *res != *dry {
		t.Errorf("Prune = %+v, dry run said %+v", res, dry)
	}
	// Kept: every root, the current snapshot and the one it replaced 0s
	// ago (signed 3h after its own predecessor, which went), what they name.
	for v := int64(1); v < cur; v++ {
		p := fmt.Sprintf("%s/%d.snapshot.json", MetadataDir, v)
		if want := v >= recentSnap; exists(t, e.path(p)) != want {
			t.Errorf("%s kept = %v, want %v", p, !want, want)
		}
	}
	if !exists(t, e.path(MetadataDir, "1.root.json")) || !exists(t, e.path(MetadataDir, "timestamp.json")) {
		t.Error("root or timestamp pruned")
	}
	recentBinA := fmt.Sprintf("%s/%d.%s.json", MetadataDir, st.snapshot.Signed.Meta[binA+".json"].Version, binA)
	if !exists(t, e.path(recentBinA)) {
		t.Errorf("%s (named by the current snapshot) pruned", recentBinA)
	}
	if exists(t, e.path(oldBinX)) {
		t.Errorf("%s (named only by snapshots replaced 3h ago) kept", oldBinX)
	}
	if exists(t, orphanManifest) || exists(t, orphanChunk) {
		t.Errorf("unpublished manifest or its chunk kept")
	}
	if res.Manifests != 1 || res.Chunks != 1 {
		t.Errorf("Prune = %+v, want 1 manifest and 1 chunk deleted", res)
	}
	for _, pi := range mustPackages(t, e.repo) {
		if !exists(t, e.path(ManifestsDir, pi.ManifestCID.String())) {
			t.Errorf("manifest of %s@%s pruned", pi.Name, pi.Version)
		}
	}

	for name, dir := range map[string]string{"refreshed within the window": recent, "refreshed before the window": oldClient, "new": ""} {
		c := e.client(dir)
		for ref, want := range map[string]string{"x": "2.0.0", "a": "1.1.0", "c": "1.0.0"} {
			if r, err := c.Resolve(ctx, ref); err != nil || r.Version != want {
				t.Errorf("client %s: Resolve(%s) = %+v, %v, want %s", name, ref, r, err, want)
			}
		}
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
