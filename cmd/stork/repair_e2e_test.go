package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storkpm/stork/node"
)

// TestVerifyRepairCLI: with the daemon stopped, a file of the store is
// changed; `stork verify` names it, `stork verify --repair` quarantines it
// and says the daemon will fetch its package again, which the next daemon
// does (status --json reports it); then the store verifies.
func TestVerifyRepairCLI(t *testing.T) {
	r := newRepo(t)
	src := sampleTree(t, 300_000, 3)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "tool", "--version", "1.0.0", src)
	url := serve(t, r.dir)
	data, err := os.MkdirTemp("", "stork-repair-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(data)
	d := startDaemonProc(t, data, url, r.root, "--no-swarm", "--scrub-rate", "0")
	stork(t, "fetch", "--data", data, "tool")
	st, err := node.NewClient(data).Status(context.Background())
	if err != nil || len(st.Packages) != 1 {
		t.Fatalf("status = %+v, %v", st, err)
	}
	d.stop(t)
	tree := filepath.Join(data, "store", "trees", st.Packages[0].ManifestCID)
	victim := filepath.Join(tree, "bin", "tool")
	if err := os.Chmod(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(victim, []byte("#!/bin/sh\necho pwned\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(victim, 0o555)

	if _, errOut, err := storkRun(t, "verify", "--data", data); err == nil || !strings.Contains(errOut, "object corrupt") || !strings.Contains(errOut, "verify --repair") {
		t.Errorf("verify of a changed store: %v, stderr %q; want the problem and the --repair hint", err, errOut)
	}
	out := stork(t, "verify", "--data", data, "--repair")
	if !strings.Contains(out, "1 packages will be fetched again when the daemon starts: tool@1.0.0") {
		t.Errorf("verify --repair printed %q", out)
	}
	d = startDaemonProc(t, data, url, r.root, "--no-swarm", "--scrub-rate", "0")
	deadline := time.Now().Add(20 * time.Second)
	for {
		status := stork(t, "status", "--data", data, "--json")
		if strings.Contains(status, `"repairing": []`) && strings.Contains(status, `"state": "complete"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not repair the package within 20s:\n%s", status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	compareStoreView(t, src, tree)
	d.stop(t)
	stork(t, "verify", "--data", data)
}
