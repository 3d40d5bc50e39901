package main

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storkpm/stork/node"
)

// scrape reads a /metrics page into a map from "name{labels}" (as the page
// writes it) to value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// corruptOnceOrigin serves a repository directory and flips a byte of the
// first chunk it sends.
func corruptOnceOrigin(t *testing.T, dir string) string {
	t.Helper()
	var done atomic.Bool
	fs := http.FileServer(http.Dir(dir))
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/chunks/") && done.CompareAndSwap(false, true) {
			b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/"))))
			if err != nil {
				http.NotFound(w, r)
				return
			}
			b[len(b)/2] ^= 0xff
			_, _ = w.Write(b)
			return
		}
		fs.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

// The metrics an operator alerts on move with what the daemons do: a
// fetch through an origin that corrupts one chunk, an install, then a
// second daemon fetching from the first through the swarm.
func TestMetricsMove(t *testing.T) {
	r := newRepo(t)
	src := sampleTree(t, 6<<20, 5)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", "1.0.0", "--chunk-size", "256K", src)
	url := corruptOnceOrigin(t, r.dir)
	dataA, dataB := shortTempDir(t), shortTempDir(t)
	addrA, addrB := freeLoopbackAddr(t), freeLoopbackAddr(t)
	a := startDaemonProc(t, dataA, url, r.root, "--metrics", addrA, "--upload-rate", "6M")

	m0 := scrape(t, addrA)
	for _, k := range []string{
		`stork_node_chunks_total{result="verified",source="origin"}`, `stork_node_chunks_total{result="failed",source="origin"}`,
		`stork_node_downloads_total{result="complete"}`, `stork_node_downloads_active`, `stork_node_install_seconds_count`,
		`stork_store_objects`, `stork_store_object_bytes`, `stork_node_metadata_version`,
		`stork_node_origin_chunk_requests_total`, `stork_node_origin_fallbacks_total`, `stork_node_pull_streams_total`,
		`stork_node_pulls_given_up_total{outcome="silent"}`,
		`stork_node_pulls_origin_down_total{when="waited"}`, `stork_node_pulls_origin_down_total{when="at_once"}`,
		`stork_node_file_pulls_total{result="taken"}`, `stork_node_file_pulls_total{result="failed"}`,
	} {
		if v, ok := m0[k]; !ok || v != 0 {
			t.Errorf("before any fetch: %s = %v (present %v), want 0", k, v, ok)
		}
	}
	before := float64(time.Now().Unix())
	view := t.TempDir()
	stork(t, "vm", "add", "--data", dataA, "guest", "--allow", "*", "--root", view, "--unprivileged")
	stork(t, "install", "--data", dataA, "--vm", "guest", "--mode", "link", "p")
	compareStoreView(t, src, filepath.Join(view, "p"))
	m1 := scrape(t, addrA)
	moved := []struct {
		key      string
		min, max float64
	}{
		{`stork_node_chunks_total{result="verified",source="origin"}`, 25, 1e9},
		{`stork_node_chunks_total{result="failed",source="origin"}`, 1, 1},
		{`stork_node_downloads_total{result="complete"}`, 1, 1},
		{`stork_node_downloads_active`, 0, 0},
		{`stork_node_install_seconds_count`, 1, 1},
		{`stork_store_objects`, 5, 1e9},
		{`stork_store_object_bytes`, 6 << 20, 7 << 20},
		{`stork_node_metadata_version`, 1, 1e9},
		{`stork_node_metadata_refresh_timestamp_seconds`, before - 1, before + 60},
		// A lone host: every chunk asked of the origin (the corrupted
		// one twice), none of them a fallback.
		{`stork_node_origin_chunk_requests_total`, 25, 1e9},
		{`stork_node_origin_fallbacks_total`, 0, 0},
		// Nobody to ask for a file.
		{`stork_node_file_pulls_total{result="taken"}`, 0, 0},
		{`stork_node_file_pulls_total{result="failed"}`, 0, 0},
	}
	for _, m := range moved {
		if v, ok := m1[m.key]; !ok || v < m.min || v > m.max {
			t.Errorf("after fetch and install: %s = %v (present %v), want in [%v, %v]", m.key, v, ok, m.min, m.max)
		}
	}

	st, err := node.NewClient(dataA).Status(context.Background())
	if err != nil || len(st.Addrs) == 0 {
		t.Fatalf("status of the first daemon: %+v, %v", st, err)
	}
	if got, want := float64(st.Pulls.OriginFetches), m1[`stork_node_origin_chunk_requests_total`]; got < want {
		t.Errorf("status pulls.origin_fetches = %v, want the metric's %v or more", got, want)
	}
	b := startDaemonProc(t, dataB, url, r.root, "--metrics", addrB, "--bootstrap", st.Addrs[0])
	stork(t, "fetch", "--data", dataB, "p")
	mb := scrape(t, addrB)
	if v := mb[`stork_node_chunks_total{result="verified",source="peers"}`]; v < 1 {
		t.Errorf("second daemon: chunks verified from peers = %v, want some", v)
	}
	if v := mb[`stork_node_peers`]; v < 1 {
		t.Errorf("second daemon: stork_node_peers = %v, want the first daemon", v)
	}
	if v := mb[`stork_node_dht_lookup_seconds_count{result="found"}`]; v < 1 {
		t.Errorf("second daemon: DHT lookups that found a provider = %v, want at least 1", v)
	}
	b.stop(t)
	a.stop(t)
}

// shortTempDir is a data directory with a path short enough for its
// sockets (108 bytes at most).
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "stork-m-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
