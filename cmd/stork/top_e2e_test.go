package main

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/storkpm/stork/node"
)

// tmux runs a tmux command on the test's own server (socket name sock).
func tmux(t *testing.T, sock string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tmux", append([]string{"-L", sock}, args...)...)
	cmd.Env = append(os.Environ(), "TERM=xterm-256color")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// stork top as a person sees it: in a terminal (tmux), against a daemon
// downloading from a peer and a rate-capped origin. The screen shows the
// peer, the download with its progress and its peers/origin split, and
// non-zero rates; q quits.
func TestTopInTerminal(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux not installed (apt-get install tmux): stork top is not tested in a terminal")
	}
	r := newRepo(t)
	src := sampleTree(t, 12<<20, 5)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "big", "--version", "1.0.0", "--chunk-size", "128K", src)
	fast := serve(t, r.dir)
	slow, _ := serveProc(t, r.dir, "--rate", "256K")
	dataA, dataB := shortTempDir(t), shortTempDir(t)
	a := startDaemonProc(t, dataA, fast, r.root, "--upload-rate", "512K")
	stork(t, "fetch", "--data", dataA, "big")
	st, err := node.NewClient(dataA).Status(context.Background())
	if err != nil || len(st.Addrs) == 0 {
		t.Fatalf("first daemon: %+v, %v", st, err)
	}
	b := startDaemonProc(t, dataB, slow, r.root, "--bootstrap", st.Addrs[0])
	fetch := exec.Command(storkBin, "fetch", "--data", dataB, "big")
	if err := fetch.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fetch.Process.Kill(); _ = fetch.Wait() }()

	sock := "stork-top-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + time.Now().Format("150405.000")
	t.Cleanup(func() { _, _ = tmux(t, sock, "kill-server") })
	if out, err := tmux(t, sock, "new-session", "-d", "-s", "top", "-x", "150", "-y", "30",
		"STORK_CONFIG=/dev/null "+storkBin+" top --data "+dataB); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	rate := regexp.MustCompile(`download [0-9.]+ [KMG]iB/s \(peers [0-9.]+ [KMG]?i?B/s, origin [0-9.]+ [KMG]?i?B/s\)`)
	row := regexp.MustCompile(`big@1\.0\.0 +\[#*\.*\] +[0-9]+% +[0-9.]+ [KMG]?i?B/[0-9.]+ MiB +1 `)
	var screen string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		screen, _ = tmux(t, sock, "capture-pane", "-p", "-t", "top")
		if strings.Contains(screen, " 1 peers") && strings.Contains(screen, "DOWNLOADS (1)") && rate.MatchString(screen) && row.MatchString(screen) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("stork top in tmux:\n%s", screen)
	for _, want := range []string{"stork top  " + dataB, " 1 peers", "metadata v", "DOWNLOADS (1)", "offload "} {
		if !strings.Contains(screen, want) {
			t.Errorf("screen lacks %q:\n%s", want, screen)
		}
	}
	if !rate.MatchString(screen) {
		t.Errorf("screen shows no download rate above zero:\n%s", screen)
	}
	if !row.MatchString(screen) {
		t.Errorf("screen shows no progress row for big@1.0.0 with one peer:\n%s", screen)
	}
	if _, err := tmux(t, sock, "send-keys", "-t", "top", "q"); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := tmux(t, sock, "has-session", "-t", "top"); err != nil {
			break // stork top exited, and its window with it
		}
		if time.Now().After(end) {
			screen, _ = tmux(t, sock, "capture-pane", "-p", "-t", "top")
			t.Fatalf("stork top still runs 5s after q:\n%s", screen)
		}
	}
	b.stop(t)
	a.stop(t)
}
