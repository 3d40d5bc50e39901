package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/storkpm/stork/node"
)

// TestGroupsCLI: the repository's maintainer delegates group web to a
// maintainer key; the maintainer sets web's policy (that its key cannot
// sign another group's is metadata's TestGroupKeyCannotChangeAnotherGroup);
// group show and list read it; a daemon's VMs added with --group converge
// to it, and to a change handed to the daemon with --notify; vm groups
// takes a VM out; status --json shows the convergence.
func TestGroupsCLI(t *testing.T) {
	r := newRepo(t)
	for _, v := range []string{"1.0.0", "2.0.0"} {
		stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "tool", "--version", v, sampleTree(t, 2000, 2))
	}
	maint := filepath.Join(t.TempDir(), "web.key")
	stork(t, "keys", "gen", "--out", maint)
	stork(t, "repo", "delegate", "--dir", r.dir, "--key", r.key, "--group", "web", "--publisher", maint+".pub")
	set := stork(t, "group", "set", "--dir", r.dir, "--key", maint, "--key", r.key, "web", "--add", "tool@<2", "--remove", "telnet", "--json")
	if !strings.Contains(set, `"role": "group-web"`) {
		t.Errorf("group set --json = %s, want it signed by role group-web", set)
	}
	storkFail(t, "exactly one GROUP", "group", "set", "--dir", r.dir, "--key", maint, "web", "db", "--add", "tool")
	show := stork(t, "group", "show", "--dir", r.dir, "web")
	if !strings.Contains(show, "tool@<2") || !strings.Contains(show, "telnet") {
		t.Errorf("group show web = %q, want tool@<2 required and telnet forbidden", show)
	}
	var list []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(stork(t, "group", "list", "--dir", r.dir, "--json")), &list); err != nil || len(list) != 1 || list[0].Name != "web" {
		t.Errorf("group list --json = %+v, %v, want web", list, err)
	}

	url := serve(t, r.dir)
	data, err := os.MkdirTemp("", "stork-cli-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(data)
	startDaemonProc(t, data, url, r.root, "--poll", "1h", "--no-swarm")
	root := t.TempDir()
	stork(t, "vm", "add", "--data", data, "v1", "--group", "web", "--root", root, "--mode", "link", "--unprivileged")
	waitVMHas(t, data, "v1", "tool@1.0.0")

	stork(t, "group", "set", "--dir", r.dir, "--key", maint, "--key", r.key, "web", "--add", "tool@>=2", "--notify", data)
	waitVMHas(t, data, "v1", "tool@2.0.0")
	if out := stork(t, "list", "--data", data, "--vm", "v1"); !strings.Contains(out, "2.0.0") {
		t.Errorf("list --vm v1 = %q, want tool 2.0.0", out)
	}
	var st node.Status
	if err := json.Unmarshal([]byte(stork(t, "status", "--data", data, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Converge.VMs) != 1 || !slices.Equal(st.Converge.VMs[0].Desired, []string{"tool@2.0.0"}) || st.Converge.LastConverged.IsZero() {
		t.Errorf("status converge = %+v, want v1 desiring tool@2.0.0, converged", st.Converge)
	}
	if out := stork(t, "status", "--data", data); !strings.Contains(out, "groups: 1 VMs") {
		t.Errorf("status = %q, want a groups line", out)
	}
	stork(t, "vm", "groups", "--data", data, "v1", "--remove", "web")
	waitVMHas(t, data, "v1")
}

// waitVMHas waits (bounded) until vm has exactly want (NAME@VERSION).
func waitVMHas(t *testing.T, data, vm string, want ...string) {
	t.Helper()
	c := node.NewClient(data)
	deadline := time.Now().Add(30 * time.Second)
	for {
		insts, err := c.Installs(context.Background(), vm)
		if err != nil {
			t.Fatal(err)
		}
		got := []string{}
		for _, in := range insts {
			got = append(got, in.Name+"@"+in.Version)
		}
		if slices.Equal(got, append([]string{}, want...)) {
			return
		}
		if time.Now().After(deadline) {
			st, _ := c.Status(context.Background())
			t.Fatalf("vm %s has %v after 30s, want %v; converge %+v", vm, got, want, st.Converge)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
