package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/storkpm/stork/node"
)

// startRepoServe runs `stork repo serve` (with extra flags) on a free
// loopback port and returns its URL and the process.
func startRepoServe(t *testing.T, dir string, extra ...string) (string, *exec.Cmd) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(storkBin, append([]string{"repo", "serve", "--dir", dir, "--listen", addr}, extra...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	})
	url := "http://" + addr
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(url + "/metadata/timestamp.json"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url, cmd
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stork repo serve did not answer on %s within 20s", url)
		}
	}
}

// TestOriginStoppedPeersServe: a `stork repo serve` origin is killed once
// the first daemon holds the package; a second daemon process, trusting
// only the initial root, resolves, fetches and installs it (and its
// dependency) through the CLI from its peer alone, bit-exact.
func TestOriginStoppedPeersServe(t *testing.T) {
	r := newRepo(t)
	lib := sampleTree(t, 2<<20, 10)
	app := sampleTree(t, 1<<20, 5)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "lib", "--version", "1.0.0", lib)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "app", "--version", "1.0.0", "--depends", "lib>=1", app)
	url, serve := startRepoServe(t, r.dir)
	var datas []string
	for range 2 {
		d, err := os.MkdirTemp("", "stork-origin-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(d)
		datas = append(datas, d)
	}
	startDaemonProc(t, datas[0], url, r.root)
	stork(t, "fetch", "--data", datas[0], "app")
	st, err := node.NewClient(datas[0]).Status(context.Background())
	if err != nil || len(st.Addrs) == 0 {
		t.Fatalf("first daemon status = %+v, %v", st, err)
	}

	_ = serve.Process.Signal(syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := http.Get(url + "/metadata/timestamp.json"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the origin still answers after SIGKILL")
		}
	}

	second := startDaemonProc(t, datas[1], url, r.root, "--bootstrap", st.Addrs[0])
	view := t.TempDir()
	stork(t, "vm", "add", "--data", datas[1], "check", "--allow", "*", "--root", view, "--unprivileged")
	if _, errOut, err := storkRun(t, "install", "--data", datas[1], "--vm", "check", "--mode", "link", "app", "--into", view); err != nil {
		t.Fatalf("install with the origin stopped: %v\n%s", err, errOut)
	}
	compareStoreView(t, app, filepath.Join(view, "app"))
	compareStoreView(t, lib, filepath.Join(view, "lib"))
	var got node.Status
	if err := json.Unmarshal([]byte(stork(t, "status", "--data", datas[1], "--json")), &got); err != nil {
		t.Fatal(err)
	}
	if got.BytesFromOrigin != 0 || got.BytesFromPeers == 0 {
		t.Errorf("status: %d bytes from the origin, %d from peers; want all from peers", got.BytesFromOrigin, got.BytesFromPeers)
	}
	second.stop(t)
}

// TestRepoRefreshTimestampLifetime: `repo refresh --expires timestamp=36h`
// re-signs the timestamp to live 36 hours, and keeps signing it so.
func TestRepoRefreshTimestampLifetime(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	expires := func() time.Time {
		b, err := os.ReadFile(filepath.Join(r.dir, "metadata", "timestamp.json"))
		if err != nil {
			t.Fatal(err)
		}
		var ts struct {
			Signed struct {
				Expires time.Time `json:"expires"`
			} `json:"signed"`
		}
		if err := json.Unmarshal(b, &ts); err != nil {
			t.Fatal(err)
		}
		return ts.Signed.Expires
	}
	for _, args := range [][]string{{"--expires", "timestamp=36h"}, nil} {
		stork(t, append([]string{"repo", "refresh", "--dir", r.dir, "--key", r.key}, args...)...)
		if got := time.Until(expires()); got < 35*time.Hour || got > 36*time.Hour {
			t.Errorf("repo refresh %v: timestamp expires in %v, want 36h", args, got.Round(time.Minute))
		}
	}
	if _, errOut, err := storkRun(t, "repo", "refresh", "--dir", r.dir, "--key", r.key, "--expires", "chunks=1h"); err == nil {
		t.Error("repo refresh --expires chunks=1h succeeded, want an error")
	} else if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("error is not one line: %q", errOut)
	}
}

// TestOriginDeadlineFromConfigFile: repo.origin-deadline set in the
// configuration file reaches the daemon. With its origin killed in the
// middle of a download that no peer can serve, the fetch fails once that
// deadline passes, naming the origin, instead of after the default 10m.
func TestOriginDeadlineFromConfigFile(t *testing.T) {
	r := newRepo(t)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "big", "--version", "1.0.0", sampleTree(t, 8<<20, 0))
	url, serve := startRepoServe(t, r.dir, "--rate", "1M")
	data, err := os.MkdirTemp("", "stork-deadline-") // short: the daemon's sockets live below it
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(data)
	conf := filepath.Join(t.TempDir(), "stork.toml")
	if err := os.WriteFile(conf, []byte("[repo]\norigin-deadline = \"2s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startDaemonProc(t, data, url, r.root, "--config", conf)

	type result struct {
		errOut string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		_, errOut, err := storkRun(t, "fetch", "--data", data, "big")
		done <- result{errOut, err}
	}()
	c := node.NewClient(data)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err := c.Status(context.Background())
		if err == nil && len(st.Downloads) == 1 && st.Downloads[0].Have > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no download under way within 30s: %+v, %v", st, err)
		}
	}
	_ = serve.Process.Signal(syscall.SIGKILL)
	select {
	case res := <-done:
		if res.err == nil {
			t.Fatal("fetch succeeded with the origin killed mid-download and no peer")
		}
		if host := strings.TrimPrefix(url, "http://"); !strings.Contains(res.errOut, host) {
			t.Errorf("fetch error = %q, want it to name the origin %s", res.errOut, host)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the fetch still waits 60s after the origin died; the 2s origin-deadline of the configuration file was not applied")
	}
}
