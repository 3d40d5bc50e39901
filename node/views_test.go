package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/share"
)

// tmpfsData returns a short data directory on a fresh tmpfs (overlayfs
// needs an upper file system that supports it, whatever the test
// directory is on). It skips unless root can mount.
func tmpfsData(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("views need root")
	}
	dir, err := os.MkdirTemp("", "stork-node-")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		os.Remove(dir)
		t.Skipf("cannot mount: %v", err)
	}
	t.Cleanup(func() {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		os.Remove(dir)
	})
	return dir
}

// runDaemon runs a daemon on dataDir until stop is called (or the test
// ends).
func runDaemon(t *testing.T, o *origin, dataDir string) (c *Client, stop func()) {
	t.Helper()
	d, err := NewDaemon(context.Background(), Config{DataDir: dataDir, RepoURL: o.url, Root: o.root, RefreshInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runAndClose(ctx, d) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon Run = %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("daemon did not stop within 20s")
		}
	}
	t.Cleanup(stop)
	c = NewClient(dataDir)
	for i := 0; ; i++ {
		if _, err := c.Status(context.Background()); err == nil {
			return c, stop
		} else if i == 1000 {
			t.Fatalf("daemon did not answer: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("daemon exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// publishDir publishes the directory src as name@version.
func (o *origin) publishDir(t *testing.T, name, version, src string) {
	t.Helper()
	if _, err := o.repo.Add(context.Background(), metadata.AddOptions{Name: name, Version: version, Source: src}); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read %s: %v", path, err)
	}
	return string(b)
}

// mountsAt counts the mounts whose mount point is path.
func mountsAt(t *testing.T, path string) int {
	t.Helper()
	ms, err := share.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range ms {
		if m.Point == path {
			n++
		}
	}
	return n
}

func TestInstallRefusesDataDir(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "p", "1.0.0", map[string]int{"f": 100})
	data := tmpfsData(t)
	c := startDaemon(t, o, data)
	ctx := context.Background()
	for _, into := range []string{
		data,
		filepath.Join(data, "store"),
		filepath.Join(data, "store", "trees"),
		filepath.Join(data, "store", "objects"),
		filepath.Join(data, "overlays"),
		filepath.Dir(data), // holds the data directory
	} {
		_, err := c.Install(ctx, InstallRequest{VM: "vm1", Ref: "p", Into: into, Mode: "bind"}, nil)
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "data directory") {
			t.Errorf("Install(--into %s) = %v, want a refusal naming the data directory", into, err)
		}
		if _, err := c.AddVM(ctx, VM{ID: "vm1", Allow: []string{"*"}, Root: into}); !errors.Is(err, ErrBadRequest) {
			t.Errorf("AddVM(--root %s) = %v, want ErrBadRequest", into, err)
		}
	}
	// A symlink to the store is resolved before the check.
	link := filepath.Join(t.TempDir(), "to-store")
	if err := os.Symlink(filepath.Join(data, "store"), link); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Install(ctx, InstallRequest{VM: "vm1", Ref: "p", Into: link, Mode: "bind"}, nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("Install(--into a symlink to the store) = %v, want ErrBadRequest", err)
	}
	if ms := mountsBelow(t, data); len(ms) > 0 {
		t.Errorf("views mounted in the data directory: %v", ms)
	}
	// DATA/views, the default VM root, is allowed.
	if _, err := c.AddVM(ctx, VM{ID: "vm2", Allow: []string{"*"}}); err != nil {
		t.Errorf("AddVM with the default root = %v", err)
	}
	if _, err := c.Install(ctx, InstallRequest{VM: "vm2", Ref: "p"}, nil); err != nil {
		t.Errorf("Install into DATA/views/vm2 = %v", err)
	}
}

// mountsBelow lists mount points strictly below dir, except DATA/views.
func mountsBelow(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := share.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		if strings.HasPrefix(m.Point, dir+"/") && !strings.HasPrefix(m.Point, filepath.Join(dir, "views")+"/") {
			out = append(out, m.Point)
		}
	}
	return out
}

