package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// levels returns the findings' levels and the joined messages.
func levels(fs []Finding) (map[string]int, string) {
	n := map[string]int{}
	var msgs []string
	for _, f := range fs {
		n[f.Level]++
		msgs = append(msgs, f.Level+" "+f.Message+" (fix: "+f.Fix+")")
	}
	return n, strings.Join(msgs, "\n")
}

func wantLevel(t *testing.T, what string, fs []Finding, level, substr string) {
	t.Helper()
	for _, f := range fs {
		if f.Level == level && strings.Contains(f.Message, substr) && (level == LevelOK || f.Fix != "" || level == LevelWarn) {
			return
		}
	}
	_, msgs := levels(fs)
	t.Errorf("%s: want a %s finding mentioning %q, got:\n%s", what, level, substr, msgs)
}

func TestDoctorDataDir(t *testing.T) {
	good := t.TempDir()
	if err := os.Chmod(good, 0o755); err != nil {
		t.Fatal(err)
	}
	wantLevel(t, "a good directory", CheckDataDir(good), LevelOK, "not writable by others")
	wantLevel(t, "a directory to create", CheckDataDir(filepath.Join(good, "new")), LevelOK, "creates it")

	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	wantLevel(t, "a world-writable directory", CheckDataDir(open), LevelFail, "writable by others")

	keyed := t.TempDir()
	if err := os.WriteFile(filepath.Join(keyed, "identity.key"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantLevel(t, "a readable identity key", CheckDataDir(keyed), LevelFail, "readable by others")

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wantLevel(t, "a file", CheckDataDir(file), LevelFail, "not a directory")

	if os.Geteuid() != 0 {
		t.Skip("not root: wrong owner not checked")
	}
	other := t.TempDir()
	if err := os.Chown(other, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	wantLevel(t, "another user's directory", CheckDataDir(other), LevelFail, "belongs to uid 12345")
}

// A tiny file system fails the space and inode checks.
func TestDoctorSpace(t *testing.T) {
	wantLevel(t, "the test's own file system", CheckSpace(t.TempDir(), 1<<20), LevelOK, "free of")
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot mount a small tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=2m,nr_inodes=100"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	fs := CheckSpace(filepath.Join(dir, "data"), 64<<20)
	wantLevel(t, "a 2 MiB tmpfs", fs, LevelFail, "below the 64.0 MiB the daemon needs")
	wantLevel(t, "a tmpfs with 100 inodes", fs, LevelFail, "inodes free of 100")
}

// timestampJSON is a signed timestamp as far as the clock check reads it.
func timestampJSON(expires time.Time) string {
	return fmt.Sprintf(`{"signed":{"_type":"timestamp","version":7,"expires":%q}}`, expires.UTC().Format(time.RFC3339))
}

func TestDoctorOriginAndClock(t *testing.T) {
	var date time.Time
	var expires time.Time
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metadata/timestamp.json" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Date", date.UTC().Format(http.TimeFormat))
		fmt.Fprint(w, timestampJSON(expires))
	}))
	defer ts.Close()
	cfg := DoctorConfig{RepoURL: ts.URL}

	date, expires = time.Now(), time.Now().Add(24*time.Hour)
	fs := CheckOrigin(context.Background(), cfg)
	wantLevel(t, "a good origin", fs, LevelOK, "answers")
	wantLevel(t, "a good origin", fs, LevelOK, "within")
	wantLevel(t, "a good origin", fs, LevelOK, "version 7) is valid until")

	date = time.Now().Add(-2 * time.Hour)
	wantLevel(t, "an origin whose clock is 2h behind", CheckOrigin(context.Background(), cfg), LevelFail, "ahead of the origin's")

	date, expires = time.Now(), time.Now().Add(-time.Hour)
	wantLevel(t, "an expired timestamp", CheckOrigin(context.Background(), cfg), LevelFail, "expired at")

	wantLevel(t, "a wrong base URL", CheckOrigin(context.Background(), DoctorConfig{RepoURL: ts.URL + "/nope"}), LevelFail, "HTTP 404")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	wantLevel(t, "an origin that is down", CheckOrigin(context.Background(), DoctorConfig{RepoURL: "http://" + closed}), LevelFail, "unreachable")
}

func TestDoctorBootstrap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	up := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/12D3KooWGzBbEU2pMGvwgZ2EZ3v6LB8aJgYnMkz9o3mXVbuwb1Ya", ln.Addr().(*net.TCPAddr).Port)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", dead.Addr().(*net.TCPAddr).Port)
	dead.Close()
	ctx := context.Background()

	wantLevel(t, "a reachable peer", CheckBootstrap(ctx, []string{up}, time.Second), LevelOK, "reachable")
	fs := CheckBootstrap(ctx, []string{up, down}, time.Second)
	wantLevel(t, "one of two down", fs, LevelWarn, "unreachable")
	if n, msgs := levels(fs); n[LevelFail] != 0 {
		t.Errorf("one bootstrap peer of two down: want no failure, got:\n%s", msgs)
	}
	wantLevel(t, "the only peer down", CheckBootstrap(ctx, []string{down}, time.Second), LevelFail, "no bootstrap peer reachable")
	wantLevel(t, "a QUIC address", CheckBootstrap(ctx, []string{"/ip4/127.0.0.1/udp/4001/quic-v1"}, time.Second), LevelWarn, "not checked")
}

func TestDoctorViews(t *testing.T) {
	fs := CheckViews(t.TempDir())
	if os.Geteuid() != 0 {
		wantLevel(t, "not root", fs, LevelWarn, "bind mount")
		return
	}
	wantLevel(t, "root", fs, LevelOK, "read-only bind mounts work")
	// A file system that refuses mounts under it (a read-only one cannot
	// even hold the scratch directories) fails the check.
	ro := t.TempDir()
	if err := unix.Mount("tmpfs", ro, "tmpfs", unix.MS_RDONLY, "size=1m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(ro, unix.MNT_DETACH)
	wantLevel(t, "a read-only file system", CheckViews(ro), LevelWarn, "bind mount on "+ro+" failed")
}

func TestDoctorNoFile(t *testing.T) {
	need := noFileNeed(t.TempDir(), 256)
	wantLevel(t, "256 descriptors", checkNoFile(256, need), LevelFail, "below the")
	wantLevel(t, "just enough", checkNoFile(need, need), LevelWarn, "little room")
	wantLevel(t, "plenty", checkNoFile(1<<20, need), LevelOK, "needs")
}
