package metadata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"testing"
	"time"
)

// benchData returns n pseudo-random bytes (incompressible, no repeated
// chunks), the same on every run.
func benchData(n int) []byte {
	data := make([]byte, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	return data
}

// BenchmarkChunkHash imports a 64 MiB single file (chunking, chunk CIDs and
// the file's chunk-list hash) and reports its speed as a fraction of one
// plain crypto/sha256 pass over the same bytes, timed in the same run
// (metric x_sha256; the design asks for >= 0.9).
func BenchmarkChunkHash(b *testing.B) {
	data := benchData(64 << 20)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var importTime, shaTime time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		m, err := ImportReader(ctx, bytes.NewReader(data), KindFile, "blob", ImportOptions{}, DiscardSink{})
		importTime += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if len(m.Entries) != 1 {
			b.Fatalf("ImportReader gave %d entries, want 1", len(m.Entries))
		}
		b.StopTimer()
		start = time.Now()
		sum := sha256.Sum256(data)
		shaTime += time.Since(start)
		_ = sum
		b.StartTimer()
	}
	b.ReportMetric(float64(shaTime)/float64(importTime), "x_sha256")
}

// BenchmarkSHA256 is the baseline: one crypto/sha256 pass over the bytes
// BenchmarkChunkHash imports.
func BenchmarkSHA256(b *testing.B) {
	data := benchData(64 << 20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		sha256.Sum256(data)
	}
}