func TestLinkViewsNeedUnprivilegedVM(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "p", "1.0.0", map[string]int{"f": 100})
	c := startDaemon(t, o, "")
	ctx := context.Background()
	root := t.TempDir()
	if _, err := c.AddVM(ctx, VM{ID: "priv", Allow: []string{"*"}, Root: root, Mode: "link"}); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "unprivileged") {
		t.Errorf("AddVM(link, privileged) = %v, want a refusal saying why and naming --unprivileged", err)
	}
	if _, err := c.AddVM(ctx, VM{ID: "priv", Allow: []string{"*"}, Root: root}); err != nil {
		t.Fatal(err)
	}
	for _, vm := range []string{"priv", "unregistered"} {
		_, err := c.Install(ctx, InstallRequest{VM: vm, Ref: "p", Into: root, Mode: "link"}, nil)
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "write access to the shared objects") || !strings.Contains(err.Error(), "--unprivileged") {
			t.Errorf("Install(link) for %s = %v, want a refusal saying why and how", vm, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "p")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused link view left %s: %v", filepath.Join(root, "p"), err)
	}
	root2 := t.TempDir()
	addVM(t, c, "unpriv", root2)
	if _, err := c.Install(ctx, InstallRequest{VM: "unpriv", Ref: "p", Mode: "link"}, nil); err != nil {
		t.Fatalf("Install(link) for an unprivileged VM = %v", err)
	}
	if _, err := os.Stat(filepath.Join(root2, "p", "f")); err != nil {
		t.Errorf("link view: %v", err)
	}
}

func TestInstallIntoDefaultsToVMRoot(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "p", "1.0.0", map[string]int{"f": 100})
	c := startDaemon(t, o, "")
	ctx := context.Background()
	root := t.TempDir()
	addVM(t, c, "vm1", root)
	insts, err := c.Install(ctx, InstallRequest{VM: "vm1", Ref: "p", Mode: "link"}, nil)
	if err != nil || len(insts) != 1 || insts[0].Path != filepath.Join(root, "p") {
		t.Fatalf("Install without --into = %+v, %v, want the view at %s", insts, err, filepath.Join(root, "p"))
	}
	if _, err := os.Stat(filepath.Join(root, "p", "f")); err != nil {
		t.Errorf("view: %v", err)
	}
	_, err = c.Install(ctx, InstallRequest{VM: "nosuch", Ref: "p", Mode: "bind"}, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "not_found" || !strings.Contains(err.Error(), "stork vm add") {
		t.Errorf("Install for an unregistered VM without --into = %v, want an error naming stork vm add", err)
	}
	if _, err := c.Install(ctx, InstallRequest{VM: "vm1", Ref: "p", Into: t.TempDir(), Mode: "link"}, nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("Install --into outside the VM's root = %v, want ErrBadRequest", err)
	}
}

