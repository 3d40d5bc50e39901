package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storkpm/stork/metadata"
	httporigin "github.com/storkpm/stork/transfer/origin"
)

// origin is a repository served over HTTP with counters.
type origin struct {
	dir        string
	root       []byte
	url        string
	chunkBytes atomic.Int64
	chunkReqs  atomic.Int64
	// corrupt, when set, flips a byte of every chunk served.
	corrupt atomic.Bool
	// failChunks, when set, answers every chunk request with 503.
	failChunks atomic.Bool
	// failAfter, when > 0, answers chunk requests beyond that many with 503.
	failAfter atomic.Int64
	// delay slows every chunk response.
	delay atomic.Int64
	// down, when set, resets every connection: the origin is gone
	// (metadata, manifests and chunks alike). downReqs counts the
	// requests refused so.
	down     atomic.Bool
	downReqs atomic.Int64
	// holdMeta, when set, keeps every request for metadata/ waiting
	// until the channel is closed; held counts the requests it held.
	holdMeta atomic.Pointer[chan struct{}]
	held     atomic.Int64
	repo     *metadata.Repo
	key      *metadata.PrivateKey // every top-level role's
	// metaReqs counts the requests for metadata/ files.
	metaReqs atomic.Int64
}

func newOrigin(t testing.TB) *origin {
	t.Helper()
	o := &origin{dir: filepath.Join(t.TempDir(), "repo")}
	key, err := metadata.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys := []*metadata.PrivateKey{key}
	o.key = key
	o.repo, err = metadata.InitRepo(o.dir, metadata.RepoConfig{RootKeys: keys, TargetsKeys: keys, SnapshotKeys: keys, TimestampKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if o.root, err = os.ReadFile(filepath.Join(o.dir, "metadata", "1.root.json")); err != nil {
		t.Fatal(err)
	}
	srv, err := httporigin.NewServer(httporigin.ServerConfig{Dir: o.dir})
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.down.Load() {
			o.downReqs.Add(1)
			resetConn(w)
			return
		}
		if hold := o.holdMeta.Load(); hold != nil && strings.HasPrefix(r.URL.Path, "/metadata/") {
			o.held.Add(1)
			select {
			case <-*hold:
			case <-r.Context().Done():
				return
			}
		}
		if strings.HasPrefix(r.URL.Path, "/metadata/") {
			o.metaReqs.Add(1)
		}
		if !strings.HasPrefix(r.URL.Path, "/chunks/") {
			h.ServeHTTP(w, r)
			return
		}
		n := o.chunkReqs.Add(1)
		if o.failChunks.Load() || (o.failAfter.Load() > 0 && n > o.failAfter.Load()) {
			http.Error(w, "origin down", http.StatusServiceUnavailable)
			return
		}
		if d := o.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		b, err := os.ReadFile(filepath.Join(o.dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/"))))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if o.corrupt.Load() && len(b) > 0 {
			b = append([]byte{}, b...)
			b[len(b)/2] ^= 0xff
		}
		o.chunkBytes.Add(int64(len(b)))
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		_, _ = w.Write(b)
	}))
	t.Cleanup(ts.Close)
	o.url = ts.URL
	return o
}

// resetConn drops the request's connection with a TCP reset.
func resetConn(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// publish adds a package made of the given files (path -> size of random bytes).
func (o *origin) publish(t testing.TB, name, version string, files map[string]int, depends ...string) string {
	t.Helper()
	return o.publishChunked(t, name, version, 0, files, depends...)
}

// publishChunked is publish with a chunk size (0: the default).
func (o *origin) publishChunked(t testing.TB, name, version string, chunkSize int64, files map[string]int, depends ...string) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), name+"-"+version)
	for p, n := range files {
		full := filepath.Join(src, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, n)
		_, _ = rand.Read(b)
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.repo.Add(context.Background(), metadata.AddOptions{Name: name, Version: version, Source: src, Depends: depends, Import: metadata.ImportOptions{ChunkSize: chunkSize}}); err != nil {
		t.Fatal(err)
	}
	return src
}

