package swarm_test

import (
	"bufio"
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// TestSwarmSmallPackageSessionsAreCheap: a peer opens a session for each
// of many one-chunk packages a seeder holds (an upgrade of small
// packages). Each session's goroutines are bounded by the package's
// chunks, not by the deliver and upload worker pools sized for large
// packages. Not parallel: it counts the process's goroutines.
func TestSwarmSmallPackageSessionsAreCheap(t *testing.T) {
	const npkg = 24
	c := newCluster(t, transfertest.LinkShape{})
	seeder := c.add("seeder", nil, nil)
	var pkgs []*testPackage
	for k := range npkg {
		p := newTestPackage(t, uint64(100+k), 64<<10, 3000)
		seeder.seed(p)
		pkgs = append(pkgs, p)
	}
	raw := c.net.Node("asker", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	runtime.GC()
	before := runtime.NumGoroutine()
	var streams []swarm.Stream
	defer func() {
		for _, st := range streams {
			st.Reset()
		}
	}()
	for _, p := range pkgs {
		st, err := raw.OpenStream(ctx, seeder.id)
		if err != nil {
			t.Fatalf("OpenStream: %v", err)
		}
		streams = append(streams, st)
		bw := bufio.NewWriter(st)
		if err := swarm.WriteMessage(bw, &swarm.Message{Type: swarm.MsgHello, Manifest: p.c}); err != nil || bw.Flush() != nil {
			t.Fatalf("write hello: %v", err)
		}
		// The seeder's Have: its session is up.
		m, err := swarm.ReadMessage(bufio.NewReader(st), swarm.WireLimits{})
		if err != nil || m.Type != swarm.MsgHave {
			t.Fatalf("first message from the seeder = %v, %v; want Have", m, err)
		}
	}
	// Per session: the stream handler's reader, its writer, one deliver
	// worker and one upload reader, plus the in-memory stream's own.
	perSession := float64(runtime.NumGoroutine()-before) / npkg
	if perSession > 12 {
		t.Fatalf("%d sessions of one-chunk packages: %.1f goroutines each, want at most 12", npkg, perSession)
	}
	t.Logf("%.1f goroutines per session of a one-chunk package", perSession)
}
