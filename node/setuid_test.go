package node

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSetuidOnlyForVMsThatAllowIt: a package with a setuid file shows it
// with the bit in the bind view of a VM registered with AllowSetuid (its
// mount without nosuid), and without it, nosuid, in another VM's view;
// each VM's list says which, the daemon logs the dropped bits once for
// the package, the setuid view comes back after a restart, and link VMs
// cannot allow setuid.
func TestSetuidOnlyForVMsThatAllowIt(t *testing.T) {
	data := tmpfsData(t)
	o := newOrigin(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "bin", "su"), "su binary\n")
	writeFile(t, filepath.Join(src, "bin", "ls"), "ls binary\n")
	if err := os.Chmod(filepath.Join(src, "bin", "su"), os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	o.publishDir(t, "login", "1.0.0", src)
	var logs syncBuffer
	start := func() func() {
		d, err := NewDaemon(context.Background(), Config{DataDir: data, RepoURL: o.url, Root: o.root, RefreshInterval: time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runAndClose(ctx, d) }()
		c := NewClient(data)
		for i := 0; ; i++ {
			if _, err := c.Status(context.Background()); err == nil {
				break
			} else if i == 500 {
				t.Fatalf("daemon did not answer: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("daemon Run = %v", err)
			}
		}
	}
	stop := start()
	c := NewClient(data)
	ctx := context.Background()
	roots := map[string]string{"trusted": t.TempDir(), "plain": t.TempDir(), "other": t.TempDir()}
	for vm, root := range roots {
		if _, err := c.AddVM(ctx, VM{ID: vm, Allow: []string{"*"}, Root: root, AllowSetuid: vm == "trusted"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Install(ctx, InstallRequest{VM: vm, Ref: "login"}, nil); err != nil {
			t.Fatalf("Install for %s = %v", vm, err)
		}
		t.Cleanup(func() { unix.Unmount(filepath.Join(root, "login"), unix.MNT_DETACH) })
	}
	check := func(when string) {
		for vm, root := range roots {
			view := filepath.Join(root, "login")
			st, err := os.Stat(filepath.Join(view, "bin", "su"))
			want := os.FileMode(0o755)
			if vm == "trusted" {
				want |= os.ModeSetuid
			}
			if err != nil || st.Mode()&(os.ModePerm|os.ModeSetuid) != want {
				t.Errorf("%s: vm %s sees bin/su as %v, %v; want %v", when, vm, st.Mode(), err, want)
			}
			var sfs unix.Statfs_t
			if err := unix.Statfs(view, &sfs); err != nil {
				t.Fatal(err)
			}
			if nosuid := sfs.Flags&unix.ST_NOSUID != 0; nosuid != (vm != "trusted") {
				t.Errorf("%s: vm %s view nosuid = %v", when, vm, nosuid)
			}
			insts, err := c.Installs(ctx, vm)
			if err != nil || len(insts) != 1 {
				t.Fatalf("Installs(%s) = %v, %v", vm, insts, err)
			}
			if want := map[bool]string{true: "applied", false: "dropped"}[vm == "trusted"]; insts[0].Setuid != want || insts[0].State != viewOK {
				t.Errorf("%s: Installs(%s) = %+v, want setuid %s", when, vm, insts[0], want)
			}
		}
	}
	check("after install")
	if n := strings.Count(logs.String(), "setuid and setgid dropped"); n != 1 {
		t.Errorf("logged the dropped setuid %d times for two VMs, want once per package:\n%s", n, logs.String())
	}
	stop()
	for _, root := range roots {
		unix.Unmount(filepath.Join(root, "login"), unix.MNT_DETACH)
	}
	stop = start()
	defer stop()
	check("after a restart")
	// Revoking the policy takes the bits away at once.
	if _, err := c.AddVM(ctx, VM{ID: "trusted", Allow: []string{"*"}, Root: roots["trusted"]}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(roots["trusted"], "login", "bin", "su")); err != nil || st.Mode()&os.ModeSetuid != 0 {
		t.Errorf("after --allow-setuid was revoked: bin/su is %v, %v; want no setuid", st.Mode(), err)
	}
	if insts, err := c.Installs(ctx, "trusted"); err != nil || len(insts) != 1 || insts[0].Setuid != "dropped" || insts[0].State != viewOK {
		t.Errorf("Installs(trusted) after the policy was revoked = %+v, %v", insts, err)
	}
	if _, err := c.AddVM(ctx, VM{ID: "farm", Allow: []string{"*"}, Root: t.TempDir(), Mode: "link", Unprivileged: true, AllowSetuid: true}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("AddVM(link, allow setuid) = %v, want ErrBadRequest", err)
	}
}

// TestInstallNoDeps: an install with NoDeps shows the package alone, even
// when its dependencies cannot be resolved (a package not published);
// without it the dependencies come too, a cycle included, or the install
// fails.
func TestInstallNoDeps(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "app", "1.0.0", map[string]int{"bin/app": 100}, "lib>=1")
	o.publish(t, "lib", "1.0.0", map[string]int{"lib/x": 100}, "app>=1") // a cycle, as libc6 and libgcc-s1 have
	o.publish(t, "lonely", "1.0.0", map[string]int{"f": 10}, "missing>=1")
	c := startDaemon(t, o, "")
	ctx := context.Background()
	root := t.TempDir()
	addVM(t, c, "vm", root)
	if _, err := c.Install(ctx, InstallRequest{VM: "vm", Ref: "lonely", Mode: "link"}, nil); err == nil {
		t.Errorf("Install(lonely) with dependencies succeeded, want the resolver's refusal")
	}
	got, err := c.Install(ctx, InstallRequest{VM: "vm", Ref: "lonely", Mode: "link", NoDeps: true}, nil)
	if err != nil || len(got) != 1 || got[0].Name != "lonely" {
		t.Errorf("Install(lonely, NoDeps) = %+v, %v; want it alone", got, err)
	}
	got, err = c.Install(ctx, InstallRequest{VM: "vm", Ref: "app", Mode: "link", NoDeps: true}, nil)
	if err != nil || len(got) != 1 || got[0].Name != "app" {
		t.Errorf("Install(app, NoDeps) = %+v, %v; want it alone", got, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "lib")); !os.IsNotExist(err) {
		t.Errorf("NoDeps installed the dependency lib: %v", err)
	}
	// With its dependencies, through the cycle; the mode is the VM's.
	got, err = c.Install(ctx, InstallRequest{VM: "vm", Ref: "app"}, nil)
	if err != nil || len(got) != 2 || got[0].Name != "app" || got[1].Name != "lib" || got[0].Mode != "link" || got[1].Mode != "link" {
		t.Errorf("Install(app) = %+v, %v; want app then lib, link views (the VM's registered mode)", got, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "lib", "lib", "x")); err != nil {
		t.Errorf("Install(app) did not bring lib: %v", err)
	}
}
