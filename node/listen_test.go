package node

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// serverConns counts the connections the kernel holds on the server side
// of the Unix socket at path (accepted, or waiting to be): /proc/net/unix
// lists them with the socket's path and state 03 (connected).
func serverConns(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		t.Skipf("no /proc/net/unix: %v", err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 8 && f[5] == "03" && f[7] == path {
			n++
		}
	}
	return n
}

// flood opens n connections to sock: the first slow of them send the
// headers of an install request that promises a body and never send it,
// the rest send nothing. A connection the server refuses at once counts
// too: it is simply closed.
func flood(t *testing.T, sock string, n, slow int) []net.Conn {
	t.Helper()
	const hdr = "POST /v1/install HTTP/1.1\r\nHost: stork\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
	var conns []net.Conn
	for i := range n {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err != nil {
			continue // the backlog is full: the flood is refused, which is fine
		}
		conns = append(conns, c)
		if i < slow {
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte(hdr)) // fails if the server closed it already
		}
	}
	return conns
}

// TestSocketFloodDoesNotStarve: hundreds of connections on one VM's socket,
// most of them requests whose promised body never comes, the rest silent.
// Meanwhile the admin socket and another VM answer within a second every
// time; the flooded socket never holds more than its cap of connections;
// the daemon drops every one of them within its ReadTimeout (and a little
// scheduling slack); and once the flood ends its descriptors are back to
// where they were.
func TestSocketFloodDoesNotStarve(t *testing.T) {
	const readTimeout = 2 * time.Second
	o := newOrigin(t)
	o.publish(t, "hello", "1.0.0", map[string]int{"hello.txt": 100})
	c := startDaemonWith(t, o, "", func(cfg *Config) { cfg.API.ReadTimeout = readTimeout })
	ctx := context.Background()
	sockA, err := c.AddVM(ctx, VM{ID: "vmA", Allow: []string{"*"}, Root: t.TempDir(), Mode: "link", Unprivileged: true})
	if err != nil {
		t.Fatal(err)
	}
	sockB, err := c.AddVM(ctx, VM{ID: "vmB", Allow: []string{"*"}, Root: t.TempDir(), Mode: "link", Unprivileged: true})
	if err != nil {
		t.Fatal(err)
	}
	vmB := NewSocketClient(sockB)
	if _, err := vmB.VMInstalled(ctx); err != nil {
		t.Fatal(err)
	}
	baseline := openFDs()
	if baseline < 0 {
		t.Skip("no /proc/self/fd")
	}

	conns := flood(t, sockA, 300, 240)
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	checks := []struct {
		name string
		call func(context.Context) error
	}{
		{"admin status", func(ctx context.Context) error { _, err := c.Status(ctx); return err }},
		{"vmB installed", func(ctx context.Context) error { _, err := vmB.VMInstalled(ctx); return err }},
	}
	held := 0
	for end := time.Now().Add(readTimeout + time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		for _, ch := range checks {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			start := time.Now()
			err := ch.call(cctx)
			cancel()
			if err != nil {
				t.Fatalf("%s during the flood = %v after %v, want an answer within 1s", ch.name, err, time.Since(start))
			}
		}
		held = max(held, serverConns(t, sockA))
	}
	// A few more than the cap may be seen: those being refused, between
	// accept and close.
	if held > defaultConnsPerVM+4 {
		t.Errorf("vmA's socket held %d connections during the flood, want at most %d (+4 being refused)", held, defaultConnsPerVM)
	}

	// Every flood connection has been closed by the daemon: the slow
	// bodies at ReadTimeout, the silent ones at the header timeout (the
	// same), the refused ones at once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := 0
	for _, cn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = cn.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err := bufio.NewReader(cn).ReadString(0)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				mu.Lock()
				open++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if open > 0 {
		t.Errorf("%d of %d flood connections still open %v after they began, want none past ReadTimeout %v", open, len(conns), readTimeout+3*time.Second, readTimeout)
	}
	for _, cn := range conns {
		cn.Close()
	}
	conns = nil
	fds := openFDs()
	for end := time.Now().Add(5 * time.Second); fds > baseline+8 && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		fds = openFDs()
	}
	if fds > baseline+8 {
		t.Errorf("%d open descriptors after the flood, want about %d as before it", fds, baseline)
	}
	if _, err := vmB.VMInstalled(ctx); err != nil {
		t.Errorf("vmB after the flood: %v", err)
	}
}

func TestConnBudget(t *testing.T) {
	lim := APILimits{}.withDefaults()
	tests := []struct {
		name   string
		nofile uint64
		want   connBudget
	}{
		{"large limit: VMs capped", 1 << 20, connBudget{NoFile: 1 << 20, Reserve: 1 << 19, Admin: 1024, VMs: maxVMConns, PerVM: 32}},
		{"1024", 1024, connBudget{NoFile: 1024, Reserve: 512, Admin: 128, VMs: 384, PerVM: 32}},
		{"256", 256, connBudget{NoFile: 256, Reserve: 128, Admin: 32, VMs: 96, PerVM: 32}},
		{"tiny", 40, connBudget{NoFile: 40, Reserve: 20, Admin: 5, VMs: 15, PerVM: 15}},
		{"none", 0, connBudget{NoFile: 0, Reserve: 0, Admin: 1, VMs: 1, PerVM: 1}},
	}
	for _, tt := range tests {
		if got := newConnBudget(tt.nofile, lim); got != tt.want {
			t.Errorf("%s: newConnBudget(%d) = %+v, want %+v", tt.name, tt.nofile, got, tt.want)
		}
		if got := newConnBudget(tt.nofile, lim); tt.nofile > 0 && got.Reserve+uint64(got.Admin+got.VMs) > tt.nofile {
			t.Errorf("%s: budget %+v spends more than %d descriptors", tt.name, got, tt.nofile)
		}
	}
}

