package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// writeList writes n one-file packages NAME-i@1.0.0 and a --from list
// naming them, and returns the list's path.
func writeList(t *testing.T, prefix string, n int) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		src := filepath.Join(dir, name)
		writeFile(t, src, []byte("package "+name+"\n"), 0o644)
		fmt.Fprintf(&b, "%s\t1.0.0\t%s\n", name, src)
	}
	list := filepath.Join(dir, "list")
	writeFile(t, list, []byte(b.String()), 0o644)
	return list
}

func listNames(t *testing.T, dir string) map[string]bool {
	t.Helper()
	var pkgs []struct{ Name, Version string }
	if err := json.Unmarshal([]byte(stork(t, "repo", "list", "--dir", dir, "--json")), &pkgs); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range pkgs {
		names[p.Name] = true
	}
	return names
}

// TestEndToEndConcurrentPublishers: two publisher processes adding batches
// to one repository at the same time take turns on the repository lock;
// no batch overwrites another's commit.
func TestEndToEndConcurrentPublishers(t *testing.T) {
	r := newRepo(t)
	const rounds, per = 4, 40
	lists := map[string][]string{}
	for _, pub := range []string{"a", "b"} {
		for i := range rounds {
			lists[pub] = append(lists[pub], writeList(t, fmt.Sprintf("%s%d", pub, i), per))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for _, pub := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, l := range lists[pub] {
				if out, errOut, err := storkRun(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--from", l); err != nil {
					errs <- fmt.Errorf("publisher %s: %v\n%s%s", pub, err, out, errOut)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	names := listNames(t, r.dir)
	missing := 0
	for pub := range lists {
		for i := range rounds {
			for j := range per {
				if !names[fmt.Sprintf("%s%d-%d", pub, i, j)] {
					missing++
				}
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d packages lost: two publishers' commits interleaved", missing, 2*rounds*per)
	}
}

// TestEndToEndBinsMigrationAndPrune: a repository made without bins is
// moved into bins by `repo bins`, a client that knew it before keeps
// working, and `repo prune` shrinks the metadata and leaves everything
// resolvable, through `repo serve`. By default the prune keeps the current
// snapshot and the two it superseded last, however recent the others.
func TestEndToEndBinsMigrationAndPrune(t *testing.T) {
	d := t.TempDir()
	dir, key := filepath.Join(d, "repo"), filepath.Join(d, "repo.key")
	stork(t, "keys", "gen", "--out", key)
	stork(t, "repo", "init", "--dir", dir, "--key", key, "--bins", "0")
	root := filepath.Join(dir, "metadata", "1.root.json")
	stork(t, "repo", "add", "--dir", dir, "--key", key, "--from", writeList(t, "early", 20))
	url := serve(t, dir)
	state := filepath.Join(t.TempDir(), "state")
	stork(t, "get", "--repo", url, "--root", root, "--state", state, "--out", filepath.Join(t.TempDir(), "o1"), "early-3")

	storkFail(t, "power of two", "repo", "bins", "--dir", dir, "--key", key, "--bins", "100")
	out := stork(t, "repo", "bins", "--dir", dir, "--key", key, "--bins", "32")
	if !strings.Contains(out, "32 bins") {
		t.Errorf("repo bins printed %q", out)
	}
	storkFail(t, "already has 32 bins", "repo", "bins", "--dir", dir, "--key", key, "--bins", "32")
	if bins, _ := filepath.Glob(filepath.Join(dir, "metadata", "1.bin-*.json")); len(bins) == 0 {
		t.Error("no bin files after repo bins")
	}
	for i := range 5 {
		src := filepath.Join(t.TempDir(), "late")
		writeFile(t, src, []byte(fmt.Sprint("late ", i)), 0o644)
		stork(t, "repo", "add", "--dir", dir, "--key", key, "--name", "late", "--version", fmt.Sprintf("1.%d.0", i), src)
	}
	if n := len(listNames(t, dir)); n != 21 {
		t.Errorf("repo list shows %d names, want 21", n)
	}
	storkFail(t, "must not be negative", "repo", "prune", "--dir", dir, "--keep-snapshots", "-1")
	for _, tc := range []struct {
		args      []string
		snapshots float64
	}{{nil, 3}, {[]string{"--keep-snapshots", "0", "--keep", "0"}, 1}} {
		before := dirSize(t, filepath.Join(dir, "metadata"))
		var res map[string]any
		if err := json.Unmarshal([]byte(stork(t, append([]string{"repo", "prune", "--dir", dir, "--json"}, tc.args...)...)), &res); err != nil {
			t.Fatal(err)
		}
		after := dirSize(t, filepath.Join(dir, "metadata"))
		if res["metadata_deleted"].(float64) == 0 || after >= before || res["snapshots_kept"] != tc.snapshots {
			t.Errorf("repo prune %v = %v; metadata %d bytes before, %d after; want %v snapshots kept", tc.args, res, before, after, tc.snapshots)
		}
	}
	for _, ref := range []string{"early-3", "early-17", "late", "late@1.2.0"} {
		stork(t, "get", "--repo", url, "--root", root, "--state", state, "--out", filepath.Join(t.TempDir(), "o"), ref)
	}
	stork(t, "get", "--repo", url, "--root", root, "--state", filepath.Join(t.TempDir(), "fresh"), "--out", filepath.Join(t.TempDir(), "o"), "late")
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}
