package node

// Install-time and concurrency figures of the daemon, run by
// `make bench-share` with -benchtime=1x: each benchmark is a fixed-size
// experiment against an in-process origin and daemon.

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storkpm/stork/metadata"
	httporigin "github.com/storkpm/stork/transfer/origin"
)

// benchOrigin is a repository served over HTTP that counts the chunk bytes
// it sends.
type benchOrigin struct {
	dir        string
	root       []byte
	url        string
	repo       *metadata.Repo
	chunkBytes atomic.Int64
	chunkReqs  atomic.Int64
	delay      time.Duration // added to every chunk response
}

func newBenchOrigin(tb testing.TB, delay time.Duration) *benchOrigin {
	tb.Helper()
	o := &benchOrigin{dir: filepath.Join(tb.TempDir(), "repo"), delay: delay}
	key, err := metadata.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	keys := []*metadata.PrivateKey{key}
	if o.repo, err = metadata.InitRepo(o.dir, metadata.RepoConfig{RootKeys: keys, TargetsKeys: keys, SnapshotKeys: keys, TimestampKeys: keys}); err != nil {
		tb.Fatal(err)
	}
	if o.root, err = os.ReadFile(filepath.Join(o.dir, "metadata", "1.root.json")); err != nil {
		tb.Fatal(err)
	}
	srv, err := httporigin.NewServer(httporigin.ServerConfig{Dir: o.dir})
	if err != nil {
		tb.Fatal(err)
	}
	h := srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/chunks/") {
			h.ServeHTTP(w, r)
			return
		}
		o.chunkReqs.Add(1)
		if o.delay > 0 {
			time.Sleep(o.delay)
		}
		b, err := os.ReadFile(filepath.Join(o.dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/"))))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		o.chunkBytes.Add(int64(len(b)))
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		_, _ = w.Write(b)
	}))
	tb.Cleanup(ts.Close)
	o.url = ts.URL
	return o
}

// publish adds NAME@VERSION made of nfiles random files of size bytes,
// perDir to a directory, and returns the bytes of file content.
func (o *benchOrigin) publish(tb testing.TB, name, version string, nfiles, size, perDir int) int64 {
	tb.Helper()
	src := filepath.Join(tb.TempDir(), name+"-"+version)
	r := rand.New(rand.NewSource(int64(len(name)*7919 + nfiles)))
	buf := make([]byte, size)
	for i := 0; i < nfiles; i++ {
		p := filepath.Join(src, fmt.Sprintf("d%03d", i/perDir), fmt.Sprintf("f%05d", i))
		if i%perDir == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				tb.Fatal(err)
			}
		}
		r.Read(buf)
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	res, err := o.repo.Add(context.Background(), metadata.AddOptions{Name: name, Version: version, Source: src})
	if err != nil {
		tb.Fatal(err)
	}
	return res.Size
}