// Identical content published under two names: each name is installed,
// reported and listed as itself, at its own path.
func TestInstallSameContentTwoNames(t *testing.T) {
	o := newOrigin(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "bin", "tool"), "the same bytes\n")
	o.publishDir(t, "alpha", "1.0.0", src)
	o.publishDir(t, "beta", "1.0.0", src)
	c := startDaemon(t, o, "")
	ctx := context.Background()
	root := t.TempDir()
	addVM(t, c, "vm1", root)
	for _, name := range []string{"alpha", "beta"} {
		insts, err := c.Install(ctx, InstallRequest{VM: "vm1", Ref: name, Mode: "link"}, nil)
		if err != nil || len(insts) != 1 || insts[0].Name != name || insts[0].Path != filepath.Join(root, name) {
			t.Fatalf("Install(%s) = %+v, %v, want %s at %s", name, insts, err, name, filepath.Join(root, name))
		}
		if got := readFile(t, filepath.Join(root, name, "bin", "tool")); got != "the same bytes\n" {
			t.Errorf("%s view holds %q", name, got)
		}
	}
	list, err := c.Installs(ctx, "vm1")
	if err != nil || len(list) != 2 || list[0].Name != "alpha" || list[1].Name != "beta" || list[0].ManifestCID != list[1].ManifestCID {
		t.Errorf("Installs(vm1) = %+v, %v, want alpha and beta with one manifest", list, err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range st.Packages {
		names = append(names, p.Name+":"+strings.Join(p.Installs, ","))
	}
	if strings.Join(names, " ") != "alpha:vm1 beta:vm1" {
		t.Errorf("status packages = %v, want [alpha:vm1 beta:vm1]", names)
	}
	if _, err := c.Uninstall(ctx, "vm1", "alpha"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(root, "beta", "bin", "tool")); got != "the same bytes\n" {
		t.Errorf("beta's view after uninstalling alpha holds %q", got)
	}
}

// One view per VM and package: a second path is refused, saying where the
// package is; another version at the same path replaces the view.
func TestInstallOneViewPerPackage(t *testing.T) {
	o := newOrigin(t)
	v1, v2 := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(v1, "VERSION"), "1\n")
	writeFile(t, filepath.Join(v2, "VERSION"), "2\n")
	o.publishDir(t, "app", "1.0.0", v1)
	o.publishDir(t, "app", "2.0.0", v2)
	data := tmpfsData(t)
	c := startDaemon(t, o, data)
	ctx := context.Background()
	root := filepath.Join(data, "views", "vm1")
	if _, err := c.AddVM(ctx, VM{ID: "vm1", Allow: []string{"*"}, Root: root}); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"bind", "overlay"} {
		t.Run(mode, func(t *testing.T) {
			first := filepath.Join(root, "a")
			if _, err := c.Install(ctx, InstallRequest{VM: "vm1", Ref: "app@1.0.0", Into: first, Mode: mode}, nil); err != nil {
				t.Fatal(err)
			}
			view := filepath.Join(first, "app")
			_, err := c.Install(ctx, InstallRequest{VM: "vm1", Ref: "app@1.0.0", Into: filepath.Join(root, "b"), Mode: mode}, nil)
			if err == nil || !strings.Contains(err.Error(), view) {
				t.Errorf("Install at a second path = %v, want a refusal naming %s", err, view)
			}
			if _, err := os.Stat(filepath.Join(root, "b", "app", "VERSION")); err == nil {
				t.Errorf("second view made at %s", filepath.Join(root, "b", "app"))
			}
			// Upgrade in place.
			insts, err := c.Install(ctx, InstallRequest{VM: "vm1", Ref: "app@2.0.0", Into: first, Mode: mode}, nil)
			if err != nil || len(insts) != 1 || insts[0].Version != "2.0.0" {
				t.Fatalf("Install(app@2.0.0) over 1.0.0 = %+v, %v, want the view replaced", insts, err)
			}
			if got := readFile(t, filepath.Join(view, "VERSION")); got != "2\n" {
				t.Errorf("view after the upgrade holds VERSION %q, want 2", got)
			}
			if n := mountsAt(t, view); n != 1 {
				t.Errorf("%d mounts at %s after the upgrade, want 1", n, view)
			}
			list, _ := c.Installs(ctx, "vm1")
			if len(list) != 1 || list[0].Version != "2.0.0" || list[0].State != viewOK {
				t.Errorf("Installs(vm1) = %+v, want app 2.0.0 only, ok", list)
			}
			if _, err := c.Uninstall(ctx, "vm1", "app"); err != nil {
				t.Fatal(err)
			}
			if n := mountsAt(t, view); n != 0 {
				t.Errorf("%d mounts left at %s after uninstall", n, view)
			}
		})
	}
}

