package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/storkpm/stork/node"
)

// slowOrigin serves a repository directory, delaying every chunk, and counts
// the chunk bytes it sends.
type slowOrigin struct {
	url        string
	chunkBytes atomic.Int64
	// reqs counts the requests for each path (string to *atomic.Int64).
	reqs sync.Map
	// serial, set before the first request: chunk requests are served
	// one at a time, each after the delay, so a download's time has a
	// floor however many requests it sends at once.
	serial bool
	mu     sync.Mutex
}

func newSlowOrigin(t *testing.T, dir string, delay time.Duration) *slowOrigin {
	t.Helper()
	o := &slowOrigin{}
	fs := http.FileServer(http.Dir(dir))
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := o.reqs.LoadOrStore(r.URL.Path, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		if strings.HasPrefix(r.URL.Path, "/chunks/") {
			if o.serial {
				o.mu.Lock()
				defer o.mu.Unlock()
			}
			time.Sleep(delay)
			b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/"))))
			if err != nil {
				http.NotFound(w, r)
				return
			}
			o.chunkBytes.Add(int64(len(b)))
			_, _ = w.Write(b)
			return
		}
		fs.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	o.url = ts.URL
	return o
}

// daemonProc is a `stork daemon` process.
type daemonProc struct {
	cmd    *exec.Cmd
	data   string
	done   chan error
	stderr *bytes.Buffer // what the daemon wrote, kept for a failure's report
}

// loopback keeps a test daemon's libp2p host on 127.0.0.1, NAT traversal off.
var loopback = []string{"--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--no-nat"}

func startDaemonProc(t *testing.T, data, repoURL, root string, extra ...string) *daemonProc {
	t.Helper()
	return startDaemonProcEnv(t, nil, data, repoURL, root, extra...)
}

// startDaemonProcEnv is startDaemonProc with env (NAME=value) added to
// the daemon's environment (STORK_DEBUG=1: its log at debug level).
func startDaemonProcEnv(t *testing.T, env []string, data, repoURL, root string, extra ...string) *daemonProc {
	t.Helper()
	args := append([]string{"daemon", "--data", data, "--repo", repoURL, "--root", root, "--refresh-interval", "1h"}, loopback...)
	cmd := exec.Command(storkBin, append(args, extra...)...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	stderr := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = nil, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{cmd: cmd, data: data, done: make(chan error, 1), stderr: stderr}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.kill() })
	c := node.NewClient(data)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Status(context.Background()); err == nil {
			return p
		}
		select {
		case err := <-p.done:
			t.Fatalf("daemon exited at start: %v\n%s", err, stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon did not answer within 30s")
		}
	}
}

func (p *daemonProc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

func (p *daemonProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("daemon exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		// SIGQUIT makes the Go runtime print every goroutine's stack:
		// what the daemon was waiting for.
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.kill()
		}
		out := ""
		if p.stderr != nil {
			out = p.stderr.String()
		}
		if len(out) > 64<<10 {
			out = out[len(out)-64<<10:]
		}
		t.Errorf("daemon did not stop within 20s of SIGTERM; its stderr ends:\n%s", out)
	}
}

