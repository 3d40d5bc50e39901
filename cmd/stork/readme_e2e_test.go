package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tourScript returns the shell blocks of README.md's "A short tour"
// section, in order.
func tourScript(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## A short tour\n")
	if start < 0 {
		t.Fatal("README.md has no \"## A short tour\" section")
	}
	section := text[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	var blocks []string
	for {
		i := strings.Index(section, "```sh\n")
		if i < 0 {
			break
		}
		section = section[i+len("```sh\n"):]
		j := strings.Index(section, "```\n")
		if j < 0 {
			t.Fatal("README.md: unterminated ```sh block in the tour")
		}
		blocks = append(blocks, section[:j])
		section = section[j:]
	}
	if len(blocks) < 2 {
		t.Fatalf("README.md tour: %d shell blocks, want the publisher's and the host's", len(blocks))
	}
	return strings.Join(blocks, "")
}

// The README's tour runs as written, in an empty directory with stork on
// the PATH (the ports are moved to free ones, so that the test does not
// depend on 8080 and 4001 being free).
func TestReadmeTour(t *testing.T) {
	script := tourScript(t)
	web, p2p := freeLoopbackAddr(t), freeLoopbackAddr(t)
	_, p2pPort, _ := strings.Cut(p2p, ":")
	script = strings.ReplaceAll(script, "127.0.0.1:8080", web)
	script = strings.ReplaceAll(script, "/tcp/4001", "/tcp/"+p2pPort)

	dir, err := os.MkdirTemp("", "stork-tour-") // short: the daemon's sockets live below it
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-u", "-o", "pipefail", "-x", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(storkBin)+":"+os.Getenv("PATH"), "HOME="+dir, "STORK_CONFIG=/dev/null")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	// Whatever the tour left running (it stops both servers itself) goes
	// with its process group.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err != nil {
		logs := ""
		for _, f := range []string{"serve.log", "daemon.log"} {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			logs += fmt.Sprintf("\n--- %s:\n%s", f, b)
		}
		t.Fatalf("the README tour failed: %v\n%s%s", err, out.String(), logs)
	}
	for _, want := range []string{"hello", "added alice-hello@1.0.0", "tools@0.1.0 with 1 dependencies:", "vm web1 registered", "daemon stopped", "verified"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the tour's output lacks %q:\n%s", want, out.String())
		}
	}
}
