package main

import (
	"os"
	"path/filepath"
	"testing"
)

// Rotating keys: the timestamp and snapshot move to a new key, then root
// itself; clients that trusted root v1 follow each rotation, new clients
// start from 1.root.json, and the old key can no longer re-sign.
func TestRepoRotate(t *testing.T) {
	r := newRepo(t)
	src := sampleTree(t, 3000, 2)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", "1.0.0", src)
	url := serve(t, r.dir)
	state := filepath.Join(t.TempDir(), "state")
	get := func(state string) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "out")
		stork(t, "get", "--repo", url, "--root", r.root, "--state", state, "--out", out, "p")
		compareTrees(t, src, out)
	}
	get(state)

	online := filepath.Join(t.TempDir(), "online.key")
	stork(t, "keys", "gen", "--out", online)
	stork(t, "repo", "rotate", "--dir", r.dir, "--key", r.key, "--key", online,
		"--role", "timestamp="+online+".pub", "--role", "snapshot="+online+".pub")
	if _, err := os.Stat(filepath.Join(r.dir, "metadata", "2.root.json")); err != nil {
		t.Fatalf("rotate wrote no root version 2: %v", err)
	}
	storkFail(t, "timestamp", "repo", "refresh", "--dir", r.dir, "--key", r.key)
	stork(t, "repo", "refresh", "--dir", r.dir, "--key", online)
	get(state)                                    // follows root v2
	get(filepath.Join(t.TempDir(), "new-client")) // from 1.root.json

	root2 := filepath.Join(t.TempDir(), "root2.key")
	stork(t, "keys", "gen", "--out", root2)
	stork(t, "repo", "rotate", "--dir", r.dir, "--key", r.key, "--key", root2, "--key", online, "--role", "root="+root2+".pub")
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--key", online, "--name", "q", "--version", "1.0.0", src)
	get(state)
	storkFail(t, "root", "repo", "rotate", "--dir", r.dir, "--key", r.key, "--key", online, "--role", "timestamp="+r.key+".pub")
}
