package node

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// logSink collects a daemon's log lines (text handler, Info and above).
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func newLogSink() (*logSink, *slog.Logger) {
	l := &logSink{}
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count returns how many lines at level hold msg.
func (l *logSink) count(level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.Contains(line, "level="+level) && strings.Contains(line, msg) {
			n++
		}
	}
	return n
}

// sameFiles fails the test unless every file of src is in dir, bit-exact.
func sameFiles(t *testing.T, src, dir string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want the %d-byte original", rel, len(got), err, len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOriginDownPeersServeEverything: once one host holds a package and
// the origin is gone, a new host (trusting only the initial root)
// resolves the package and its dependency, fetches and installs them
// from its peer alone: metadata, manifests and chunks, bit-exact. A host
// that learnt it all from peers serves it on in turn.
func TestOriginDownPeersServeEverything(t *testing.T) {
	ctx := context.Background()
	o := newOrigin(t)
	libSrc := o.publish(t, "lib", "1.0.0", map[string]int{"lib.so": 3 << 20})
	appSrc := o.publish(t, "app", "2.0.0", map[string]int{"bin/app": 1 << 20, "share/doc": 999}, "lib>=1")
	seed := startSwarmNode(t, o, nil)
	if _, err := seed.c.Fetch(ctx, "app", nil); err != nil {
		t.Fatal(err)
	}
	o.down.Store(true)

	logs, logger := newLogSink()
	a := startSwarmNodeWith(t, o, seed.addrs(t), func(c *Config) { c.Logger = logger })
	view := filepath.Join(t.TempDir(), "view")
	addVM(t, a.c, "vm", view)
	insts, err := a.c.Install(ctx, InstallRequest{VM: "vm", Ref: "app", Into: view, Mode: "link"}, nil)
	if err != nil {
		t.Fatalf("Install(app) with the origin down = %v", err)
	}
	if len(insts) != 2 {
		t.Fatalf("Install(app) = %+v, want app and lib", insts)
	}
	sameFiles(t, appSrc, filepath.Join(view, "app"))
	sameFiles(t, libSrc, filepath.Join(view, "lib"))
	st, err := a.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesFromOrigin != 0 || st.BytesFromPeers < 4<<20 {
		t.Errorf("status: %d bytes from the origin, %d from peers; want none and all", st.BytesFromOrigin, st.BytesFromPeers)
	}
	if o.downReqs.Load() == 0 {
		t.Error("the origin was never asked: the test proves nothing")
	}
	if n := logs.count("WARN", "origin unreachable: repository metadata"); n != 1 {
		t.Errorf("%d warnings of the origin outage for metadata, want 1\n%s", n, logs.buf.String())
	}

	seed.stop(t)
	b := startSwarmNode(t, o, a.addrs(t))
	if _, err := b.c.Fetch(ctx, "app", nil); err != nil {
		t.Fatalf("Fetch(app) from a host that learnt it from peers = %v", err)
	}
}

// startOutage starts fetching a package of 64 chunks from a slow origin on
// a lone swarm node, and stops the origin once part of it has arrived.
func startOutage(t *testing.T, mod func(*Config)) (*origin, *swarmNode, *logSink, string, chan error) {
	t.Helper()
	o := newOrigin(t)
	src := o.publishChunked(t, "p", "1.0.0", 64<<10, map[string]int{"f": 4 << 20})
	o.delay.Store(int64(50 * time.Millisecond))
	logs, logger := newLogSink()
	n := startSwarmNodeWith(t, o, nil, func(c *Config) {
		c.Logger = logger
		if mod != nil {
			mod(c)
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := n.c.Fetch(context.Background(), "p", nil)
		done <- err
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if o.chunkBytes.Load() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no chunk from the origin within 30s")
		}
	}
	o.down.Store(true)
	return o, n, logs, src, done
}

// TestOriginOutageMidDownload: the origin stops while a package downloads
// and no peer holds the rest. Status shows the download waiting for the
// origin and since when (in its package and in its running download), so
// does a metric, the log warns once, and the download completes,
// bit-exact, once the origin is back, without a restart.
func TestOriginOutageMidDownload(t *testing.T) {
	reg := prometheus.NewRegistry()
	o, n, logs, src, done := startOutage(t, func(c *Config) { c.Metrics = reg })
	var waiting PackageStatus
	var running []DownloadStatus
	for deadline := time.Now().Add(30 * time.Second); waiting.WaitingOriginSince == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("status never showed the download waiting for the origin; last %+v", waiting)
		}
		select {
		case err := <-done:
			t.Fatalf("Fetch ended while the origin was down: %v", err)
		default:
		}
		st, err := n.c.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Packages {
			if p.Name == "p" {
				waiting = p
			}
		}
		running = st.Downloads
	}
	if waiting.State != StateWaitingOrigin || waiting.Have <= 0 || waiting.Have >= waiting.Size {
		t.Errorf("status of the waiting package = %+v, want state %s with part of it held", waiting, StateWaitingOrigin)
	}
	if len(running) != 1 || running[0].Name != "p" || running[0].WaitingOriginSince == nil ||
		!running[0].WaitingOriginSince.Equal(*waiting.WaitingOriginSince) {
		t.Errorf("status downloads = %+v, want p waiting for the origin since %v", running, waiting.WaitingOriginSince)
	}
	if g := gauge(t, reg, "stork_node_downloads_waiting_origin", ""); g != 1 {
		t.Errorf("stork_node_downloads_waiting_origin = %v while p waits, want 1", g)
	}
	time.Sleep(time.Second) // several probes fail
	if w := logs.count("WARN", "origin unreachable: downloads"); w != 1 {
		t.Errorf("%d warnings of the outage, want 1\n%s", w, logs.buf.String())
	}
	o.down.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Fetch after the origin came back = %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the download did not resume within 60s of the origin's return")
	}
	view := filepath.Join(t.TempDir(), "view")
	addVM(t, n.c, "vm", view)
	if _, err := n.c.Install(context.Background(), InstallRequest{VM: "vm", Ref: "p", Into: view, Mode: "link"}, nil); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, src, filepath.Join(view, "p"))
	st, _ := n.c.Status(context.Background())
	for _, p := range st.Packages {
		if p.State != "complete" || p.WaitingOriginSince != nil {
			t.Errorf("after the download: %+v, want complete and not waiting", p)
		}
	}
	if len(st.Downloads) != 0 {
		t.Errorf("after the download: downloads %+v, want none", st.Downloads)
	}
	if g := gauge(t, reg, "stork_node_downloads_waiting_origin", ""); g != 0 {
		t.Errorf("stork_node_downloads_waiting_origin = %v after the download, want 0", g)
	}
}

