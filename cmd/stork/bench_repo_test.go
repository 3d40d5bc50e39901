package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storkpm/stork/metadata"
)

// The repository scale scenario (issue 24): publish many small packages
// in batches, then single adds, prune, and measure what clients download
// and how long and how much memory a cold resolve takes, through
// `stork repo serve` and through nginx serving the directory as static
// files. BenchmarkRepoScale runs it at distribution size (make
// bench-repo); TestRepoScaleSmall runs a small instance in make test and
// checks the size properties that do not depend on the machine.

// scaleConfig sizes one run.
type scaleConfig struct {
	packages int // published in batches
	batch    int // packages per `repo add --from`
	singles  int // single `repo add`s after the batches
	bins     int
	bodySize int // bytes of each package's one file
}

// scaleReport holds the figures of one run.
type scaleReport struct {
	publish, oneAdd                  time.Duration
	fullSet                          int64 // bytes of one full current set of metadata
	afterBatches, afterBatchesPruned int64
	afterSingles, afterSinglesPruned int64
	afterSinglesCurrent              int64                    // pruned with --keep-snapshots 0: the current snapshot only
	prune                            time.Duration            // the default prune after the single adds
	listAll                          map[string]time.Duration // a cold client listing every package
	upToDate                         map[string]fetchFigures
	cold                             map[string]coldFigures
}

type fetchFigures struct {
	bytes    int64
	requests int
	paths    []string
	took     time.Duration // refresh and resolve
}

type coldFigures struct {
	wall    time.Duration
	maxRSS  int64 // bytes
	fetched int64
}

// runStork runs the stork binary and fails tb on error.
func runStork(tb testing.TB, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, storkBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("stork %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// writeScaleList writes packages [from, to) as one-file trees under dir
// and a --from list naming them.
func writeScaleList(tb testing.TB, dir string, from, to, bodySize int) string {
	tb.Helper()
	var b strings.Builder
	body := bytes.Repeat([]byte("x"), bodySize)
	for i := from; i < to; i++ {
		name := fmt.Sprintf("pkg%06d", i)
		src := filepath.Join(dir, name)
		copy(body, name) // distinct content per package
		if err := os.WriteFile(src, body, 0o644); err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(&b, "%s\t1.0.0\t%s\n", name, src)
	}
	list := filepath.Join(dir, fmt.Sprintf("list-%d", from))
	if err := os.WriteFile(list, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return list
}

// metadataSizes returns the bytes of every file of DIR/metadata and of one
// full current set: the newest root, timestamp.json, the current snapshot
// and the current version of every role it names.
func metadataSizes(tb testing.TB, dir string) (all, current int64) {
	tb.Helper()
	md := filepath.Join(dir, metadata.MetadataDir)
	ents, err := os.ReadDir(md)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			all += fi.Size()
		}
	}
	r, err := metadata.OpenRepo(dir, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	files, err := r.CurrentFiles()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			tb.Fatal(err)
		}
		current += fi.Size()
	}
	return all, current
}

// countingFetcher counts what a client fetches.
type countingFetcher struct {
	f     metadata.Fetcher
	mu    sync.Mutex
	bytes int64
	paths []string
}

func (c *countingFetcher) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	b, err := c.f.Fetch(ctx, p, maxLen)
	c.mu.Lock()
	c.bytes += int64(len(b))
	c.paths = append(c.paths, p)
	c.mu.Unlock()
	return b, err
}

func (c *countingFetcher) take() fetchFigures {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := fetchFigures{bytes: c.bytes, requests: len(c.paths), paths: c.paths}
	c.bytes, c.paths = 0, nil
	return f
}

