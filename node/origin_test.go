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