// startBenchDaemon runs a daemon (default settings) on a fresh, short data
// directory until the benchmark ends and returns its admin client and the
// data directory.
func startBenchDaemon(tb testing.TB, o *benchOrigin) (*Client, string) {
	tb.Helper()
	dataDir, err := os.MkdirTemp("", "stork-bench-") // socket paths are limited to 108 bytes
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dataDir) })
	d, err := NewDaemon(context.Background(), Config{DataDir: dataDir, RepoURL: o.url, Root: o.root})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runAndClose(ctx, d) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("daemon Run = %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Error("daemon did not stop within 30s")
		}
	})
	c := NewClient(dataDir)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := c.Status(context.Background()); err == nil {
			return c, dataDir
		} else if time.Now().After(deadline) {
			tb.Fatalf("daemon did not answer within 20s: %v", err)
		}
		select {
		case err := <-done:
			tb.Fatalf("daemon exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// viewRoot is a directory for views on the data directory's file system
// (link views need one file system with the store).
func viewRoot(tb testing.TB, dataDir string) string {
	tb.Helper()
	p := filepath.Join(dataDir, "views") // link views need the store's file system
	if err := os.MkdirAll(p, 0o755); err != nil {
		tb.Fatal(err)
	}
	return p
}

// percentile returns the p-th percentile (nearest rank) of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkInstallStored5000Files: a 5,000-file package already in the
// store (fetched once through the daemon from an in-process origin); each
// sample is one Install of it into a new VM through the admin API, timed at
// the client. At least 100 samples per mode (b.N if larger), so that the
// median and p90 mean something at -benchtime=1x.
func BenchmarkInstallStored5000Files(b *testing.B) {
	const nfiles, minSamples = 5000, 100
	o := newBenchOrigin(b, 0)
	size := o.publish(b, "many", "1.0.0", nfiles, 1024, 100)
	c, dataDir := startBenchDaemon(b, o)
	ctx := context.Background()
	start := time.Now()
	if _, err := c.Fetch(ctx, "many", nil); err != nil {
		b.Fatal(err)
	}
	b.Logf("package many@1.0.0: %d files, %d bytes, fetched once in %v", nfiles, size, time.Since(start).Round(time.Millisecond))
	views := viewRoot(b, dataDir)
	vmSeq := 0

	for _, mode := range []string{"bind", "link"} {
		b.Run(mode, func(b *testing.B) {
			if mode == "bind" && os.Geteuid() != 0 {
				b.Skip("bind views need root (mount(2))")
			}
			n := max(b.N, minSamples)
			var vms []string
			defer func() {
				for _, vm := range vms {
					if _, err := c.Uninstall(ctx, vm, "many"); err != nil {
						b.Error(err)
					}
				}
			}()
			samples := make([]time.Duration, 0, n)
			b.ResetTimer()
			for i := 0; i < n; i++ {
				vmSeq++
				vm := fmt.Sprintf("vm%d", vmSeq)
				addVM(b, c, vm, filepath.Join(views, vm))
				t0 := time.Now()
				_, err := c.Install(ctx, InstallRequest{VM: vm, Ref: "many", Into: filepath.Join(views, vm), Mode: mode}, nil)
				samples = append(samples, time.Since(t0))
				if err != nil {
					b.Fatalf("install %d (%s): %v", i, mode, err)
				}
				vms = append(vms, vm)
			}
			b.StopTimer()
			if _, err := os.Stat(filepath.Join(views, vms[len(vms)-1], "many", "d049", "f04999")); err != nil {
				b.Fatalf("last view incomplete: %v", err)
			}
			var sum time.Duration
			for _, s := range samples {
				sum += s
			}
			sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
			med, p90, p99 := percentile(samples, 50), percentile(samples, 90), percentile(samples, 99)
			b.ReportMetric(float64(sum.Nanoseconds())/float64(n), "ns/op")
			b.ReportMetric(ms(med), "install_ms_median")
			b.ReportMetric(ms(p90), "install_ms_p90")
			b.ReportMetric(ms(p99), "install_ms_p99")
			target := "target <= 50 ms"
			if mode != "bind" {
				target = "a figure, no target"
			}
			b.Logf("%s: %d installs of a stored %d-file package into new VMs: median %.2f ms (%s), p90 %.2f ms, p99 %.2f ms, min %.2f, max %.2f",
				mode, n, nfiles, ms(med), target, ms(p90), ms(p99), ms(samples[0]), ms(samples[n-1]))
		})
	}
}

// BenchmarkThousandConcurrentInstalls: 1,000 install requests at once, into
// 1,000 VMs, for a package the host does not have yet, from an origin that
// answers each chunk after 50 ms (so that the download is in flight while
// the requests arrive). The figure is the chunk bytes the origin sent ÷
// the package size: one download for the host means 1.00.
func BenchmarkThousandConcurrentInstalls(b *testing.B) {
	const requests, nfiles, fsize = 1000, 64, 256 << 10
	for _, mode := range []string{"link", "bind"} {
		b.Run(mode, func(b *testing.B) {
			if mode == "bind" && os.Geteuid() != 0 {
				b.Skip("bind views need root (mount(2))")
			}
			// One fresh experiment per call: b.N does not apply.
			o := newBenchOrigin(b, 50*time.Millisecond)
			size := o.publish(b, "shared", "1.0.0", nfiles, fsize, 16)
			c, dataDir := startBenchDaemon(b, o)
			views := viewRoot(b, dataDir)
			for i := 0; i < requests; i++ {
				vm := fmt.Sprintf("vm%04d", i)
				addVM(b, c, vm, filepath.Join(views, vm))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()

			var wg sync.WaitGroup
			errs := make([]error, requests)
			lat := make([]time.Duration, requests)
			ready := make(chan struct{})
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < requests; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-ready
					t0 := time.Now()
					vm := fmt.Sprintf("vm%04d", i)
					_, errs[i] = c.Install(ctx, InstallRequest{VM: vm, Ref: "shared", Into: filepath.Join(views, vm), Mode: mode}, nil)
					lat[i] = time.Since(t0)
				}()
			}
			close(ready)
			wg.Wait()
			total := time.Since(start)
			b.StopTimer()

			failed := 0
			var firstErr error
			for _, err := range errs {
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				}
			}
			all := 0.0
			if failed == 0 {
				all = 1
			}
			sent := o.chunkBytes.Load()
			copies := float64(sent) / float64(size)
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(copies, "origin_copies")
			b.ReportMetric(all, "all_succeeded")
			b.ReportMetric(total.Seconds(), "total_s")
			b.ReportMetric(ms(percentile(lat, 50)), "request_ms_median")
			b.ReportMetric(ms(lat[len(lat)-1]), "request_ms_max")
			b.Logf("%s: %d concurrent installs of a %d-byte package not yet stored: %d failed (first: %v); origin sent %d chunk bytes in %d requests = %.2f copies (must be 1.00); all done in %.2f s (request median %.0f ms, max %.0f ms)",
				mode, requests, size, failed, firstErr, sent, o.chunkReqs.Load(), copies, total.Seconds(), ms(percentile(lat, 50)), ms(lat[len(lat)-1]))

			// Clean up: uninstall every view (for bind: 1,000 unmounts).
			t0 := time.Now()
			for i := 0; i < requests; i++ {
				if errs[i] != nil {
					continue
				}
				if _, err := c.Uninstall(context.Background(), fmt.Sprintf("vm%04d", i), "shared"); err != nil {
					b.Errorf("uninstall vm%04d: %v", i, err)
				}
			}
			b.Logf("%s: %d uninstalls in %.2f s", mode, requests-failed, time.Since(t0).Seconds())
			if failed > 0 {
				b.Errorf("%d of %d installs failed: %v", failed, requests, firstErr)
			}
			if sent != size {
				b.Errorf("origin sent %d chunk bytes, want exactly one copy (%d)", sent, size)
			}
		})
	}
}