// startNginx serves dir as static files and returns its URL.
func startNginx(tb testing.TB, dir string) string {
	tb.Helper()
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		nginx = "/usr/sbin/nginx"
		if _, err := os.Stat(nginx); err != nil {
			tb.Skip("nginx not installed (.ci/run installs it)")
		}
	}
	prefix := tb.TempDir()
	port := freePortTB(tb)
	conf := filepath.Join(prefix, "nginx.conf")
	cfg := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 256; }
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
`, prefix, port, dir)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	_ = os.Chmod(filepath.Dir(dir), 0o755)
	cmd := exec.Command(nginx, "-c", conf, "-p", prefix)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start nginx: %v", err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTPTB(tb, url+"/metadata/timestamp.json")
	return url
}

// startServe runs `stork repo serve` on dir and returns its URL.
func startServe(tb testing.TB, dir string) string {
	tb.Helper()
	cmd := exec.Command(storkBin, "repo", "serve", "--dir", dir, "--listen", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		tb.Fatal("repo serve printed nothing")
	}
	line := sc.Text()
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	i := strings.Index(line, "http://")
	if i < 0 {
		tb.Fatalf("repo serve printed %q", line)
	}
	return line[i:]
}

func freePortTB(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitHTTPTB(tb testing.TB, url string) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("%s did not answer within 20s", url)
}

// runRepoScale runs the scenario once and returns its figures.
func runRepoScale(tb testing.TB, cfg scaleConfig) *scaleReport {
	tb.Helper()
	ctx := context.Background()
	work := tb.TempDir()
	dir, key := filepath.Join(work, "repo"), filepath.Join(work, "repo.key")
	runStork(tb, "keys", "gen", "--out", key)
	runStork(tb, "repo", "init", "--dir", dir, "--key", key, "--bins", strconv.Itoa(cfg.bins))
	root, err := os.ReadFile(filepath.Join(dir, metadata.MetadataDir, "1.root.json"))
	if err != nil {
		tb.Fatal(err)
	}
	src := filepath.Join(work, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		tb.Fatal(err)
	}
	var lists []string
	for from := 0; from < cfg.packages; from += cfg.batch {
		lists = append(lists, writeScaleList(tb, src, from, min(from+cfg.batch, cfg.packages), cfg.bodySize))
	}
	rep := &scaleReport{upToDate: map[string]fetchFigures{}, cold: map[string]coldFigures{}, listAll: map[string]time.Duration{}}

	start := time.Now()
	for _, l := range lists {
		runStork(tb, "repo", "add", "--dir", dir, "--key", key, "--from", l)
	}
	rep.publish = time.Since(start)
	rep.afterBatches, rep.fullSet = metadataSizes(tb, dir)
	runStork(tb, "repo", "prune", "--dir", dir)
	rep.afterBatchesPruned, _ = metadataSizes(tb, dir)

	addOne := func(name, version, body string) time.Duration {
		p := filepath.Join(work, "single-"+name+"-"+version)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
		t0 := time.Now()
		runStork(tb, "repo", "add", "--dir", dir, "--key", key, "--name", name, "--version", version, p)
		return time.Since(t0)
	}
	rep.oneAdd = addOne("extra", "1.0.0", "one more package")

	urls := map[string]string{"repo serve": startServe(tb, dir)}
	if _, err := exec.LookPath("nginx"); err == nil || fileExists("/usr/sbin/nginx") {
		urls["nginx"] = startNginx(tb, dir)
	}
	// Clients that list everything, so that every bin is on their disk.
	type client struct {
		c  *metadata.Client
		cf *countingFetcher
	}
	clients := map[string]client{}
	for name, url := range urls {
		cf := &countingFetcher{f: &metadata.HTTPFetcher{BaseURL: url}}
		c, err := metadata.NewClient(metadata.ClientConfig{Dir: filepath.Join(work, "client-"+strings.ReplaceAll(name, " ", "-")), Root: root, Fetcher: cf})
		if err != nil {
			tb.Fatal(err)
		}
		t0 := time.Now()
		if _, err := c.Packages(ctx); err != nil {
			tb.Fatalf("%s: list packages: %v", name, err)
		}
		rep.listAll[name] = time.Since(t0)
		clients[name] = client{c, cf}
	}

	changed := ""
	for i := range cfg.singles {
		if i == cfg.singles-1 {
			for name, cl := range clients { // up to date before the last change
				if err := cl.c.Refresh(ctx); err != nil {
					tb.Fatal(err)
				}
				if _, err := cl.c.Packages(ctx); err != nil {
					tb.Fatalf("%s: %v", name, err)
				}
				cl.cf.take()
			}
		}
		changed = fmt.Sprintf("pkg%06d", (i*7919)%cfg.packages)
		addOne(changed, fmt.Sprintf("1.1.%d", i), fmt.Sprintf("single add %d", i))
	}
	for name, cl := range clients {
		t0 := time.Now()
		if err := cl.c.Refresh(ctx); err != nil {
			tb.Fatal(err)
		}
		if r, err := cl.c.Resolve(ctx, changed); err != nil || !strings.HasPrefix(r.Version, "1.1.") {
			tb.Fatalf("%s: Resolve(%s) = %v, %v", name, changed, r, err)
		}
		took := time.Since(t0)
		f := cl.cf.take()
		meta := fetchFigures{took: took}
		for _, p := range f.paths {
			if strings.HasPrefix(p, metadata.MetadataDir+"/") {
				meta.paths = append(meta.paths, p)
			}
		}
		meta.requests = len(meta.paths)
		meta.bytes = f.bytes - manifestBytes(tb, dir, f.paths)
		rep.upToDate[name] = meta
	}
	rep.afterSingles, _ = metadataSizes(tb, dir)
	t0 := time.Now()
	runStork(tb, "repo", "prune", "--dir", dir)
	rep.prune = time.Since(t0)
	rep.afterSinglesPruned, _ = metadataSizes(tb, dir)
	runStork(tb, "repo", "prune", "--dir", dir, "--keep-snapshots", "0")
	rep.afterSinglesCurrent, _ = metadataSizes(tb, dir)

	for name, url := range urls {
		rep.cold[name] = coldGet(tb, url, filepath.Join(dir, metadata.MetadataDir, "1.root.json"), fmt.Sprintf("pkg%06d", cfg.packages/2))
	}
	return rep
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// manifestBytes sums the sizes of the manifests among fetched paths.
func manifestBytes(tb testing.TB, dir string, paths []string) int64 {
	var n int64
	for _, p := range paths {
		if strings.HasPrefix(p, metadata.ManifestsDir+"/") {
			if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p))); err == nil {
				n += fi.Size()
			}
		}
	}
	return n
}

// coldGet runs `stork get` with an empty state directory and returns its
// wall time and peak resident memory. The peak is read by GNU time, which
// forks stork from its own small process: a child started directly from
// this (large) test process would report this process's peak, as Linux
// carries the peak of the address space a child is spawned from across
// exec.
func coldGet(tb testing.TB, url, root, ref string) coldFigures {
	tb.Helper()
	args := []string{storkBin, "get", "--repo", url, "--root", root, "--state", tb.TempDir(), "--out", filepath.Join(tb.TempDir(), "out"), ref}
	timeBin := "/usr/bin/time"
	measured := fileExists(timeBin)
	if measured {
		args = append([]string{timeBin, "-f", "maxrss_kb=%M"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		tb.Fatalf("stork get %s from %s: %v\n%s", ref, url, err, out.String())
	}
	f := coldFigures{wall: time.Since(start), maxRSS: -1}
	if i := strings.LastIndex(out.String(), "maxrss_kb="); measured && i >= 0 {
		if kb, err := strconv.ParseInt(strings.TrimSpace(out.String()[i+len("maxrss_kb="):]), 10, 64); err == nil {
			f.maxRSS = kb << 10
		}
	}
	return f
}

// print writes the report as a table with ratios.
func (r *scaleReport) print(w io.Writer, cfg scaleConfig) {
	ratio := func(n int64) string { return fmt.Sprintf("%.2fx", float64(n)/float64(r.fullSet)) }
	fmt.Fprintf(w, "repository scale: %d packages of %d bytes in batches of %d, %d bins, then %d single adds (%s, %d cores)\n",
		cfg.packages, cfg.bodySize, cfg.batch, cfg.bins, cfg.singles, runtime.GOOS, runtime.NumCPU())
	fmt.Fprintf(w, "  publish %d in batches          %8.1f s  (%.0f packages/s)\n", cfg.packages, r.publish.Seconds(), float64(cfg.packages)/r.publish.Seconds())
	fmt.Fprintf(w, "  one more single repo add          %8.3f s\n", r.oneAdd.Seconds())
	fmt.Fprintf(w, "  one full current metadata set     %8d bytes  1.00x\n", r.fullSet)
	fmt.Fprintf(w, "  after batches, unpruned           %8d bytes  %s\n", r.afterBatches, ratio(r.afterBatches))
	fmt.Fprintf(w, "  after batches, prune (default)    %8d bytes  %s  (current + %d superseded snapshots)\n", r.afterBatchesPruned, ratio(r.afterBatchesPruned), metadata.DefaultPruneKeepSnapshots)
	fmt.Fprintf(w, "  after singles, unpruned           %8d bytes  %s\n", r.afterSingles, ratio(r.afterSingles))
	fmt.Fprintf(w, "  after singles, prune (default)    %8d bytes  %s  (prune took %.1f s)\n", r.afterSinglesPruned, ratio(r.afterSinglesPruned), r.prune.Seconds())
	fmt.Fprintf(w, "  same, --keep-snapshots 0          %8d bytes  %s\n", r.afterSinglesCurrent, ratio(r.afterSinglesCurrent))
	for _, name := range []string{"repo serve", "nginx"} {
		if f, ok := r.upToDate[name]; ok {
			fmt.Fprintf(w, "  %-10s up-to-date client, one change: %d bytes of metadata in %d requests, %.3f s to refresh and resolve (%s)\n",
				name, f.bytes, f.requests, f.took.Seconds(), strings.Join(f.paths, " "))
		}
		if d, ok := r.listAll[name]; ok {
			fmt.Fprintf(w, "  %-10s cold client listing every package: %.2f s\n", name, d.Seconds())
		}
		if c, ok := r.cold[name]; ok {
			fmt.Fprintf(w, "  %-10s cold `stork get` (resolve and fetch one package): %.3f s, peak RSS %.1f MB\n", name, c.wall.Seconds(), float64(c.maxRSS)/(1<<20))
		}
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkRepoScale is issue 24's scenario at distribution size (one run
// whatever b.N): STORK_BENCH_REPO_PACKAGES (60000), _BATCH (5000),
// _SINGLES (1000), _BINS (1024), _BODY (2048 bytes).
func BenchmarkRepoScale(b *testing.B) {
	cfg := scaleConfig{
		packages: envInt("STORK_BENCH_REPO_PACKAGES", 60000),
		batch:    envInt("STORK_BENCH_REPO_BATCH", 5000),
		singles:  envInt("STORK_BENCH_REPO_SINGLES", 1000),
		bins:     envInt("STORK_BENCH_REPO_BINS", metadata.DefaultBins),
		bodySize: envInt("STORK_BENCH_REPO_BODY", 2048),
	}
	rep := runRepoScale(b, cfg)
	rep.print(os.Stdout, cfg)
	b.ReportMetric(rep.publish.Seconds(), "publish-s")
	b.ReportMetric(rep.oneAdd.Seconds(), "one-add-s")
	b.ReportMetric(float64(rep.afterBatchesPruned)/float64(rep.fullSet), "batches-pruned/full")
	b.ReportMetric(float64(rep.afterSinglesPruned)/float64(rep.fullSet), "pruned/full")
	if f, ok := rep.upToDate["repo serve"]; ok {
		b.ReportMetric(float64(f.bytes), "update-bytes")
	}
	if c, ok := rep.cold["repo serve"]; ok {
		b.ReportMetric(c.wall.Seconds(), "cold-get-s")
		b.ReportMetric(float64(c.maxRSS)/(1<<20), "cold-get-MB")
	}
}

// TestRepoScaleSmall runs the scenario small and checks what does not
// depend on the machine: an up-to-date client reads at most 64 KB of
// metadata after one change (timestamp, snapshot, one bin and the root
// probe), and a prune at the defaults, right after the batches and right
// after the single adds, leaves metadata within 3x one full set. The
// single adds are enough for their snapshots alone (about 33 KB each) to
// pass that bound if a prune kept them all.
func TestRepoScaleSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 2,000 packages")
	}
	cfg := scaleConfig{packages: 2000, batch: 500, singles: 60, bins: metadata.DefaultBins, bodySize: 256}
	rep := runRepoScale(t, cfg)
	var b strings.Builder
	rep.print(&b, cfg)
	t.Log("\n" + b.String())
	for name, f := range rep.upToDate {
		if f.bytes > 64<<10 || f.requests != 4 {
			t.Errorf("%s: an up-to-date client read %d bytes of metadata in %d requests after one change, want at most 64 KiB in 4 (root probe, timestamp, snapshot, bin): %v",
				name, f.bytes, f.requests, f.paths)
		}
	}
	for _, c := range []struct {
		when  string
		bytes int64
	}{{"at the defaults after the batches", rep.afterBatchesPruned}, {"at the defaults after the single adds", rep.afterSinglesPruned}, {"with --keep-snapshots 0", rep.afterSinglesCurrent}} {
		if c.bytes > 3*rep.fullSet {
			t.Errorf("metadata pruned %s = %d bytes, more than 3x one full set (%d)", c.when, c.bytes, rep.fullSet)
		}
	}
}