// TestOriginOutageDeadline: with a short origin deadline the download
// fails, and the error names the origin.
func TestOriginOutageDeadline(t *testing.T) {
	o, _, _, _, done := startOutage(t, func(c *Config) { c.OriginDeadline = 500 * time.Millisecond })
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), o.url) || !strings.Contains(err.Error(), "origin unavailable") {
			t.Fatalf("Fetch with the origin gone = %v, want an error naming the origin %s", err, o.url)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the download neither failed nor ended within 60s")
	}
}

// TestBadPeerFilesRefused: a peer that answers /stork/files with an older
// timestamp, forged metadata and manifests that are not their CID's is
// refused; the host takes the good peer's copies, and with the bad peer
// as its only source it keeps its trusted state.
func TestBadPeerFilesRefused(t *testing.T) {
	ctx := context.Background()
	o := newOrigin(t)
	o.publish(t, "p", "1.0.0", map[string]int{"f": 1 << 20})
	oldTS, err := os.ReadFile(filepath.Join(o.dir, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	keeper := startSwarmNode(t, o, nil) // trusts the state with 1.0.0 only
	if _, err := keeper.c.Fetch(ctx, "p", nil); err != nil {
		t.Fatal(err)
	}
	src := o.publish(t, "p", "1.1.0", map[string]int{"f": 1 << 20})
	seed := startSwarmNode(t, o, nil)
	if _, err := seed.c.Fetch(ctx, "p", nil); err != nil {
		t.Fatal(err)
	}
	o.down.Store(true)

	var served sync.Map
	lies := func(p string, maxLen int64) ([]byte, error) {
		served.Store(p, true)
		switch {
		case p == "metadata/timestamp.json":
			return oldTS, nil
		case strings.HasPrefix(p, "manifests/"):
			return []byte(`{"stork_manifest":1,"chunk_size":1048576,"entries":[]}`), nil
		}
		return []byte(`{"signed":{"_type":"snapshot","version":1},"signatures":[]}`), nil
	}
	bad := testP2P(t, func(c *P2PConfig) { c.Listen = []string{"/ip4/127.0.0.1/tcp/0"} })
	bad.SetFileServer(lies)

	n := startSwarmNode(t, o, append(bad.Addrs(), seed.addrs(t)...))
	view := filepath.Join(t.TempDir(), "view")
	addVM(t, n.c, "vm", view)
	insts, err := n.c.Install(ctx, InstallRequest{VM: "vm", Ref: "p", Into: view, Mode: "link"}, nil)
	if err != nil || len(insts) != 1 || insts[0].Version != "1.1.0" {
		t.Fatalf("Install(p) with a bad peer and a good one = %+v, %v; want 1.1.0", insts, err)
	}
	sameFiles(t, src, filepath.Join(view, "p"))
	count := 0
	served.Range(func(any, any) bool { count++; return true })
	if count == 0 {
		t.Fatal("the bad peer was never asked: the test proves nothing")
	}

	// The keeper restarts with a bad peer (one that knows no other host)
	// as its only source: it keeps what it trusts and still serves from it.
	keeper.stop(t)
	alone := testP2P(t, func(c *P2PConfig) { c.Listen = []string{"/ip4/127.0.0.1/tcp/0"} })
	alone.SetFileServer(lies)
	d, err := NewDaemon(context.Background(), Config{DataDir: keeper.data, RepoURL: o.url, P2P: &P2PConfig{
		DataDir: keeper.data, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: alone.Addrs(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- runAndClose(runCtx, d) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("keeper Run = %v", err)
		}
	}()
	kc := NewClient(keeper.data)
	var pkgs []PackageStatus
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if pkgs, err = kc.Fetch(ctx, "p", nil); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || len(pkgs) != 1 || pkgs[0].Version != "1.0.0" {
		t.Fatalf("keeper Fetch(p) with only the bad peer = %+v, %v; want 1.0.0 from its trusted state", pkgs, err)
	}
	if got, _ := os.ReadFile(filepath.Join(keeper.data, "tuf", "timestamp.json")); !bytes.Equal(got, oldTS) {
		t.Error("the keeper's trusted timestamp changed")
	}
}

// runNodeAt runs a swarm daemon on dataDir (kept) until stop is called or
// the test ends, bootstrapping to boot, with mod applied to its Config.
func runNodeAt(t *testing.T, o *origin, dataDir string, boot []string, mod func(*Config)) (c *Client, stop func()) {
	t.Helper()
	cfg := Config{DataDir: dataDir, RepoURL: o.url, RefreshInterval: time.Hour, P2P: &P2PConfig{
		DataDir: dataDir, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: boot,
	}}
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
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("daemon Run = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	c = NewClient(dataDir)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, err := c.Status(context.Background()); err == nil && st.PeerID != "" {
			return c, stop
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon did not answer within 20s")
		}
	}
}

// TestPeerMetadataDefencesAcrossRestart: a host that got its metadata from
// peers alone, restarted, refuses a rolled-back origin (rollback) and,
// once its timestamp has expired with nobody offering a newer one, refuses
// to act (freeze), as it would had the metadata come from the origin.
func TestPeerMetadataDefencesAcrossRestart(t *testing.T) {
	ctx := context.Background()
	o := newOrigin(t)
	o.publish(t, "p", "1.0.0", map[string]int{"f": 100_000})
	oldTS, err := os.ReadFile(filepath.Join(o.dir, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	o.publish(t, "p", "1.1.0", map[string]int{"f": 100_000})
	seed := startSwarmNode(t, o, nil)
	if _, err := seed.c.Fetch(ctx, "p", nil); err != nil {
		t.Fatal(err)
	}
	o.down.Store(true)
	data, err := os.MkdirTemp("", "stork-defences-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(data)
	c, stop := runNodeAt(t, o, data, seed.addrs(t), func(c *Config) { c.Root = o.root })
	if pkgs, err := c.Fetch(ctx, "p", nil); err != nil || pkgs[0].Version != "1.1.0" {
		t.Fatalf("Fetch(p) from peers alone = %+v, %v", pkgs, err)
	}
	stop()

	// The origin is back, rolled back to the timestamp before 1.1.0.
	if err := os.WriteFile(filepath.Join(o.dir, "metadata", "timestamp.json"), oldTS, 0o644); err != nil {
		t.Fatal(err)
	}
	o.down.Store(false)
	c, stop = runNodeAt(t, o, data, nil, nil)
	if _, err := c.Fetch(ctx, "p", nil); err == nil || !strings.Contains(err.Error(), "rollback") {
		t.Errorf("Fetch(p) after a restart, origin rolled back = %v, want a rollback error", err)
	}
	stop()

	// A day later: the origin is gone, the peer offers only the timestamp
	// both trust, which has expired.
	o.down.Store(true)
	later := func() time.Time { return time.Now().Add(25 * time.Hour) }
	c, stop = runNodeAt(t, o, data, seed.addrs(t), func(c *Config) { c.Now = later })
	if _, err := c.Fetch(ctx, "p", nil); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Fetch(p) after a restart, trusted timestamp expired = %v, want an expiry error", err)
	}
	stop()
}

// TestOriginOutageFourHosts is the scenario: four hosts fetch one
// package at once and the origin dies part way. No host hangs silently:
// each shows the wait in its status, and all complete, bit-exact, once
// the origin is back.
func TestOriginOutageFourHosts(t *testing.T) {
	o := newOrigin(t)
	src := o.publishChunked(t, "p", "1.0.0", 64<<10, map[string]int{"f": 8 << 20})
	o.delay.Store(int64(40 * time.Millisecond))
	first := startSwarmNode(t, o, nil)
	nodes := []*swarmNode{first}
	for range 3 {
		nodes = append(nodes, startSwarmNode(t, o, first.addrs(t)))
	}
	done := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() {
			_, err := n.c.Fetch(context.Background(), "p", nil)
			done <- err
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); o.chunkBytes.Load() < 1<<20; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the origin sent less than 1 MiB within 30s")
		}
	}
	o.down.Store(true)
	waiting := map[int]bool{}
	for deadline := time.Now().Add(60 * time.Second); len(waiting) < len(nodes); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 60s only hosts %v showed a wait for the origin", waiting)
		}
		for i, n := range nodes {
			st, err := n.c.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range st.Packages {
				if p.State == StateWaitingOrigin && p.WaitingOriginSince != nil {
					waiting[i] = true
				}
			}
		}
		select {
		case err := <-done:
			t.Fatalf("a fetch ended while the origin was down: %v", err)
		default:
		}
	}
	down := time.Now()
	o.down.Store(false)
	for range nodes {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Fetch after the origin came back = %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("a download did not complete within 2 minutes of the origin's return")
		}
	}
	t.Logf("all four hosts complete %v after the origin's return", time.Since(down).Round(time.Millisecond))
	for i, n := range nodes {
		view := filepath.Join(t.TempDir(), "view")
		addVM(t, n.c, "vm", view)
		if _, err := n.c.Install(context.Background(), InstallRequest{VM: "vm", Ref: "p", Into: view, Mode: "link"}, nil); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		sameFiles(t, src, filepath.Join(view, "p"))
	}
}

// TestNoPeersOriginOutageWaits: a daemon without peers (Config.P2P nil)
// downloads through the same engine as one with peers, so an origin that
// starts failing mid-download (503) is waited out, shown as
// waiting_origin in status, and the download completes once the origin
// answers again.
func TestNoPeersOriginOutageWaits(t *testing.T) {
	o := newOrigin(t)
	o.publishChunked(t, "p", "1.0.0", 64<<10, map[string]int{"a.bin": 2 << 20})
	o.failAfter.Store(8)
	c := startDaemon(t, o, "")
	done := make(chan error, 1)
	go func() { _, err := c.Fetch(context.Background(), "p", nil); done <- err }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("Fetch ended while the origin failed: %v", err)
		default:
		}
		st, err := c.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Downloads) == 1 && st.Downloads[0].WaitingOriginSince != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed the download waiting for the origin: %+v", st.Downloads)
		}
	}
	o.failAfter.Store(0)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Fetch after the origin answered again = %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the download did not resume within 60s of the origin's return")
	}
	if got := o.chunkBytes.Load(); got != 2<<20 {
		t.Errorf("origin sent %d chunk bytes, want one copy (%d)", got, 2<<20)
	}
}
