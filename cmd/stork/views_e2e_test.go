package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/storkpm/stork/share"
)

// snapshotDir records every entry below dir with its mode and times.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = info.Mode().String() + " " + info.ModTime().String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestViewSymlinkAttackCLI: a VM plants symlinks to a host directory in
// its root, where a view goes and on the way there; `stork install`
// through a real daemon process refuses, for every view mode, and the
// host directory is not mounted over, written, chmodded or removed.
func TestViewSymlinkAttackCLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind and overlay views need root")
	}
	base, err := os.MkdirTemp("", "stork-attack-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	// One tmpfs for the data directory, the VMs' roots and the host
	// directory: overlayfs and link views work whatever /tmp is.
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, "mode=0755"); err != nil {
		t.Skipf("cannot mount: %v", err)
	}
	defer unix.Unmount(base, unix.MNT_DETACH)

	r := newRepo(t)
	src := sampleTree(t, 10_000, 3)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", "1.0.0", src)
	url := serve(t, r.dir)
	data := filepath.Join(base, "data")
	d := startDaemonProc(t, data, url, r.root)
	defer d.stop(t)

	host := filepath.Join(base, "etc")
	writeFile(t, filepath.Join(host, "passwd"), []byte("root:x:0:0\n"), 0o644)
	writeFile(t, filepath.Join(host, "ssh", "sshd_config"), []byte("PermitRootLogin no\n"), 0o600)
	before := snapshotDir(t, host)

	for _, mode := range []string{"bind", "overlay", "link"} {
		vm := "vm-" + mode
		root := filepath.Join(base, "roots", vm)
		args := []string{"vm", "add", "--data", data, vm, "--allow", "*", "--root", root, "--mode", mode}
		if mode == "link" {
			args = append(args, "--unprivileged")
		}
		stork(t, args...)
		// The place of the view is a symlink.
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(host, filepath.Join(root, "p")); err != nil {
			t.Fatal(err)
		}
		storkFail(t, "symbolic links", "install", "--data", data, "--vm", vm, "--mode", mode, "p")
		// A directory on the way is a symlink.
		if err := os.Symlink(host, filepath.Join(root, "opt")); err != nil {
			t.Fatal(err)
		}
		storkFail(t, "symbolic links", "install", "--data", data, "--vm", vm, "--mode", mode, "--into", filepath.Join(root, "opt"), "p")
		// With the symlinks gone, the same installs work.
		for _, l := range []string{"p", "opt"} {
			if err := os.Remove(filepath.Join(root, l)); err != nil {
				t.Fatal(err)
			}
		}
		stork(t, "install", "--data", data, "--vm", vm, "--mode", mode, "p")
		compareStoreView(t, src, filepath.Join(root, "p"))
		if out := stork(t, "list", "--data", data, "--vm", vm); !strings.Contains(out, filepath.Join(root, "p")) || !strings.Contains(out, " ok") {
			t.Errorf("list --vm %s = %q, want the view at %s, ok", vm, out, filepath.Join(root, "p"))
		}
		stork(t, "uninstall", "--data", data, "--vm", vm, "p")
	}
	storkFail(t, "stork vm add", "install", "--data", data, "--vm", "never-added", "p")

	after := snapshotDir(t, host)
	for p, was := range before {
		if got, ok := after[p]; !ok || got != was {
			t.Errorf("host directory: %s is %q, was %q", p, got, was)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("host directory: %s was created", p)
		}
	}
	ms, err := share.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if strings.HasPrefix(m.Point, host) {
			t.Errorf("%s (%s) mounted at %s, in the host directory", m.Source, m.FSType, m.Point)
		}
	}
}
