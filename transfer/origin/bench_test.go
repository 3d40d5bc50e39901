package origin_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/origin"
	"github.com/storkpm/stork/transfer/transfertest"
)

// BenchmarkGetVsCurl measures Get of a 256 MiB package (4 random files,
// default 1 MiB chunks) from a local Server against curl fetching
// one file of the same size from the same server, and reports both rates
// and their ratio. Get does more (many requests, CID checks, fsync); the
// ratio says what that costs.
func BenchmarkGetVsCurl(b *testing.B) {
	if testing.Short() {
		b.Skip("256 MiB benchmark skipped in -short mode")
	}
	const (
		files    = 4
		fileSize = 64 << 20
		total    = files * fileSize
	)
	base := b.TempDir()
	src := filepath.Join(base, "src")
	repo := filepath.Join(base, "repo")
	if err := os.MkdirAll(src, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(repo, 0o755); err != nil {
		b.Fatal(err)
	}
	blob, err := os.Create(filepath.Join(repo, "blob"))
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{42})
	for i := range files {
		f, err := os.Create(filepath.Join(src, fmt.Sprintf("file%d.bin", i)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyN(io.MultiWriter(f, blob), rng, fileSize); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	if err := blob.Close(); err != nil {
		b.Fatal(err)
	}
	m, err := metadata.Import(context.Background(), src, metadata.ImportOptions{}, transfertest.DirSink{Dir: repo})
	if err != nil {
		b.Fatal(err)
	}
	if err := os.RemoveAll(src); err != nil {
		b.Fatal(err)
	}

	srv, err := origin.NewServer(origin.ServerConfig{Dir: repo})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	defer func() {
		cancel()
		<-done
	}()
	url := "http://" + ln.Addr().String()
	client, err := origin.NewClient(origin.Config{URL: url})
	if err != nil {
		b.Fatal(err)
	}
	curl, curlErr := exec.LookPath("curl")
	if curlErr != nil {
		b.Log("curl not found: measuring Get only")
	}

	var getTime, curlTime time.Duration
	b.SetBytes(total)
	b.ResetTimer()
	for i := range b.N {
		out := filepath.Join(base, fmt.Sprintf("get%d", i))
		start := time.Now()
		if _, err := origin.Get(ctx, origin.GetOptions{Manifest: m, Source: client, OutDir: out}); err != nil {
			b.Fatal(err)
		}
		getTime += time.Since(start)

		if curl != "" {
			file := filepath.Join(base, fmt.Sprintf("curl%d", i))
			start = time.Now()
			if out, err := exec.Command(curl, "-s", "-f", "-o", file, url+"/blob").CombinedOutput(); err != nil {
				b.Fatalf("curl: %v: %s", err, out)
			}
			curlTime += time.Since(start)
			b.StopTimer()
			if fi, err := os.Stat(file); err != nil || fi.Size() != total {
				b.Fatalf("curl wrote %v bytes (%v), want %d", fi.Size(), err, total)
			}
			os.Remove(file)
			b.StartTimer()
		}
		b.StopTimer()
		os.RemoveAll(out)
		b.StartTimer()
	}
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(total) * float64(b.N) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(getTime), "get_MB/s")
	if curl != "" {
		b.ReportMetric(mbps(curlTime), "curl_MB/s")
		b.ReportMetric(mbps(getTime)/mbps(curlTime), "ratio_get/curl")
	}
}