// TestKillNineDuringDownload kills the daemon with SIGKILL at random points
// of a download, over and over, with and without checkpoints (the store's
// files made durable every second, or at each step): every time the store must open, every
// object must verify, and the download must resume without re-fetching what
// was verified; in the end the package is complete and bit-exact.
func TestKillNineDuringDownload(t *testing.T) {
	trials := 20
	if s := os.Getenv("STORK_SOAK_TRIALS"); s != "" {
		fmt.Sscan(s, &trials)
	}
	r := newRepo(t)
	src := sampleTree(t, 8<<20+333, 40)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", "1.0.0", "--chunk-size", "64K", src)
	origin := newSlowOrigin(t, r.dir, 50*time.Millisecond)
	data, err := os.MkdirTemp("", "stork-kill-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(data)

	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	completed, killed := false, 0
	for i := 0; i < trials && !completed; i++ {
		// Every other run syncs at each step; the others make their
		// files durable by checkpoints (the default), which the kills
		// come between.
		var opts []string
		if i%2 == 1 {
			opts = append(opts, "--checkpoint", "0")
		}
		d := startDaemonProc(t, data, origin.url, r.root, opts...)
		fetchDone := make(chan error, 1)
		go func() {
			_, err := node.NewClient(data).Fetch(context.Background(), "p", nil)
			fetchDone <- err
		}()
		select {
		case err := <-fetchDone:
			if err == nil {
				completed = true // finished before the kill: the resumes did their job
			}
		case <-time.After(time.Duration(20+rng.IntN(150)) * time.Millisecond):
			killed++
		}
		d.kill()
		if out, errOut, err := storkRun(t, "verify", "--data", data); err != nil {
			t.Fatalf("trial %d: store does not verify after kill -9: %v\n%s%s", i, err, out, errOut)
		}
	}
	d := startDaemonProc(t, data, origin.url, r.root)
	if _, err := node.NewClient(data).Fetch(context.Background(), "p", nil); err != nil {
		t.Fatalf("fetch after %d kills: %v", trials, err)
	}
	out := t.TempDir()
	stork(t, "vm", "add", "--data", data, "check", "--allow", "*", "--root", out, "--unprivileged")
	stork(t, "install", "--data", data, "--vm", "check", "--mode", "link", "--into", out, "p")
	compareStoreView(t, src, filepath.Join(out, "p"))
	d.stop(t)

	// Each kill may lose at most the chunks in flight (8 parallel requests of 64 KiB).
	size := int64(8<<20 + 333 + 40*16)
	limit := size + int64(trials)*8*64<<10
	if got := origin.chunkBytes.Load(); got > limit {
		t.Errorf("origin sent %d bytes over %d killed runs for a %d-byte package, want at most %d: verified chunks were fetched again", got, trials, size, limit)
	}
	t.Logf("origin sent %d bytes for a %d-byte package; %d of %d runs killed mid-download", origin.chunkBytes.Load(), size, killed, trials)
	if killed < trials/2 {
		t.Errorf("only %d of %d runs were killed mid-download: the test no longer exercises crashes", killed, trials)
	}
}

// TestDaemonCLI drives the daemon through the CLI: vm add, install, list,
// status --json, uninstall, gc, and the errors of a missing daemon.
func TestDaemonCLI(t *testing.T) {
	r := newRepo(t)
	src := sampleTree(t, 300_000, 10)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "tool", "--version", "1.0.0", src)
	url := serve(t, r.dir)
	data, err := os.MkdirTemp("", "stork-cli-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(data)
	storkFail(t, "daemon", "status", "--data", data)

	metricsAddr := freeLoopbackAddr(t)
	d := startDaemonProc(t, data, url, r.root, "--metrics", metricsAddr)
	if fi, err := os.Stat(node.SocketPath(data)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	stork(t, "fetch", "--data", data, "tool")
	views := t.TempDir()
	for i := 0; i < 3; i++ {
		stork(t, "vm", "add", "--data", data, fmt.Sprintf("vm%d", i), "--allow", "*", "--root", filepath.Join(views, fmt.Sprint(i)), "--unprivileged")
		// the contract's order: NAME before --into
		stork(t, "install", "--data", data, "--vm", fmt.Sprintf("vm%d", i), "--mode", "link", "tool@1.0.0", "--into", filepath.Join(views, fmt.Sprint(i)))
		compareStoreView(t, src, filepath.Join(views, fmt.Sprint(i), "tool"))
	}
	status := stork(t, "status", "--data", data, "--json")
	for _, field := range []string{`"peer_id"`, `"addrs"`, `"peers"`, `"bytes_from_peers"`, `"bytes_from_origin"`, `"bytes_uploaded"`, `"packages"`, `"state": "complete"`} {
		if !strings.Contains(status, field) {
			t.Errorf("status --json lacks %s:\n%s", field, status)
		}
	}
	metrics := httpGet(t, "http://"+metricsAddr+"/metrics")
	for _, line := range []string{
		`stork_store_packages{state="complete"} 1`, "stork_store_installs 3",
		`stork_node_received_bytes_total{source="peers"} 0`, "stork_node_vms 3", "go_goroutines ", "process_resident_memory_bytes ",
	} {
		if !strings.Contains(metrics, "\n"+line) {
			t.Errorf("/metrics lacks %q:\n%s", line, metrics)
		}
	}
	if !regexp.MustCompile(`\nstork_node_received_bytes_total\{source="origin"\} [1-9]`).MatchString(metrics) {
		t.Errorf("/metrics: no origin bytes:\n%s", metrics)
	}
	if line := stork(t, "status", "--data", data); !strings.Contains(line, "1 packages (0 downloading), 3 VMs, 3 views (0 broken), metadata v") || !strings.Contains(line, " refreshed ") {
		t.Errorf("status = %q, want the packages, VMs, views and the metadata's version and age", line)
	}
	list := stork(t, "list", "--data", data)
	if !strings.Contains(list, "vm0,vm1,vm2") {
		t.Errorf("list = %q, want the three VMs using tool", list)
	}
	stork(t, "uninstall", "--data", data, "--vm", "vm1", "tool")
	storkFail(t, "vm1", "uninstall", "--data", data, "--vm", "vm1", "tool")
	storkFail(t, "nosuch", "install", "--data", data, "--vm", "vm9", "--into", filepath.Join(views, "9"), "nosuch")
	storkFail(t, "mode", "install", "--data", data, "--vm", "vm9", "--mode", "sideways", "--into", filepath.Join(views, "9"), "tool")
	// A VM registered through the CLI asks for packages through its socket.
	storkFail(t, "unprivileged", "vm", "add", "--data", data, "guest", "--allow", "to*", "--mode", "link")
	out := stork(t, "vm", "add", "--data", data, "guest", "--allow", "to*", "--mode", "link", "--unprivileged")
	if !strings.Contains(out, node.VMSocketPath(data, "guest")) {
		t.Errorf("vm add printed %q, want the VM's socket path", out)
	}
	guest := node.NewSocketClient(node.VMSocketPath(data, "guest"))
	if _, err := guest.VMInstall(context.Background(), "tool", nil); err != nil {
		t.Fatalf("guest install tool: %v", err)
	}
	compareStoreView(t, src, filepath.Join(data, "views", "guest", "tool"))
	storkFail(t, "allow", "vm", "add", "--data", data, "bad", "--allow", "a/b")
	stork(t, "vm", "remove", "--data", data, "guest")
	if _, err := os.Stat(filepath.Join(data, "views", "guest", "tool")); !os.IsNotExist(err) {
		t.Errorf("guest's view survived vm remove: %v", err)
	}

	if gc := stork(t, "gc", "--data", data); !strings.HasPrefix(gc, "removed 0 packages, ") {
		t.Errorf("gc printed %q, want a line saying what it removed", gc)
	}
	if gc := stork(t, "gc", "--data", data, "--json"); !strings.Contains(gc, `"bytes": 0`) || !strings.Contains(gc, `"in_use": []`) {
		t.Errorf("gc --json printed %s", gc)
	}
	if vms := stork(t, "vm", "list", "--data", data); !strings.HasPrefix(vms, "ID ") || !strings.Contains(vms, "\nvm0 ") || strings.Contains(vms, "{") {
		t.Errorf("vm list printed %q, want a table", vms)
	}
	if vms := stork(t, "vm", "list", "--data", data, "--json"); !strings.Contains(vms, `"id": "vm0"`) {
		t.Errorf("vm list --json printed %s", vms)
	}
	compareStoreView(t, src, filepath.Join(views, "0", "tool"))
	d.stop(t)
	stork(t, "verify", "--data", data)

	// With the daemon stopped, list and status read the data directory.
	if list := stork(t, "list", "--data", data); !strings.Contains(list, "tool") || !strings.Contains(list, "vm0,vm2") {
		t.Errorf("list with the daemon stopped = %q, want tool used by vm0 and vm2", list)
	}
	if list := stork(t, "list", "--data", data, "--vm", "vm0"); !strings.Contains(list, filepath.Join(views, "0", "tool")) || !strings.Contains(list, " ok") {
		t.Errorf("list --vm vm0 with the daemon stopped = %q, want its view of tool, ok", list)
	}
	if st := stork(t, "status", "--data", data); !strings.Contains(st, "daemon stopped") || !strings.Contains(st, "1 packages, 3 VMs, 2 views (0 broken)") {
		t.Errorf("status with the daemon stopped = %q", st)
	}
	if st := stork(t, "status", "--data", data, "--json"); !strings.Contains(st, `"offline": true`) || !strings.Contains(st, `"state": "complete"`) {
		t.Errorf("status --json with the daemon stopped = %s", st)
	}
	// The daemon starts again afterwards: the readers left nothing held.
	d = startDaemonProc(t, data, url, r.root)
	d.stop(t)
}

// TestSwarmProcesses: four `stork daemon` processes on loopback, the first
// the bootstrap of the others; all fetch one package at once through the
// swarm; every copy is exact, the origin sends little more than one copy,
// and status and peers report the swarm.
func TestSwarmProcesses(t *testing.T) {
	r := newRepo(t)
	src := sampleTree(t, 12<<20, 20)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", "1.0.0", "--chunk-size", "256K", src)
	origin := newSlowOrigin(t, r.dir, 0)
	var datas []string
	for i := 0; i < 4; i++ {
		d, err := os.MkdirTemp("", "stork-swarm-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(d)
		datas = append(datas, d)
	}
	first := startDaemonProc(t, datas[0], origin.url, r.root)
	st, err := node.NewClient(datas[0]).Status(context.Background())
	if err != nil || len(st.Addrs) == 0 || st.PeerID == "" {
		t.Fatalf("first daemon status = %+v, %v; want a peer ID and addresses", st, err)
	}
	procs := []*daemonProc{first}
	for _, d := range datas[1:] {
		procs = append(procs, startDaemonProc(t, d, origin.url, r.root, "--bootstrap", st.Addrs[0]))
	}
	// Each sees the other three before the fetches, so that all rank the
	// same members as the manifest's fetchers.
	waitProcPeers(t, datas, len(datas)-1)
	errs := make(chan error, len(datas))
	for _, d := range datas {
		go func() {
			_, err := node.NewClient(d).Fetch(context.Background(), "p", nil)
			errs <- err
		}()
	}
	for range datas {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var size, fromPeers int64
	for i, d := range datas {
		view := t.TempDir()
		stork(t, "vm", "add", "--data", d, "check", "--allow", "*", "--root", view, "--unprivileged")
		stork(t, "install", "--data", d, "--vm", "check", "--mode", "link", "p", "--into", view)
		compareStoreView(t, src, filepath.Join(view, "p"))
		st, err := node.NewClient(d).Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		size = st.Packages[0].Size
		fromPeers += st.BytesFromPeers
		if i > 0 && st.Peers == 0 {
			t.Errorf("daemon %d reports no peers", i)
		}
	}
	copies := float64(origin.chunkBytes.Load()) / float64(size)
	t.Logf("4 daemons: origin sent %.2f copies; %d bytes moved between peers", copies, fromPeers)
	if copies > 1.5 {
		t.Errorf("origin sent %.2f copies for 4 hosts, want <= 1.5", copies)
	}
	if fromPeers == 0 {
		t.Error("no bytes moved between peers")
	}
	// The manifest is fetched cooperatively: its first-ranked daemon asks
	// the origin for all (a slow member may cost one request more).
	manifests := 0
	origin.reqs.Range(func(k, v any) bool {
		if p := k.(string); strings.HasPrefix(p, "/manifests/") {
			manifests++
			if n := v.(*atomic.Int64).Load(); n > 2 {
				t.Errorf("the origin was asked %d times for %s by %d daemons, want at most 2", n, p, len(datas))
			}
		}
		return true
	})
	if manifests != 1 {
		t.Errorf("the origin served %d manifests, want 1", manifests)
	}
	if out := stork(t, "peers", "--data", datas[1]); !strings.Contains(out, "/ip4/127.0.0.1/") {
		t.Errorf("stork peers = %q, want peers on loopback", out)
	}
	for _, p := range procs {
		p.stop(t)
	}
}

// waitProcPeers waits until each daemon (by data directory) reports at
// least n peers.
func waitProcPeers(t *testing.T, datas []string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, d := range datas {
		for {
			st, err := node.NewClient(d).Status(context.Background())
			if err == nil && st.Peers >= n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("daemon %s: %d peers after 30s (%v), want %d", d, st.Peers, err, n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestSwarmPeerKilledAndRestarted: three daemons fetch together from a slow
// origin; one is killed with SIGKILL mid-transfer. The others lose a source
// and still complete; the killed one restarts, resumes from its store and
// completes too.
func TestSwarmPeerKilledAndRestarted(t *testing.T) {
	r := newRepo(t)
	src := sampleTree(t, 6<<20, 5)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", "1.0.0", "--chunk-size", "128K", src)
	// 48 chunks served one at a time, 50 ms each: the package takes the
	// overlay at least 2.4 s, so the kill at 300 ms is mid-transfer.
	origin := newSlowOrigin(t, r.dir, 50*time.Millisecond)
	origin.serial = true
	var datas []string
	for i := 0; i < 3; i++ {
		d, err := os.MkdirTemp("", "stork-kill-swarm-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(d)
		datas = append(datas, d)
	}
	first := startDaemonProc(t, datas[0], origin.url, r.root)
	st, err := node.NewClient(datas[0]).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	boot := st.Addrs[0]
	victim := startDaemonProc(t, datas[1], origin.url, r.root, "--bootstrap", boot)
	third := startDaemonProc(t, datas[2], origin.url, r.root, "--bootstrap", boot)
	errs := make([]chan error, 3)
	for i, d := range datas {
		errs[i] = make(chan error, 1)
		go func() {
			_, err := node.NewClient(d).Fetch(context.Background(), "p", nil)
			errs[i] <- err
		}()
	}
	time.Sleep(300 * time.Millisecond)
	victim.kill()
	if err := <-errs[1]; err == nil {
		t.Fatal("the victim finished before it was killed: the test did not kill it mid-transfer")
	}
	for _, i := range []int{0, 2} {
		if err := <-errs[i]; err != nil {
			t.Fatalf("daemon %d after its peer was killed: %v", i, err)
		}
	}
	victim = startDaemonProc(t, datas[1], origin.url, r.root, "--bootstrap", boot)
	if _, err := node.NewClient(datas[1]).Fetch(context.Background(), "p", nil); err != nil {
		t.Fatalf("restarted daemon: %v", err)
	}
	for _, d := range datas {
		view := t.TempDir()
		stork(t, "vm", "add", "--data", d, "check", "--allow", "*", "--root", view, "--unprivileged")
		stork(t, "install", "--data", d, "--vm", "check", "--mode", "link", "p", "--into", view)
		compareStoreView(t, src, filepath.Join(view, "p"))
	}
	for _, p := range []*daemonProc{first, victim, third} {
		p.stop(t)
	}
}

// freeLoopbackAddr returns a loopback host:port that was free a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// httpGet returns the body of a 200 response to GET url.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return string(b)
}
