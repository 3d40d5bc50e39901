package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/storkpm/stork/node"
)

// TestFloodWithFewDescriptors: a daemon limited to 256 file descriptors
// (RLIMIT_NOFILE, soft and hard) and a VM that opens 400 connections on
// its socket, each sending the headers of a request whose body never
// comes. The daemon keeps descriptors for its store and swarm and for the
// admin: the admin socket and another VM answer within a second, again
// and again, while the flood lasts.
func TestFloodWithFewDescriptors(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("no prlimit(1) to start the daemon with few descriptors")
	}
	r := newRepo(t)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "tool", "--version", "1.0.0", sampleTree(t, 1000, 3))
	url := serve(t, r.dir)
	data, err := os.MkdirTemp("", "stork-flood-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(data)

	args := append([]string{"--nofile=256:256", storkBin, "daemon", "--data", data, "--repo", url, "--root", r.root, "--refresh-interval", "1h"}, loopback...)
	cmd := exec.Command(prlimit, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{cmd: cmd, data: data, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	defer p.kill()
	admin := node.NewClient(data)
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, err := admin.Status(context.Background()); err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("daemon did not answer within 30s")
		}
	}
	stork(t, "vm", "add", "--data", data, "flooder", "--allow", "*", "--mode", "link", "--unprivileged")
	stork(t, "vm", "add", "--data", data, "quiet", "--allow", "*", "--mode", "link", "--unprivileged")
	quiet := node.NewSocketClient(node.VMSocketPath(data, "quiet"))

	const hdr = "POST /v1/install HTTP/1.1\r\nHost: stork\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 400 {
		c, err := net.DialTimeout("unix", node.VMSocketPath(data, "flooder"), time.Second)
		if err != nil {
			continue // refused: fine
		}
		conns = append(conns, c)
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte(hdr))
	}
	time.Sleep(200 * time.Millisecond)
	for range 10 {
		for name, call := range map[string]func(context.Context) error{
			"admin status":    func(ctx context.Context) error { _, err := admin.Status(ctx); return err },
			"quiet installed": func(ctx context.Context) error { _, err := quiet.VMInstalled(ctx); return err },
		} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			start := time.Now()
			err := call(ctx)
			cancel()
			if err != nil {
				t.Fatalf("%s during the flood = %v after %v, want an answer within 1s", name, err, time.Since(start))
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := quiet.VMInstall(context.Background(), "tool", nil); err != nil {
		t.Errorf("quiet install during the flood: %v", err)
	}
	p.stop(t)
}