// The daemon restores recorded views at start (after a restart or a
// reboot unmounted them); a view it cannot restore is listed broken, with
// the reason.
func TestRestartRestoresViews(t *testing.T) {
	o := newOrigin(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "hello.txt"), "hello\n")
	o.publishDir(t, "p", "1.0.0", src)
	data := tmpfsData(t)
	c, stop := runDaemon(t, o, data)
	ctx := context.Background()
	roots := map[string]string{}
	for _, mode := range []string{"bind", "overlay", "link"} {
		vm := "vm-" + mode
		roots[mode] = filepath.Join(data, "views", vm)
		if _, err := c.AddVM(ctx, VM{ID: vm, Allow: []string{"*"}, Root: roots[mode], Mode: mode, Unprivileged: mode == "link"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Install(ctx, InstallRequest{VM: vm, Ref: "p", Mode: mode}, nil); err != nil {
			t.Fatalf("Install(%s) = %v", mode, err)
		}
	}
	// A VM whose view will not come back: its root's opt becomes a symlink.
	broken := filepath.Join(data, "views", "vm-broken")
	if _, err := c.AddVM(ctx, VM{ID: "vm-broken", Allow: []string{"*"}, Root: broken}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Install(ctx, InstallRequest{VM: "vm-broken", Ref: "p", Into: filepath.Join(broken, "opt"), Mode: "bind"}, nil); err != nil {
		t.Fatal(err)
	}
	// The overlay VM's own change survives the restart and reinstalls.
	writeFile(t, filepath.Join(roots["overlay"], "p", "mine.txt"), "vm data\n")
	stop()

	// A reboot: every view is gone.
	for _, r := range []string{roots["bind"], roots["overlay"], filepath.Join(broken, "opt")} {
		if err := unix.Unmount(filepath.Join(r, "p"), unix.MNT_DETACH); err != nil {
			t.Fatalf("unmount %s: %v", r, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(roots["link"], "p")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(broken, "opt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(broken, "opt")); err != nil {
		t.Fatal(err)
	}

	c, _ = runDaemon(t, o, data)
	for mode, r := range roots {
		if got := readFile(t, filepath.Join(r, "p", "hello.txt")); got != "hello\n" {
			t.Errorf("%s view after restart holds %q, want it restored", mode, got)
		}
	}
	list, err := c.Installs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		switch {
		case in.VM == "vm-broken" && (in.State != viewBroken || in.Reason == ""):
			t.Errorf("unrestorable view listed as %q (%q), want broken with a reason", in.State, in.Reason)
		case in.VM != "vm-broken" && in.State != viewOK:
			t.Errorf("%s view listed as %q (%s), want ok", in.Mode, in.State, in.Reason)
		}
	}
	if mountsAt(t, "/etc/p") != 0 {
		t.Error("a view was mounted at /etc/p through the VM's symlink")
	}
	st, err := c.Status(ctx)
	if err != nil || len(st.Views) != 4 {
		t.Fatalf("status views = %+v, %v, want 4", st.Views, err)
	}
	// list shows what is really there: a view unmounted behind the
	// daemon's back is broken until it is installed again.
	if err := unix.Unmount(filepath.Join(roots["bind"], "p"), unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	list, _ = c.Installs(ctx, "vm-bind")
	if len(list) != 1 || list[0].State != viewBroken || !strings.Contains(list[0].Reason, "not mounted") {
		t.Errorf("Installs(vm-bind) after an unmount = %+v, want broken: not mounted", list)
	}
	if _, err := c.Install(ctx, InstallRequest{VM: "vm-bind", Ref: "p", Mode: "bind"}, nil); err != nil {
		t.Fatal(err)
	}
	if list, _ = c.Installs(ctx, "vm-bind"); len(list) != 1 || list[0].State != viewOK {
		t.Errorf("Installs(vm-bind) after installing again = %+v, want ok", list)
	}
	mine := filepath.Join(roots["overlay"], "p", "mine.txt")
	if got := readFile(t, mine); got != "vm data\n" {
		t.Errorf("overlay view after restart: %s holds %q, want the VM's change kept", mine, got)
	}
	if err := unix.Unmount(filepath.Join(roots["overlay"], "p"), unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Install(ctx, InstallRequest{VM: "vm-overlay", Ref: "p", Mode: "overlay"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, mine); got != "vm data\n" {
		t.Errorf("overlay view installed again: %s holds %q, want the VM's change kept", mine, got)
	}
}

// The overlay's upper layer (the VM's own changes) is private to root.
func TestOverlayUpperPrivate(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "p", "1.0.0", map[string]int{"f": 100})
	data := tmpfsData(t)
	c := startDaemon(t, o, data)
	ctx := context.Background()
	if _, err := c.AddVM(ctx, VM{ID: "vm1", Allow: []string{"*"}, Mode: "overlay"}); err != nil {
		t.Fatal(err)
	}
	insts, err := c.Install(ctx, InstallRequest{VM: "vm1", Ref: "p", Mode: "overlay"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	overlays := filepath.Join(data, "overlays")
	for _, dir := range []string{overlays, filepath.Join(overlays, "vm1"), filepath.Join(overlays, "vm1", insts[0].ManifestCID)} {
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", dir, st.Mode().Perm())
		}
	}
	if _, err := c.Uninstall(ctx, "vm1", "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(overlays, "vm1", insts[0].ManifestCID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("overlay upper layer left after uninstall: %v", err)
	}
}
