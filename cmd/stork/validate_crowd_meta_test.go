package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/storkpm/stork/simulations"
)

// probeBytes: the body of the origin's answer to a host's probe for a
// newer root (N.root.json, absent): net/http's NotFound, "404 page not
// found\n".
const probeBytes = 19

// repoMetadata is the simulator's metadata section for hosts fetching
// pkgs (package names) from the repository published in dir, from its
// files on disk as a daemon's refresh fetches them: per host, the root
// probe's 404 body; as files, the timestamp (metadata/timestamp.json:
// with cooperative fetching a host takes it from a member and the
// origin confirms it with a 304, no body), the files that never change
// (metadata.CooperativePath), the newest version of every other role
// (snapshot, targets, the bins role), of the hash bins (bin-*) those
// that list a package of pkgs, or every bin with everyBin, and those
// packages' manifests (manifests/CID).
// everyBin: daemons with pull-through, whose member answering a chunk's
// pull-through request first checks that its package is published by
// listing every package (node pullManifests.lookup,
// metadata.Client.Packages: every bin the snapshot names). A manifest's
// pull is not checked so (node sourcesFetcher.forPeer).
func repoMetadata(t *testing.T, dir string, pkgs []string, everyBin bool) simulations.Metadata {
	t.Helper()
	md := filepath.Join(dir, "metadata")
	ents, err := os.ReadDir(md)
	if err != nil {
		t.Fatal(err)
	}
	newest := map[string]int{} // role: its newest version
	for _, e := range ents {
		vs, rest, ok := strings.Cut(e.Name(), ".")
		role, json := strings.CutSuffix(rest, ".json")
		v, err := strconv.Atoi(vs)
		if !ok || !json || err != nil || role == "root" {
			continue // timestamp.json, root.json, roots
		}
		newest[role] = max(newest[role], v)
	}
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	m := simulations.Metadata{PerHost: probeBytes, Files: simulations.Size(size(filepath.Join(md, "timestamp.json")))}
	for role, v := range newest {
		p := filepath.Join(md, strconv.Itoa(v)+"."+role+".json")
		manifests := roleManifests(t, p, pkgs)
		if strings.HasPrefix(role, "bin-") && len(manifests) == 0 && !everyBin {
			continue // a hash bin no package of pkgs is in: not fetched
		}
		m.Files += simulations.Size(size(p))
		for _, c := range manifests {
			m.Files += simulations.Size(size(filepath.Join(dir, "manifests", c)))
		}
	}
	return m
}

// roleManifests returns the manifests (CIDs) of the targets of the role
// file at p (packages/NAME/VERSION) whose NAME is in pkgs.
func roleManifests(t *testing.T, p string, pkgs []string) []string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var role struct {
		Signed struct {
			Targets map[string]struct {
				Custom struct {
					Manifest string `json:"manifest"`
				} `json:"custom"`
			} `json:"targets"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &role); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	var out []string
	for path, tg := range role.Signed.Targets {
		parts := strings.Split(path, "/")
		if len(parts) == 3 && parts[0] == "packages" && slices.Contains(pkgs, parts[1]) && tg.Custom.Manifest != "" {
			out = append(out, tg.Custom.Manifest)
		}
	}
	return out
}

// TestRepoMetadata: a repository of two packages (the snapshot has
// versions) gives, for one package, the probe per host, and the
// timestamp, the newest snapshot, targets, bins role, the package's bin
// and its manifest as files; not the other package's bin (but with
// everyBin) or manifest, nor older snapshots or the roots.
func TestRepoMetadata(t *testing.T) {
	r := newRepo(t)
	src := t.TempDir()
	for _, name := range []string{"blob", "other"} {
		p := filepath.Join(src, name+".bin")
		writeFile(t, p, randomBytes(t, 3<<20), 0o644)
		stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", name, "--version", "1.0.0", "--chunk-size", "1M", p)
	}
	md := filepath.Join(r.dir, "metadata")
	size := func(rel string) simulations.Size {
		fi, err := os.Stat(filepath.Join(r.dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		return simulations.Size(fi.Size())
	}
	var bin, manifest string
	newest := map[string]int{}
	ents, _ := os.ReadDir(md)
	for _, e := range ents {
		vs, rest, _ := strings.Cut(e.Name(), ".")
		role := strings.TrimSuffix(rest, ".json")
		if v, err := strconv.Atoi(vs); err == nil && role != "root" {
			newest[role] = max(newest[role], v)
		}
		if ms := roleManifests(t, filepath.Join(md, e.Name()), []string{"blob"}); len(ms) == 1 {
			bin, manifest = e.Name(), ms[0]
		}
	}
	if bin == "" || len(newest) < 5 {
		t.Fatalf("the repository's roles %v: want snapshot, targets, bins and two bins, one listing blob", newest)
	}
	want := simulations.Metadata{PerHost: probeBytes,
		Files: size("metadata/timestamp.json") + size("metadata/"+bin) + size("manifests/"+manifest)}
	for _, role := range []string{"snapshot", "targets", "bins"} {
		want.Files += size("metadata/" + strconv.Itoa(newest[role]) + "." + role + ".json")
	}
	if got := repoMetadata(t, r.dir, []string{"blob"}, false); got != want {
		t.Errorf("repoMetadata = %+v, want %+v", got, want)
	}
	for role, v := range newest {
		if p := strconv.Itoa(v) + "." + role + ".json"; strings.HasPrefix(role, "bin-") && p != bin {
			want.Files += size("metadata/" + p)
		}
	}
	if got := repoMetadata(t, r.dir, []string{"blob"}, true); got != want {
		t.Errorf("every bin: repoMetadata = %+v, want %+v", got, want)
	}
}