// addVM registers the VM id with root as its root, declared unprivileged
// so that link views (which need no mounts) are allowed.
func addVM(t testing.TB, c *Client, id, root string) {
	t.Helper()
	if _, err := c.AddVM(context.Background(), VM{ID: id, Allow: []string{"*"}, Root: root, Mode: "link", Unprivileged: true}); err != nil {
		t.Fatalf("AddVM(%s) = %v", id, err)
	}
}

// runAndClose runs d until ctx ends, then closes it.
func runAndClose(ctx context.Context, d *Daemon) error {
	return errors.Join(d.Run(ctx), d.Close())
}

// startDaemon runs a daemon on a fresh data directory until the test ends.
func startDaemon(t *testing.T, o *origin, dataDir string) *Client {
	t.Helper()
	return startDaemonWith(t, o, dataDir, nil)
}

// startDaemonWith is startDaemon with mod applied to the daemon's Config.
func startDaemonWith(t *testing.T, o *origin, dataDir string, mod func(*Config)) *Client {
	t.Helper()
	if dataDir == "" {
		// Unix socket paths are limited to 108 bytes: keep the data dir short.
		var err error
		dataDir, err = os.MkdirTemp("", "stork-node-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dataDir) })
	}
	cfg := Config{DataDir: dataDir, RepoURL: o.url, Root: o.root, RefreshInterval: time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	d, err := NewDaemon(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runAndClose(ctx, d) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon Run = %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("daemon did not stop within 20s")
		}
	})
	c := NewClient(dataDir)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := c.Status(context.Background()); err == nil {
			return c
		} else if time.Now().After(deadline) {
			t.Fatalf("daemon did not answer within 20s: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("daemon exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestConcurrentRequestsOneDownload(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "big", "1.0.0", map[string]int{"a.bin": 3<<20 + 5, "b/c.bin": 700_000, "b/d.txt": 10})
	o.delay.Store(int64(20 * time.Millisecond)) // keep the download in flight while requests pile up
	c := startDaemon(t, o, "")
	n := 300
	if testing.Short() {
		n = 100
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkgs, err := c.Fetch(context.Background(), "big", nil)
			if err == nil && (len(pkgs) != 1 || pkgs[0].State != "complete") {
				err = fmt.Errorf("Fetch = %+v, want one complete package", pkgs)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	const size = 3<<20 + 5 + 700_000 + 10
	if got := o.chunkBytes.Load(); got != size {
		t.Errorf("origin sent %d chunk bytes for %d concurrent requests, want exactly one copy (%d)", got, n, size)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesFromOrigin != size {
		t.Errorf("status bytes_from_origin = %d, want %d", st.BytesFromOrigin, size)
	}
}

func TestFailedDownloadReachesEveryWaiter(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "p", "1.0.0", map[string]int{"f": 2 << 20})
	o.corrupt.Store(true)
	c := startDaemon(t, o, "")
	vmRoot := t.TempDir()
	for i := 0; i < 20; i++ {
		addVM(t, c, fmt.Sprintf("vm%d", i), filepath.Join(vmRoot, fmt.Sprint(i)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := c.Install(context.Background(), InstallRequest{VM: fmt.Sprintf("vm%d", i), Ref: "p", Into: filepath.Join(vmRoot, fmt.Sprint(i)), Mode: "link"}, nil)
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil || !strings.Contains(err.Error(), "hash") {
			t.Errorf("Install from a corrupting origin = %v, want a hash mismatch error", err)
		}
	}
	entries, _ := os.ReadDir(vmRoot)
	for _, e := range entries {
		if sub, _ := os.ReadDir(filepath.Join(vmRoot, e.Name())); len(sub) > 0 {
			t.Errorf("half-installed view left at %s: %v", e.Name(), sub)
		}
	}
	st, _ := c.Status(context.Background())
	for _, p := range st.Packages {
		if p.State == "complete" || len(p.Installs) > 0 {
			t.Errorf("package %+v recorded after a failed download", p)
		}
	}
	// The origin recovers: the same request now succeeds.
	o.corrupt.Store(false)
	if _, err := c.Install(context.Background(), InstallRequest{VM: "vm0", Ref: "p", Into: filepath.Join(vmRoot, "0"), Mode: "link"}, nil); err != nil {
		t.Fatalf("Install after the origin recovered = %v", err)
	}
}

func TestInstallClosureLinkView(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "lib", "1.0.0", map[string]int{"lib.so": 100_000})
	appSrc := o.publish(t, "app", "2.0.0", map[string]int{"bin/app": 5000}, "lib>=1")
	c := startDaemon(t, o, "")
	into := filepath.Join(t.TempDir(), "view")
	addVM(t, c, "vm1", into)
	insts, err := c.Install(context.Background(), InstallRequest{VM: "vm1", Ref: "app", Into: into, Mode: "link"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 2 || insts[0].Name != "app" || insts[1].Name != "lib" {
		t.Fatalf("Install(app) = %+v, want app and its dependency lib", insts)
	}
	want, _ := os.ReadFile(filepath.Join(appSrc, "bin", "app"))
	got, err := os.ReadFile(filepath.Join(into, "app", "bin", "app"))
	if err != nil || string(got) != string(want) {
		t.Errorf("view app/bin/app: %v (%d bytes, want %d)", err, len(got), len(want))
	}
	if _, err := os.Stat(filepath.Join(into, "lib", "lib.so")); err != nil {
		t.Errorf("dependency not in the view: %v", err)
	}
	// A second VM shares the same inodes: one copy on disk.
	into2 := filepath.Join(t.TempDir(), "view2")
	addVM(t, c, "vm2", into2)
	if _, err := c.Install(context.Background(), InstallRequest{VM: "vm2", Ref: "app", Into: into2, Mode: "link"}, nil); err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(filepath.Join(into, "lib", "lib.so"))
	b, _ := os.Stat(filepath.Join(into2, "lib", "lib.so"))
	if !os.SameFile(a, b) {
		t.Error("two VMs' views of one file are different inodes, want one shared copy")
	}
	// GC keeps what is installed.
	if _, err := c.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(into, "lib", "lib.so")); err != nil {
		t.Errorf("GC removed an installed file: %v", err)
	}
	if _, err := c.Uninstall(context.Background(), "vm1", "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(into, "app")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("view still present after uninstall: %v", err)
	}
	if _, err := c.Uninstall(context.Background(), "vm1", "app"); err == nil {
		t.Error("second uninstall succeeded, want not found")
	}
}

func TestVMEndpointPolicy(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "hello", "1.0.0", map[string]int{"hello.txt": 1000})
	o.publish(t, "secret", "1.0.0", map[string]int{"secret.txt": 1000})
	c := startDaemon(t, o, "")
	rootA, rootB := t.TempDir(), t.TempDir()
	sockA, err := c.AddVM(context.Background(), VM{ID: "vmA", Allow: []string{"hell*"}, Root: rootA, Mode: "link", Unprivileged: true})
	if err != nil {
		t.Fatal(err)
	}
	sockB, err := c.AddVM(context.Background(), VM{ID: "vmB", Allow: []string{"*"}, Root: rootB, Mode: "link", Unprivileged: true})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sockA); err != nil || fi.Mode().Perm()&0o007 != 0 {
		t.Errorf("vm socket %s: %v mode %v, want no access for others", sockA, err, fi.Mode())
	}
	vmA, vmB := NewSocketClient(sockA), NewSocketClient(sockB)
	ctx := context.Background()

	pkgs, err := vmA.VMPackages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 1 || pkgs[0].Name != "hello" {
		t.Errorf("vmA packages = %+v, want only hello", pkgs)
	}
	if _, err := vmB.VMInstall(ctx, "secret", nil); err != nil {
		t.Fatal(err)
	}
	before, _ := c.Status(ctx)

	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"outside policy", func() error { _, err := vmA.VMInstall(ctx, "secret", nil); return err }, ErrForbidden},
		{"outside policy with version", func() error { _, err := vmA.VMInstall(ctx, "secret@1.0.0", nil); return err }, ErrForbidden},
		{"admin endpoint on vm socket", func() error { _, err := vmA.Status(ctx); return err }, ErrForbidden},
		{"another vm's installs via admin path", func() error { _, err := vmA.Installs(ctx, "vmB"); return err }, ErrForbidden},
		{"host path in request", func() error {
			return vmA.call(ctx, http.MethodPost, "/v1/install", map[string]string{"ref": "hello", "into": "/etc"}, nil)
		}, ErrBadRequest},
		{"url in request", func() error {
			return vmA.call(ctx, http.MethodPost, "/v1/install", map[string]string{"ref": "hello", "repo": "http://evil"}, nil)
		}, ErrBadRequest},
		{"malformed json", func() error { return vmA.call(ctx, http.MethodPost, "/v1/install", []byte("{"), nil) }, ErrBadRequest},
		{"oversized body", func() error {
			return vmA.call(ctx, http.MethodPost, "/v1/install", map[string]string{"ref": strings.Repeat("a", maxRequestBody)}, nil)
		}, ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Errorf("%s = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
	// vmA sees none of vmB's installs.
	mine, err := vmA.VMInstalled(ctx)
	if err != nil || len(mine) != 0 {
		t.Errorf("vmA installed = %+v, %v; want none (vmB's install is not its business)", mine, err)
	}
	after, _ := c.Status(ctx)
	if len(after.Packages) != len(before.Packages) {
		t.Errorf("refused requests changed the store: %d packages, want %d", len(after.Packages), len(before.Packages))
	}
	// What vmA may have, it gets, under its own root.
	got, err := vmA.VMInstall(ctx, "hello", nil)
	if err != nil || len(got) != 1 || got[0].Path != "hello" {
		t.Fatalf("vmA install hello = %+v, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(rootA, "hello", "hello.txt")); err != nil {
		t.Errorf("hello not in vmA's root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(rootA, "secret")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("secret visible in vmA's root: %v", err)
	}
}

func TestDaemonRestartKeepsStore(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "p", "1.0.0", map[string]int{"f": 1 << 20})
	dataDir, err := os.MkdirTemp("", "stork-node-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dataDir)
	cfg := Config{DataDir: dataDir, RepoURL: o.url, Root: o.root}
	for round := 0; round < 2; round++ {
		d, err := NewDaemon(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runAndClose(ctx, d) }()
		c := NewClient(dataDir)
		var pkgs []PackageStatus
		for i := 0; i < 200; i++ {
			if pkgs, err = c.Fetch(context.Background(), "p", nil); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil || len(pkgs) != 1 {
			t.Fatalf("round %d: Fetch = %+v, %v", round, pkgs, err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("round %d: Run = %v", round, err)
		}
		cfg.Root = nil // trusted metadata is on disk
	}
	if got := o.chunkBytes.Load(); got != 1<<20 {
		t.Errorf("origin sent %d bytes over two daemon runs, want one copy (%d)", got, 1<<20)
	}
}

// TestNewDaemonWhole: NewDaemon returns a daemon that works before Run (it
// holds its data directory, answers Status and fetches); a second daemon
// on the same directory is refused at construction; Close releases the
// directory for the next daemon, which finds the package stored.
func TestNewDaemonWhole(t *testing.T) {
	o := newOrigin(t)
	o.publish(t, "p", "1.0.0", map[string]int{"f": 300_000})
	dataDir := t.TempDir()
	ctx := context.Background()
	d, err := NewDaemon(ctx, Config{DataDir: dataDir, RepoURL: o.url, Root: o.root})
	if err != nil {
		t.Fatal(err)
	}
	if d2, err := NewDaemon(ctx, Config{DataDir: dataDir, RepoURL: o.url, Root: o.root}); err == nil {
		d2.Close()
		t.Fatal("a second NewDaemon on a held data directory succeeded")
	}
	infos, err := d.Fetch(ctx, "p", nil)
	if err != nil || len(infos) != 1 || infos[0].State != "complete" {
		t.Fatalf("Fetch before Run = %+v, %v; want p complete", infos, err)
	}
	if st, err := d.Status(); err != nil || len(st.Packages) != 1 || st.BytesFromOrigin != 300_000 {
		t.Fatalf("Status before Run = %+v, %v; want p and 300000 bytes from the origin", st, err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if _, err := d.Fetch(ctx, "q", nil); err == nil {
		t.Error("Fetch after Close succeeded")
	}
	d, err = NewDaemon(ctx, Config{DataDir: dataDir, RepoURL: o.url})
	if err != nil {
		t.Fatalf("NewDaemon after Close = %v", err)
	}
	defer d.Close()
	if st, err := d.Status(); err != nil || len(st.Packages) != 1 || st.Packages[0].State != "complete" {
		t.Fatalf("Status of the next daemon = %+v, %v; want p complete", st, err)
	}
}
