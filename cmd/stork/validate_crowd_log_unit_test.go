package main

import (
	"strings"
	"testing"
	"time"
)

func TestReadOriginLog(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)
	at := func(s float64) string { return t0.Add(time.Duration(s * 1e9)).Format(time.RFC3339Nano) }
	log := strings.Join([]string{
		`{"time":"` + at(-1) + `","level":"DEBUG","msg":"request","path":"/chunks/old","status":200}`,
		`{"time":"` + at(0.5) + `","level":"DEBUG","msg":"request","path":"/manifests/m1","status":200}`,
		`{"time":"` + at(0.8) + `","level":"DEBUG","msg":"request","path":"/chunks/a","status":200}`,
		`{"time":"` + at(1.0) + `","level":"DEBUG","msg":"request","path":"/chunks/a","status":200}`,
		`{"time":"` + at(2.0) + `","level":"DEBUG","msg":"request","path":"/chunks/b","status":200}`,
		`{"time":"` + at(2.5) + `","level":"DEBUG","msg":"request","path":"/chunks/c","status":404}`,
		`not json`,
		`{"time":"` + at(9) + `","level":"DEBUG","msg":"request","path":"/chunks/late","status":200}`,
	}, "\n")
	o, err := readOriginLog(strings.NewReader(log), t0, t0.Add(5*time.Second), func(p string) int64 { return int64(len(p)) })
	if err != nil {
		t.Fatal(err)
	}
	want := originTimes{manifests: 1, chunks: 3, chunkBytes: 3 * 9, firstManifest: 0.5, medianManifest: 0.5, firstChunk: 0.8, medianChunk: 1.0, medianFirstChunk: 1.4}
	const eps = 1e-6
	if o.manifests != want.manifests || o.chunks != want.chunks || o.chunkBytes != want.chunkBytes || o.medianManifest != want.medianManifest ||
		abs(o.firstManifest-want.firstManifest) > eps || abs(o.firstChunk-want.firstChunk) > eps ||
		abs(o.medianChunk-want.medianChunk) > eps || abs(o.medianFirstChunk-want.medianFirstChunk) > eps {
		t.Fatalf("readOriginLog = %+v, want %+v", o, want)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestHostTable: the per-host table lists the hosts that sent most first,
// under their start-order names, with each route's bytes.
func TestHostTable(t *testing.T) {
	const mib = 1 << 20
	r := realRun{hosts: []hostFigures{
		{peer: "12D3KooWAAAAAAAAAA000001", done: 9.5, fromPeers: 4 * mib, upSession: mib},
		{peer: "12D3KooWAAAAAAAAAA000002", done: 13.25, fromOrigin: 2 * mib, fromPeers: 2 * mib, originFetches: 2, upSession: 3 * mib, upPull: 40 * mib},
	}}
	got := strings.Split(strings.TrimSpace(hostTable(r, 4*mib)), "\n")
	want := []string{
		"| h01 | …000002 | 13.250 | 2.00 | 2 | 2.00 | 3.00 | 40.00 | 10.75 |",
		"| h00 | …000001 | 9.500 | 0.00 | 0 | 4.00 | 1.00 | 0.00 | 0.25 |",
	}
	if len(got) != 4 || got[2] != want[0] || got[3] != want[1] {
		t.Fatalf("hostTable:\n%s\nwant rows\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
