package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/storkpm/stork/node"
)

// TestIndexLostRefusedAndRebuilt: a VM's package is bind-mounted from the
// store; the daemon stops; the index is deleted. The daemon refuses to
// start, naming the rebuild; `stork index rebuild` recovers the package
// and the VM's install from the mount; the daemon starts, and `stork gc`
// keeps the mounted tree and its objects.
func TestIndexLostRefusedAndRebuilt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind views need root")
	}
	r := newRepo(t)
	src := sampleTree(t, 200_000, 5)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "tool", "--version", "1.0.0", src)
	url := serve(t, r.dir)
	data, err := os.MkdirTemp("", "stork-index-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(data)
	vmRoot := t.TempDir()
	view := filepath.Join(vmRoot, "tool")
	defer unix.Unmount(view, unix.MNT_DETACH)

	d := startDaemonProc(t, data, url, r.root, "--no-swarm")
	stork(t, "vm", "add", "--data", data, "guest", "--allow", "*", "--root", vmRoot, "--mode", "bind")
	guest := node.NewSocketClient(node.VMSocketPath(data, "guest"))
	if _, err := guest.VMInstall(context.Background(), "tool", nil); err != nil {
		t.Fatal(err)
	}
	compareStoreView(t, src, view)
	d.stop(t)

	if err := os.RemoveAll(filepath.Join(data, "store", "index")); err != nil {
		t.Fatal(err)
	}
	// A daemon that starts anyway runs until the timeout kills it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, storkBin, append([]string{"daemon", "--data", data, "--repo", url, "--no-swarm"}, loopback...)...)
	cmd.Stderr = &stderr
	err = cmd.Run()
	if errOut := stderr.String(); err == nil || !strings.Contains(errOut, "stork index rebuild --data "+data) {
		t.Fatalf("daemon with its index deleted: %v, stderr %q; want a refusal naming `stork index rebuild --data %s`", err, errOut, data)
	}
	compareStoreView(t, src, view)

	out := stork(t, "index", "rebuild", "--data", data)
	if !strings.Contains(out, "package tool@1.0.0 ") || !strings.Contains(out, "install guest tool@1.0.0 at "+view+" (bind)") {
		t.Errorf("index rebuild printed:\n%s\nwant tool@1.0.0 and guest's install at %s", out, view)
	}

	d = startDaemonProc(t, data, url, r.root, "--no-swarm")
	gc := stork(t, "gc", "--data", data)
	compareStoreView(t, src, view)
	if list := stork(t, "list", "--data", data, "--vm", "guest"); !strings.Contains(list, view) {
		t.Errorf("list --vm guest after the rebuild = %q, want the install at %s (gc said %s)", list, view, gc)
	}
	st, err := node.NewClient(data).Status(context.Background())
	if err != nil || len(st.Packages) != 1 || st.Packages[0].State != "complete" {
		t.Fatalf("status after the rebuild = %+v, %v, want tool complete", st, err)
	}
	d.stop(t)
	stork(t, "verify", "--data", data)
}
