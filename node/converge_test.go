package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/storkpm/stork/metadata"
)

// setGroup changes group g's policy in the origin's repository.
func (o *origin) setGroup(t testing.TB, g string, ch metadata.GroupChange) {
	t.Helper()
	if _, err := o.repo.SetGroup(context.Background(), g, ch); err != nil {
		t.Fatalf("SetGroup(%s, %+v) = %v", g, ch, err)
	}
}

// addGroupVM registers an unprivileged VM (link views) in groups, with no
// --allow pattern.
func addGroupVM(t testing.TB, c *Client, id string, groups ...string) string {
	t.Helper()
	root := t.TempDir()
	if _, err := c.AddVM(context.Background(), VM{ID: id, Groups: groups, Root: root, Mode: "link", Unprivileged: true}); err != nil {
		t.Fatalf("AddVM(%s) = %v", id, err)
	}
	return root
}

// vmHas returns NAME@VERSION of every install of vm, sorted.
func vmHas(t testing.TB, c *Client, vm string) []string {
	t.Helper()
	insts, err := c.Installs(context.Background(), vm)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, in := range insts {
		out = append(out, in.Name+"@"+in.Version)
	}
	slices.Sort(out)
	return out
}

func converge(t testing.TB, c *Client) *ConvergeStatus {
	t.Helper()
	st, err := c.Converge(context.Background())
	if err != nil {
		t.Fatalf("Converge = %v", err)
	}
	return st
}

func wantHas(t *testing.T, c *Client, when string, want map[string][]string) {
	t.Helper()
	for vm, w := range want {
		if got := vmHas(t, c, vm); !slices.Equal(got, w) {
			t.Errorf("%s: vm %s has %v, want %v", when, vm, got, w)
		}
	}
}

// A group change adds, upgrades and removes packages on the VMs of that
// group only; a VM in two groups gets the union; what a VM installed by
// hand stays; a package no policy wants any more leaves the views and its
// objects are collected.
func TestConvergeGroups(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "a", "1.0.0", map[string]int{"a": 1000})
	o.publish(t, "b", "1.0.0", map[string]int{"b": 1000})
	o.publish(t, "c", "1.0.0", map[string]int{"c": 1000})
	o.publish(t, "lib", "1.0.0", map[string]int{"lib": 1000})
	o.publish(t, "d", "1.0.0", map[string]int{"d": 1000}, "lib")
	o.publish(t, "mine", "1.0.0", map[string]int{"m": 1000})
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a", "b"}})
	o.setGroup(t, "db", metadata.GroupChange{Add: []string{"b", "d"}})
	c := startDaemonWith(t, o, "", func(cfg *Config) { cfg.Poll = time.Hour })
	ctx := context.Background()
	addGroupVM(t, c, "vweb", "web")
	addGroupVM(t, c, "vdb", "db")
	rootBoth := addGroupVM(t, c, "vboth", "web", "db")
	addVM(t, c, "vnone", t.TempDir())
	if _, err := c.Install(ctx, InstallRequest{VM: "vweb", Ref: "mine"}, nil); err != nil {
		t.Fatal(err)
	}
	st := converge(t, c)
	wantHas(t, c, "first pass", map[string][]string{
		"vweb":  {"a@1.0.0", "b@1.0.0", "mine@1.0.0"},
		"vdb":   {"b@1.0.0", "d@1.0.0", "lib@1.0.0"},
		"vboth": {"a@1.0.0", "b@1.0.0", "d@1.0.0", "lib@1.0.0"},
		"vnone": {},
	})
	if b := readFile(t, filepath.Join(rootBoth, "d", "d")); len(b) != 1000 {
		t.Errorf("vboth's view of d holds %d bytes, want 1000", len(b))
	}
	if len(st.VMs) != 3 || st.LastConverged.IsZero() || len(st.Pending) != 0 {
		t.Errorf("status after the first pass = %+v, want 3 VMs converged, nothing pending", st)
	}

	// web: a upgraded (newest), b forbidden; db unchanged.
	o.publish(t, "a", "2.0.0", map[string]int{"a": 1000})
	o.setGroup(t, "web", metadata.GroupChange{Remove: []string{"b"}})
	_, err := c.Converge(ctx)
	wantHas(t, c, "a upgraded, b forbidden in web", map[string][]string{
		"vweb":  {"a@2.0.0", "mine@1.0.0"},
		"vdb":   {"b@1.0.0", "d@1.0.0", "lib@1.0.0"},
		"vnone": {},
	})
	// vboth: b is required by db and forbidden by web: it keeps its last
	// good state, and the conflict is reported.
	if err == nil || !strings.Contains(err.Error(), "vm vboth") || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("Converge with b required by db and forbidden by web = %v, want the conflict reported", err)
	}
	wantHas(t, c, "conflict", map[string][]string{"vboth": {"a@1.0.0", "b@1.0.0", "d@1.0.0", "lib@1.0.0"}})
	if s, _ := c.Status(ctx); s == nil || s.Converge.Error == "" {
		t.Errorf("status after a failed pass shows no error: %+v", s)
	}

	// web drops b (neither required nor forbidden); db drops d: d and lib
	// leave vdb and vboth, and the store collects them.
	o.setGroup(t, "web", metadata.GroupChange{Drop: []string{"b"}})
	o.setGroup(t, "db", metadata.GroupChange{Drop: []string{"d"}})
	converge(t, c)
	wantHas(t, c, "d dropped from db", map[string][]string{
		"vweb":  {"a@2.0.0", "mine@1.0.0"},
		"vdb":   {"b@1.0.0"},
		"vboth": {"a@2.0.0", "b@1.0.0"},
	})
	if _, err := os.Stat(filepath.Join(rootBoth, "d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("d still in vboth's view: %v", err)
	}
	s, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Packages {
		if p.Name == "d" || p.Name == "lib" || (p.Name == "a" && p.Version == "1.0.0") {
			t.Errorf("store still holds %s@%s, which no VM uses", p.Name, p.Version)
		}
	}
}

