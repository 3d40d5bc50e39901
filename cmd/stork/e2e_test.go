package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// storkBin is the binary under test, built once by TestMain.
var storkBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stork-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	storkBin = filepath.Join(dir, "stork")
	out, err := exec.Command("go", "build", "-o", storkBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build stork: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// stork runs the binary and returns stdout; it fails the test on a non-zero exit.
func stork(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := storkRun(t, args...)
	if err != nil {
		t.Fatalf("stork %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func storkRun(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, storkBin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// storkFail runs the binary, expects exit code 1 with one line on stderr
// mentioning want, and returns that line.
func storkFail(t *testing.T, want string, args ...string) string {
	t.Helper()
	out, errOut, err := storkRun(t, args...)
	var ee *exec.ExitError
	if err == nil || !asExit(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("stork %s: err = %v, want exit code 1\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "stork: ") {
		t.Errorf("stork %s: stderr = %q, want one line starting with \"stork: \"", strings.Join(args, " "), errOut)
	}
	if !strings.Contains(strings.ToLower(errOut), strings.ToLower(want)) {
		t.Errorf("stork %s: stderr = %q, want it to mention %q", strings.Join(args, " "), errOut, want)
	}
	return errOut
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

// serve starts `stork repo serve` on an ephemeral loopback port and returns its URL.
func serve(t *testing.T, dir string) string {
	t.Helper()
	url, _ := serveProc(t, dir)
	return url
}

// serveProc is serve with more flags (e.g. --rate); it also returns the
// server's process.
func serveProc(t *testing.T, dir string, extra ...string) (string, *os.Process) {
	t.Helper()
	return runServe(t, append([]string{"repo", "serve", "--dir", dir, "--listen", "127.0.0.1:0"}, extra...), io.Discard)
}

// runServe runs stork with args (a `repo serve` command line), its
// standard error to stderr, until the test ends; it returns the URL the
// server prints and its process.
func runServe(t *testing.T, args []string, stderr io.Writer) (string, *os.Process) {
	t.Helper()
	cmd := exec.Command(storkBin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	select {
	case line := <-lines:
		i := strings.Index(line, "http://")
		if i < 0 {
			t.Fatalf("repo serve printed %q, want a URL", line)
		}
		return line[i:], cmd.Process
	case <-time.After(20 * time.Second):
		t.Fatal("repo serve did not start within 20s")
	}
	return "", nil
}

type repoFixture struct {
	dir, key, root string
}

func newRepo(t *testing.T) repoFixture {
	t.Helper()
	d := t.TempDir()
	f := repoFixture{dir: filepath.Join(d, "repo"), key: filepath.Join(d, "repo.key")}
	stork(t, "keys", "gen", "--out", f.key)
	stork(t, "repo", "init", "--dir", f.dir, "--key", f.key)
	f.root = filepath.Join(f.dir, "metadata", "1.root.json")
	return f
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// sampleTree builds a tree with nested directories, symlinks, empty files,
// an executable, a large file and many small files.
func sampleTree(t *testing.T, large int, small int) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "pkg")
	writeFile(t, filepath.Join(root, "bin", "tool"), []byte("#!/bin/sh\necho tool\n"), 0o755)
	writeFile(t, filepath.Join(root, "etc", "deep", "er", "still", "conf"), []byte("key=value\n"), 0o640)
	writeFile(t, filepath.Join(root, "empty"), nil, 0o644)
	writeFile(t, filepath.Join(root, "etc", "empty-too"), nil, 0o600)
	writeFile(t, filepath.Join(root, "data", "large.bin"), randomBytes(t, large), 0o644)
	for i := 0; i < small; i++ {
		writeFile(t, filepath.Join(root, "small", fmt.Sprintf("d%02d", i%20), fmt.Sprintf("f%04d.txt", i)),
			[]byte(fmt.Sprintf("small file %d\n", i)), 0o644)
	}
	// identical content in two places: stored and moved once
	writeFile(t, filepath.Join(root, "copy", "tool"), []byte("#!/bin/sh\necho tool\n"), 0o755)
	if err := os.Symlink("../bin/tool", filepath.Join(root, "etc", "tool-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("deep/er", filepath.Join(root, "etc", "dir-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "emptydir"), 0o750); err != nil {
		t.Fatal(err)
	}
	return root
}

// compareTrees fails unless got has exactly want's entries, types, modes,
// contents and link targets.
func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	compareTreesMask(t, want, got, 0)
}

// compareStoreView compares a view from the host store: the same tree,
// modes included (a view is read-only by its mount, not by its modes).
func compareStoreView(t *testing.T, want, got string) {
	t.Helper()
	compareTreesMask(t, want, got, 0)
}

func compareTreesMask(t *testing.T, want, got string, strip fs.FileMode) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		seen[rel] = true
		g := filepath.Join(got, rel)
		wi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		gi, err := os.Lstat(g)
		if err != nil {
			t.Errorf("%s: missing in the fetched tree: %v", rel, err)
			return nil
		}
		wantMode := wi.Mode()
		if wantMode&fs.ModeSymlink == 0 {
			wantMode &^= strip
		}
		if rel != "." && wantMode != gi.Mode() {
			t.Errorf("%s: mode %v, want %v", rel, gi.Mode(), wantMode)
		}
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			wt, _ := os.Readlink(p)
			gt, _ := os.Readlink(g)
			if wt != gt {
				t.Errorf("%s: link target %q, want %q", rel, gt, wt)
			}
		case wi.Mode().IsRegular():
			wb, _ := os.ReadFile(p)
			gb, err := os.ReadFile(g)
			if err != nil || !bytes.Equal(wb, gb) {
				t.Errorf("%s: content differs (%d bytes, want %d; %v)", rel, len(gb), len(wb), err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(got, p)
		if !seen[rel] {
			t.Errorf("%s: in the fetched tree but not in the source", rel)
		}
		return nil
	})
}

func TestEndToEndRoundTrip(t *testing.T) {
	large, small := 65<<20+12345, 600
	if testing.Short() {
		large, small = 3<<20+17, 100
	}
	r := newRepo(t)
	src := sampleTree(t, large, small)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "sample", "--version", "1.0.0", src)
	url := serve(t, r.dir)
	out := filepath.Join(t.TempDir(), "out")
	summary := stork(t, "get", "--repo", url, "--root", r.root, "--state", filepath.Join(t.TempDir(), "state"), "--out", out, "--json", "sample@1.0.0")
	if !strings.Contains(summary, `"name": "sample"`) {
		t.Errorf("get --json printed %s, want a summary naming the package", summary)
	}
	compareTrees(t, src, out)
}

func TestEndToEndNewestVersionAndDependencies(t *testing.T) {
	r := newRepo(t)
	a1 := sampleTree(t, 1000, 3)
	a2 := sampleTree(t, 2000, 4)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "liba", "--version", "1.2.0", a1)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "liba", "--version", "1.10.0", a2)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "app", "--version", "0.1.0", "--depends", "liba>=1.2", a1)
	// publishing before a dependency exists is allowed; resolving is not
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "app2", "--version", "0.1.0", "--depends", "nosuch>=1", a1)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "app3", "--version", "0.1.0", "--depends", "liba>=2", a1)

	url := serve(t, r.dir)
	state := filepath.Join(t.TempDir(), "state")
	out := filepath.Join(t.TempDir(), "liba")
	line := stork(t, "get", "--repo", url, "--root", r.root, "--state", state, "--out", out, "liba")
	compareTrees(t, a2, out) // 1.10.0 > 1.2.0 in semantic version order
	if want := "liba@1.10.0: 10 files, "; !strings.HasPrefix(line, want) || strings.Count(line, "\n") != 1 || !strings.Contains(line, " bytes verified into "+out+" from "+url) {
		t.Errorf("get printed %q, want one line starting %q naming %s and %s", line, want, out, url)
	}
	summary := stork(t, "get", "--repo", url, "--root", r.root, "--state", state, "--out", filepath.Join(t.TempDir(), "app"), "--json", "app")
	if !strings.Contains(summary, "liba>=1.2") {
		t.Errorf("get --json app = %s, want its signed dependency liba>=1.2", summary)
	}
	storkFail(t, "nosuch", "get", "--repo", url, "--root", r.root, "--state", state, "--out", filepath.Join(t.TempDir(), "x"), "nosuch")
	storkFail(t, "nosuch", "get", "--repo", url, "--root", r.root, "--state", state, "--out", filepath.Join(t.TempDir(), "x"), "app2")
	storkFail(t, "liba", "get", "--repo", url, "--root", r.root, "--state", state, "--out", filepath.Join(t.TempDir(), "x"), "app3")

	// --with-deps writes the whole closure, one tree per package
	all := filepath.Join(t.TempDir(), "all")
	stork(t, "get", "--repo", url, "--root", r.root, "--state", state, "--out", all, "--with-deps", "app")
	compareTrees(t, a1, filepath.Join(all, "app"))
	compareTrees(t, a2, filepath.Join(all, "liba"))
}