// TestLimitListener: over its cap, or over a budget shared with another
// listener, a connection is answered 503 busy and closed at once; a slot
// freed by a closed connection is taken again.
func TestLimitListener(t *testing.T) {
	dir, err := os.MkdirTemp("", "stork-ll-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	shared := newConnSlots(3)
	var lns []*limitListener
	for _, name := range []string{"a", "b"} {
		ln, err := net.Listen("unix", dir+"/"+name)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		lns = append(lns, newLimitListener(ln, slog.New(slog.DiscardHandler), newConnSlots(2), shared))
	}
	accepted := make(chan net.Conn, 16)
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
	}
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	}()
	dial := func(name string) net.Conn {
		t.Helper()
		c, err := net.DialTimeout("unix", dir+"/"+name, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// busy reports whether c was refused: answered 503 and closed.
	busy := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		b, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false
		}
		return strings.HasPrefix(string(b), "HTTP/1.1 503") && strings.Contains(string(b), `"code":"busy"`)
	}
	take := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(time.Second):
			t.Fatal("no connection accepted within 1s")
			return nil
		}
	}
	a1, a2 := dial("a"), dial("a")
	s1, s2 := take(), take()
	if !busy(dial("a")) {
		t.Error("third connection on a (cap 2) was not refused")
	}
	b1 := dial("b")
	take()
	if !busy(dial("b")) {
		t.Error("second connection on b was not refused with the shared budget (3) spent")
	}
	if busy(a1) || busy(a2) || busy(b1) {
		t.Error("an accepted connection was closed")
	}
	s1.Close()
	s2.Close()
	dial("b")
	take()
	if got := shared.n.Load(); got != 2 {
		t.Errorf("shared budget holds %d connections, want 2", got)
	}
}

// TestLongRequestOutlivesTimeouts: a fetch that runs for several times the
// API's read and write timeouts completes, on the admin socket and on a
// VM's: the timeouts bound each read and write, not the request.
func TestLongRequestOutlivesTimeouts(t *testing.T) {
	o := newOrigin(t)
	// Chunks of 256 KiB: a download asks the origin for Parallel of them
	// at a time (smaller chunks would get more requests).
	o.publishChunked(t, "slow", "1.0.0", 256<<10, map[string]int{"f": 8 << 18})
	o.delay.Store(int64(400 * time.Millisecond)) // 8 chunks one at a time: over 3s
	c := startDaemonWith(t, o, "", func(cfg *Config) {
		cfg.API.ReadTimeout, cfg.API.WriteTimeout = time.Second, time.Second
		cfg.Parallel = 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	lines := 0
	if _, err := c.Fetch(ctx, "slow", func(int64, int64) { lines++ }); err != nil {
		t.Fatalf("Fetch with 1s API timeouts = %v after %v", err, time.Since(start))
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("fetch took %v: too short to test timeouts of 1s", took)
	}
	t.Logf("fetch took %v with %d progress lines", time.Since(start), lines)
}

// TestClientThatStopsReadingIsDropped: a VM pipelines thousands of
// requests on one connection and never reads an answer. Once the socket's
// buffers are full the daemon's write blocks, and WriteTimeout later the
// daemon drops the connection instead of holding it (and its goroutine)
// for ever.
func TestClientThatStopsReadingIsDropped(t *testing.T) {
	const writeTimeout = time.Second
	o := newOrigin(t)
	c := startDaemonWith(t, o, "", func(cfg *Config) { cfg.API.WriteTimeout = writeTimeout })
	sock, err := c.AddVM(context.Background(), VM{ID: "vmA", Allow: []string{"*"}, Root: t.TempDir(), Mode: "link", Unprivileged: true})
	if err != nil {
		t.Fatal(err)
	}
	cn, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	reqs := []byte(strings.Repeat("GET /v1/installed HTTP/1.1\r\nHost: stork\r\n\r\n", 20000))
	written := make(chan struct{})
	go func() {
		defer close(written)
		_ = cn.SetWriteDeadline(time.Now().Add(writeTimeout + 5*time.Second))
		_, _ = cn.Write(reqs) // stops when the daemon stops reading, or drops us
	}()
	held := 1
	for end := time.Now().Add(writeTimeout + 5*time.Second); held > 0 && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		held = serverConns(t, sock)
	}
	if held > 0 {
		t.Errorf("daemon still holds the connection of a client that reads nothing %v after WriteTimeout %v", 5*time.Second, writeTimeout)
	}
	cn.Close()
	<-written
}
