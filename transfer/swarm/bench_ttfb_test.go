package swarm_test

import (
	"context"
	"crypto/rand"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/origin"
	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// firstByte wraps a ChunkSource and records when its first chunk arrived.
type firstByte struct {
	swarm.ChunkSource
	mu    sync.Mutex
	first time.Time
}

func (f *firstByte) FetchChunk(ctx context.Context, c cid.Cid, size int64) ([]byte, error) {
	b, err := f.ChunkSource.FetchChunk(ctx, c, size)
	if err == nil {
		f.mu.Lock()
		if f.first.IsZero() {
			f.first = time.Now()
		}
		f.mu.Unlock()
	}
	return b, err
}

type discardSink struct{}

func (discardSink) PutChunk(cid.Cid, []byte) error { return nil }

// BenchmarkFirstByteNoPeers: a swarm download of a package that no peer
// holds, with a DHT that takes 2 s to answer, must not wait for it: its
// time to first byte from the origin is compared with a plain HTTP Get of
// the same package from the same origin in the same run (target <= 1.2x).
func BenchmarkFirstByteNoPeers(b *testing.B) {
	data := make([]byte, 8<<20)
	_, _ = rand.Read(data)
	m, chunks := transfertest.BuildManifest(1<<20, []transfertest.Entry{{Path: "blob", Data: data}})
	dir := b.TempDir()
	if err := transfertest.WriteChunks(dir, chunks); err != nil {
		b.Fatal(err)
	}
	srv, err := origin.NewServer(origin.ServerConfig{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	client, err := origin.NewClient(origin.Config{URL: ts.URL})
	if err != nil {
		b.Fatal(err)
	}
	mc, err := m.CID()
	if err != nil {
		b.Fatal(err)
	}
	var swarmT, getT []time.Duration
	for i := 0; i < max(b.N, 15); i++ {
		// plain HTTP Get
		fb := &firstByte{ChunkSource: client}
		start := time.Now()
		if _, err := origin.Get(context.Background(), origin.GetOptions{Manifest: m, Source: fb, OutDir: filepath.Join(b.TempDir(), "out")}); err != nil {
			b.Fatal(err)
		}
		getT = append(getT, fb.first.Sub(start))

		// swarm with no peers and a slow DHT
		net := transfertest.NewMemNet(transfertest.LinkShape{})
		disc := transfertest.NewMemDiscovery()
		disc.Delay = 2 * time.Second
		node := net.Node("solo", nil)
		fs := &firstByte{ChunkSource: client}
		sw, err := swarm.New(swarm.Config{Self: "solo", Network: node, Discovery: disc.For("solo"), Store: transfertest.NewMemStore(), Origin: fs})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { _ = sw.Run(ctx) }()
		start = time.Now()
		if _, err := sw.Download(context.Background(), swarm.DownloadRequest{Manifest: mc, M: m, Sink: discardSink{}}); err != nil {
			b.Fatal(err)
		}
		swarmT = append(swarmT, fs.first.Sub(start))
		cancel()
		sw.Close()
	}
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	ratio := float64(med(swarmT)) / float64(med(getT))
	b.ReportMetric(float64(med(getT).Microseconds())/1000, "get_ttfb_ms")
	b.ReportMetric(float64(med(swarmT).Microseconds())/1000, "swarm_ttfb_ms")
	b.ReportMetric(ratio, "ratio_swarm/get")
	b.Logf("time to first byte with no peers and a 2 s DHT: swarm %v, plain get %v, ratio %.2f (target <= 1.2)", med(swarmT), med(getT), ratio)
}

var _ metadata.ChunkSink = discardSink{}