func TestEndToEndPublishRules(t *testing.T) {
	r := newRepo(t)
	src := sampleTree(t, 100, 2)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", "1.0.0", src)
	again := stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", "1.0.0", src)
	if !strings.HasPrefix(again, "unchanged") {
		t.Errorf("second identical add printed %q, want \"unchanged ...\"", again)
	}
	other := sampleTree(t, 200, 2)
	storkFail(t, "p@1.0.0", "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", "1.0.0", other)

	wrongKey := filepath.Join(t.TempDir(), "other.key")
	stork(t, "keys", "gen", "--out", wrongKey)
	storkFail(t, "targets", "repo", "add", "--dir", r.dir, "--key", wrongKey, "--name", "q", "--version", "1.0.0", src)

	// a symlink that leaves the tree is data: published as it is
	links := filepath.Join(t.TempDir(), "links")
	writeFile(t, filepath.Join(links, "ok"), []byte("x"), 0o644)
	for name, target := range map[string]string{"escape": "../../etc/passwd", "abs": "/etc/passwd"} {
		if err := os.Symlink(target, filepath.Join(links, name)); err != nil {
			t.Fatal(err)
		}
	}
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "links", "--version", "1.0.0", links)
	// a fifo is refused at publish time
	bad := filepath.Join(t.TempDir(), "bad")
	writeFile(t, filepath.Join(bad, "ok"), []byte("x"), 0o644)
	if err := syscall.Mkfifo(filepath.Join(bad, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	storkFail(t, "fifo", "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "bad", "--version", "1.0.0", bad)
}

func TestEndToEndTamperedOriginAndRollback(t *testing.T) {
	r := newRepo(t)
	src := sampleTree(t, 3<<20, 5)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", "1.0.0", src)
	oldMeta := filepath.Join(t.TempDir(), "old-metadata")
	copyDir(t, filepath.Join(r.dir, "metadata"), oldMeta)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", "1.1.0", sampleTree(t, 10, 1))

	url := serve(t, r.dir)
	state := filepath.Join(t.TempDir(), "state")
	stork(t, "get", "--repo", url, "--root", r.root, "--state", state, "--out", filepath.Join(t.TempDir(), "ok"), "p@1.0.0")

	// wrong chunk bytes from the origin: refused, nothing left at --out
	chunks, err := os.ReadDir(filepath.Join(r.dir, "chunks"))
	if err != nil || len(chunks) == 0 {
		t.Fatalf("read chunks: %v (%d)", err, len(chunks))
	}
	var victim string
	for _, c := range chunks {
		if info, _ := c.Info(); info.Size() == 1<<20 {
			victim = filepath.Join(r.dir, "chunks", c.Name())
			break
		}
	}
	if victim == "" {
		t.Fatal("no full-size chunk to tamper with")
	}
	orig, _ := os.ReadFile(victim)
	tampered := append([]byte("evil"), orig[4:]...)
	_ = os.Chmod(victim, 0o644)
	writeFile(t, victim, tampered, 0o644)
	outDir := filepath.Join(t.TempDir(), "tampered")
	storkFail(t, "hash", "get", "--repo", url, "--root", r.root, "--state", state, "--out", outDir, "p@1.0.0")
	assertNoTree(t, outDir)
	writeFile(t, victim, orig, 0o444)

	// rollback across runs: the client saw the newer metadata; serving the
	// older (validly signed) metadata is refused by a fresh process.
	_ = os.RemoveAll(filepath.Join(r.dir, "metadata"))
	copyDir(t, oldMeta, filepath.Join(r.dir, "metadata"))
	storkFail(t, "rollback", "get", "--repo", url, "--root", r.root, "--state", state, "--out", filepath.Join(t.TempDir(), "rb"), "p@1.0.0")
}

func TestEndToEndNginx(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/nginx"); err2 != nil {
			t.Skip("nginx not installed (.ci/run installs it)")
		}
		nginx = "/usr/sbin/nginx"
	}
	if runtime.GOOS != "linux" {
		t.Skip("linux only")
	}
	r := newRepo(t)
	src := sampleTree(t, 2<<20+3, 20)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", "1.0.0", src)

	port := freePort(t)
	conf := filepath.Join(t.TempDir(), "nginx.conf")
	prefix := t.TempDir()
	writeFile(t, conf, []byte(fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 127.0.0.1:%[2]d;
    root %[3]s;
    autoindex off;
  }
}
`, prefix, port, r.dir)), 0o644)
	// nginx's workers must read the repository
	_ = os.Chmod(filepath.Dir(r.dir), 0o755)
	cmd := exec.Command(nginx, "-c", conf, "-p", prefix)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, url+"/metadata/timestamp.json")
	out := filepath.Join(t.TempDir(), "out")
	stork(t, "get", "--repo", url, "--root", r.root, "--state", filepath.Join(t.TempDir(), "state"), "--out", out, "p")
	compareTrees(t, src, out)
}

func assertNoTree(t *testing.T, outDir string) {
	t.Helper()
	if _, err := os.Lstat(outDir); err == nil {
		t.Errorf("%s exists after a failed get", outDir)
	}
	entries, _ := os.ReadDir(filepath.Dir(outDir))
	for _, e := range entries {
		if strings.Contains(e.Name(), "partial") || strings.Contains(e.Name(), filepath.Base(outDir)) {
			t.Errorf("leftover %s after a failed get", e.Name())
		}
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestEndToEndDelegationAndRefresh: the repository hands names matching
// alice-* to Alice's key; Alice publishes those and nothing else; clients
// accept what she signs; refresh extends the timestamp.
func TestEndToEndDelegationAndRefresh(t *testing.T) {
	r := newRepo(t)
	alice := filepath.Join(t.TempDir(), "alice.key")
	stork(t, "keys", "gen", "--out", alice)
	stork(t, "repo", "delegate", "--dir", r.dir, "--key", r.key, "--role", "alice", "--pattern", "alice-*", "--publisher", alice+".pub")
	src := sampleTree(t, 5000, 3)
	// Alice signs her role; the repository's online key re-signs snapshot and timestamp.
	stork(t, "repo", "add", "--dir", r.dir, "--key", alice, "--key", r.key, "--name", "alice-tool", "--version", "1.0.0", src)
	// Alice alone cannot publish outside her pattern.
	storkFail(t, "bob-tool", "repo", "add", "--dir", r.dir, "--key", alice, "--name", "bob-tool", "--version", "1.0.0", src)
	storkFail(t, "", "keys", "gen", "--out", alice) // never overwrites a key

	list := stork(t, "repo", "list", "--dir", r.dir, "--json")
	if !strings.Contains(list, `"alice-tool"`) || strings.Contains(list, "bob-tool") {
		t.Errorf("repo list = %s, want alice-tool and no bob-tool", list)
	}
	url := serve(t, r.dir)
	state := filepath.Join(t.TempDir(), "state")
	out := filepath.Join(t.TempDir(), "out")
	stork(t, "get", "--repo", url, "--root", r.root, "--state", state, "--out", out, "alice-tool")
	compareTrees(t, src, out)

	before, err := os.ReadFile(filepath.Join(r.dir, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	stork(t, "repo", "refresh", "--dir", r.dir, "--key", r.key)
	after, _ := os.ReadFile(filepath.Join(r.dir, "metadata", "timestamp.json"))
	if bytes.Equal(before, after) {
		t.Error("repo refresh left timestamp.json unchanged")
	}
	stork(t, "get", "--repo", url, "--root", r.root, "--state", state, "--out", filepath.Join(t.TempDir(), "again"), "alice-tool@1.0.0")
}

// TestEndToEndExpiredTimestamp: a repository whose timestamp expired
// (indefinite freeze) is refused until it is refreshed.
func TestEndToEndExpiredTimestamp(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	key := filepath.Join(d, "k")
	stork(t, "keys", "gen", "--out", key)
	repo := filepath.Join(d, "repo")
	stork(t, "repo", "init", "--dir", repo, "--key", key, "--expires", "timestamp=5s")
	stork(t, "repo", "add", "--dir", repo, "--key", key, "--name", "p", "--version", "1.0.0", sampleTree(t, 10, 1))
	url := serve(t, repo)
	root := filepath.Join(repo, "metadata", "1.root.json")
	time.Sleep(5500 * time.Millisecond)
	storkFail(t, "expired", "get", "--repo", url, "--root", root, "--state", filepath.Join(d, "s1"), "--out", filepath.Join(d, "o1"), "p")
	stork(t, "repo", "refresh", "--dir", repo, "--key", key)
	stork(t, "get", "--repo", url, "--root", root, "--state", filepath.Join(d, "s2"), "--out", filepath.Join(d, "o2"), "p")
}