// A VM's own requests are checked against its groups as well as its
// --allow patterns: a VM may get what some group of its requires, and
// not what a group of its forbids.
func TestVMRequestsCheckedAgainstGroups(t *testing.T) {
	o := newOrigin(t)
	for _, n := range []string{"a", "b", "x"} {
		o.publish(t, n, "1.0.0", map[string]int{n: 100})
	}
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a"}, Remove: []string{"b"}})
	c := startDaemonWith(t, o, "", func(cfg *Config) { cfg.Poll = time.Hour })
	ctx := context.Background()
	sock, err := c.AddVM(ctx, VM{ID: "v1", Allow: []string{"x", "b"}, Groups: []string{"web"}, Root: t.TempDir(), Mode: "link", Unprivileged: true})
	if err != nil {
		t.Fatal(err)
	}
	vm := NewSocketClient(sock)
	for _, tc := range []struct {
		ref string
		ok  bool
	}{{"a", true}, {"x", true}, {"b", false}, {"nope", false}} {
		_, err := vm.VMInstall(ctx, tc.ref, nil)
		if tc.ok && err != nil {
			t.Errorf("VMInstall(%s) = %v, want it allowed", tc.ref, err)
		}
		if !tc.ok && !errors.Is(err, ErrForbidden) {
			t.Errorf("VMInstall(%s) = %v, want ErrForbidden", tc.ref, err)
		}
	}
	// Out of web, a is no longer allowed (x still is).
	if _, err := c.SetVMGroups(ctx, "v1", GroupsRequest{Remove: []string{"web"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.VMInstall(ctx, "a", nil); !errors.Is(err, ErrForbidden) {
		t.Errorf("VMInstall(a) after leaving web = %v, want ErrForbidden", err)
	}
	if _, err := c.SetVMGroups(ctx, "v1", GroupsRequest{Add: []string{"Bad!"}}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("SetVMGroups(Bad!) = %v, want ErrBadRequest", err)
	}
	if _, err := c.AddVM(ctx, VM{ID: "v2", Root: t.TempDir()}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("AddVM with neither allow nor groups = %v, want ErrBadRequest", err)
	}
}

// A host that was down during two successive updates converges to the
// latest when it returns: the newest version, and without what the
// second update dropped (the daemon remembers what its groups installed).
func TestConvergeAfterDowntime(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "a", "1.0.0", map[string]int{"a": 100})
	o.publish(t, "b", "1.0.0", map[string]int{"b": 100})
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a", "b"}})
	dataDir, err := os.MkdirTemp("", "stork-node-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	c, stop := runDaemon(t, o, dataDir)
	addGroupVM(t, c, "v1", "web")
	converge(t, c)
	wantHas(t, c, "before", map[string][]string{"v1": {"a@1.0.0", "b@1.0.0"}})
	stop()

	o.publish(t, "a", "2.0.0", map[string]int{"a": 100})
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a@2.0.0"}})
	o.publish(t, "a", "3.0.0", map[string]int{"a": 100})
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a@>=3"}, Drop: []string{"b"}})

	// The restarted daemon converges at start, without being asked.
	c, _ = runDaemon(t, o, dataDir)
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Equal(vmHas(t, c, "v1"), []string{"a@3.0.0"}) {
		if time.Now().After(deadline) {
			st, _ := c.Status(context.Background())
			t.Fatalf("v1 has %v 30s after restart, want [a@3.0.0]; converge status %+v", vmHas(t, c, "v1"), st.Converge)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A failed fetch leaves the VM on its last good state, is reported, and
// the daemon retries by itself with backoff (the poll interval is an
// hour): once the origin serves again, the upgrade completes.
func TestConvergeFailedFetchKeepsLastGood(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "a", "1.0.0", map[string]int{"a": 100})
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a"}})
	c := startDaemonWith(t, o, "", func(cfg *Config) { cfg.Poll = time.Hour; cfg.OriginDeadline = 200 * time.Millisecond })
	ctx := context.Background()
	addGroupVM(t, c, "v1", "web")
	converge(t, c)
	o.publish(t, "a", "2.0.0", map[string]int{"a2": 100})
	o.failChunks.Store(true)
	// The change reaches the daemon's own loop (a kick), whose pass fails.
	if _, err := c.SetVMGroups(ctx, "v1", GroupsRequest{Add: []string{"web"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Converge.Failures > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed pass reported 30s after the change: %+v", s.Converge)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantHas(t, c, "failed fetch", map[string][]string{"v1": {"a@1.0.0"}})
	s, _ := c.Status(ctx)
	if s.Converge.Error == "" || s.Converge.Failures == 0 || len(s.Converge.Pending) == 0 {
		t.Errorf("status after a failed fetch = %+v, want the error, a failure count and what is pending", s.Converge)
	}
	o.failChunks.Store(false)
	waitHas(t, c, "v1", []string{"a@2.0.0"}, 30*time.Second)
}

// waitHas waits (bounded) until vm has want.
func waitHas(t *testing.T, c *Client, vm string, want []string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !slices.Equal(vmHas(t, c, vm), want) {
		if time.Now().After(deadline) {
			st, _ := c.Status(context.Background())
			t.Fatalf("vm %s has %v after %s, want %v; converge status %+v", vm, vmHas(t, c, vm), limit, want, st.Converge)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The daemon reads the repository every poll interval and converges,
// with nobody asking.
func TestConvergePolls(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "a", "1.0.0", map[string]int{"a": 100})
	c := startDaemonWith(t, o, "", func(cfg *Config) { cfg.Poll = 100 * time.Millisecond })
	addGroupVM(t, c, "v1", "web")
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a"}})
	waitHas(t, c, "v1", []string{"a@1.0.0"}, 30*time.Second)
	o.publish(t, "a", "2.0.0", map[string]int{"a": 100})
	waitHas(t, c, "v1", []string{"a@2.0.0"}, 30*time.Second)

	// Passes that change nothing leave converge.json alone.
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(managedPath(st.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	since := st.Converge.LastPass
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err := c.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Converge.LastPass.After(since.Add(300 * time.Millisecond)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no convergence pass within 30s")
		}
	}
	if after, err := os.Stat(managedPath(st.DataDir)); err != nil || !os.SameFile(before, after) {
		t.Errorf("converge.json was written again by passes that changed nothing (err %v)", err)
	}
}

// A group policy whose delegated role expired is refused: the VMs of that
// group keep their last good state and the error says why; another
// group's VMs go on converging.
func TestConvergeRefusesExpiredGroupRole(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "a", "1.0.0", map[string]int{"a": 100})
	o.publish(t, "b", "1.0.0", map[string]int{"b": 100})
	ctx := context.Background()
	mk, err := metadata.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := o.repo.Delegate(ctx, metadata.DelegateOptions{Role: metadata.GroupRole("web"), Groups: []string{"web"},
		Keys: []*tufmeta.Key{mk.Public()}, Expires: time.Hour}); err != nil {
		t.Fatal(err)
	}
	maint, err := metadata.OpenRepo(o.dir, []*metadata.PrivateKey{mk, o.key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := maint.SetGroup(ctx, "web", metadata.GroupChange{Add: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	o.setGroup(t, "db", metadata.GroupChange{Add: []string{"a"}})
	clock := &fakeClock{t: time.Now()}
	c := startDaemonWith(t, o, "", func(cfg *Config) { cfg.Poll = time.Hour; cfg.Now = clock.Now })
	addGroupVM(t, c, "vweb", "web")
	addGroupVM(t, c, "vdb", "db")
	converge(t, c)
	wantHas(t, c, "before", map[string][]string{"vweb": {"a@1.0.0"}, "vdb": {"a@1.0.0"}})

	o.setGroup(t, "db", metadata.GroupChange{Add: []string{"b"}})
	clock.Add(2 * time.Hour) // web's role expired; the top-level roles have not
	if _, err := c.Converge(ctx); err == nil || !strings.Contains(err.Error(), "vm vweb") || !errors.Is(err, ErrConverge) {
		t.Errorf("Converge with web's role expired = %v, want vweb's failure reported", err)
	}
	wantHas(t, c, "web expired", map[string][]string{"vweb": {"a@1.0.0"}, "vdb": {"a@1.0.0", "b@1.0.0"}})
}

// An upgrade by convergence switches a bind view in place: a process
// holding a file of the old version open keeps reading the old bytes; a
// new open sees the new version.
func TestConvergeUpgradeKeepsOpenFiles(t *testing.T) {
	data := tmpfsData(t)
	o := newOrigin(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "old bytes\n")
	o.publishDir(t, "a", "1.0.0", src)
	o.setGroup(t, "web", metadata.GroupChange{Add: []string{"a"}})
	c := startDaemonWith(t, o, filepath.Join(data, "d"), func(cfg *Config) { cfg.Poll = time.Hour })
	ctx := context.Background()
	root := filepath.Join(data, "vm")
	if _, err := c.AddVM(ctx, VM{ID: "v1", Groups: []string{"web"}, Root: root, Mode: "bind"}); err != nil {
		t.Fatal(err)
	}
	converge(t, c)
	f, err := os.Open(filepath.Join(root, "a", "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src2 := t.TempDir()
	writeFile(t, filepath.Join(src2, "f"), "new bytes\n")
	o.publishDir(t, "a", "2.0.0", src2)
	// A reader in the VM during the upgrade meets the old file or the new,
	// never nothing.
	stop := make(chan struct{})
	readerErr := make(chan error, 1)
	go func() {
		for i := 0; i < 10_000_000; i++ {
			select {
			case <-stop:
				readerErr <- nil
				return
			default:
			}
			b, err := os.ReadFile(filepath.Join(root, "a", "f"))
			if err != nil || (string(b) != "old bytes\n" && string(b) != "new bytes\n") {
				readerErr <- fmt.Errorf("read %q, %v", b, err)
				return
			}
		}
		readerErr <- nil
	}()
	converge(t, c)
	close(stop)
	if err := <-readerErr; err != nil {
		t.Errorf("a reader during the upgrade: %v", err)
	}
	wantHas(t, c, "upgrade", map[string][]string{"v1": {"a@2.0.0"}})
	if b, err := io.ReadAll(f); err != nil || string(b) != "old bytes\n" {
		t.Errorf("file held open across the upgrade reads %q, %v, want the old bytes", b, err)
	}
	if got := readFile(t, filepath.Join(root, "a", "f")); got != "new bytes\n" {
		t.Errorf("a new open after the upgrade reads %q, want the new bytes", got)
	}
	if n := mountsAt(t, filepath.Join(root, "a")); n != 1 {
		t.Errorf("%d mounts at the view after the upgrade, want 1", n)
	}
}

// A group role that no longer carries its delegation's threshold of
// signatures is refused: its VMs keep their last good state (no upgrade
// to what the unreadable policy would give), and the refusal is reported.
func TestConvergeRefusesBelowThresholdGroupRole(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "a", "1.0.0", map[string]int{"a": 100})
	ctx := context.Background()
	mk, second := mustGenerateKey(t), mustGenerateKey(t)
	if err := o.repo.Delegate(ctx, metadata.DelegateOptions{Role: metadata.GroupRole("web"), Groups: []string{"web"}, Keys: []*tufmeta.Key{mk.Public()}}); err != nil {
		t.Fatal(err)
	}
	maint, err := metadata.OpenRepo(o.dir, []*metadata.PrivateKey{mk, o.key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := maint.SetGroup(ctx, "web", metadata.GroupChange{Add: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	c := startDaemonWith(t, o, "", func(cfg *Config) { cfg.Poll = time.Hour })
	addGroupVM(t, c, "vweb", "web")
	converge(t, c)
	wantHas(t, c, "before", map[string][]string{"vweb": {"a@1.0.0"}})

	o.publish(t, "a", "2.0.0", map[string]int{"a": 100})
	// Two signatures needed now; the role still carries one.
	if err := o.repo.Delegate(ctx, metadata.DelegateOptions{Role: metadata.GroupRole("web"), Groups: []string{"web"},
		Keys: []*tufmeta.Key{mk.Public(), second.Public()}, Threshold: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Converge(ctx); err == nil || !strings.Contains(err.Error(), "vm vweb") {
		t.Errorf("Converge with web's role below threshold = %v, want vweb's failure reported", err)
	}
	wantHas(t, c, "below threshold", map[string][]string{"vweb": {"a@1.0.0"}})
}

func mustGenerateKey(t *testing.T) *metadata.PrivateKey {
	t.Helper()
	k, err := metadata.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
