package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
)

func TestReadOriginLog(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)
	at := func(s float64) string { return t0.Add(time.Duration(s * 1e9)).Format(time.RFC3339Nano) }
	log := strings.Join([]string{
		`{"time":"` + at(-1) + `","level":"DEBUG","msg":"request","path":"/chunks/old","status":200}`,
		`{"time":"` + at(0.2) + `","level":"DEBUG","msg":"request","path":"/metadata/timestamp.json","status":200}`,
		`{"time":"` + at(0.3) + `","level":"DEBUG","msg":"request","path":"/metadata/2.root.json","status":404}`,
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
	want := originTimes{manifests: 1, chunks: 3, chunkBytes: 3 * 9, firstManifest: 0.5, medianManifest: 0.5, firstChunk: 0.8, medianChunk: 1.0, medianFirstChunk: 1.4,
		responses: 7, fileBytes: float64(len("/metadata/timestamp.json") + probeBytes + len("/manifests/m1"))}
	const eps = 1e-6
	if o.manifests != want.manifests || o.responses != want.responses || o.fileBytes != want.fileBytes || o.chunks != want.chunks || o.chunkBytes != want.chunkBytes || o.medianManifest != want.medianManifest ||
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

// TestDaemonFetchers: the harness ranks the chunks' fetchers as the
// daemons did. The 24 daemons of a 4 MiB crowd (2026-12-06 02:05 UTC,
// their peer IDs in start order) and the four chunks each of h00, h08,
// h11 and h17 asked the origin for (their debug logs' origin chunk
// requests).
func TestDaemonFetchers(t *testing.T) {
	peers := strings.Fields(`12D3KooWQFbZ6jzk65PVMccRrVrtDe83Yu2BPpdhzmkHg4smt9fk 12D3KooWFbtkQGuczanAfe3ux6JUNgEXtu2bNnLvNXJoWuAiLFKj
		12D3KooWSXcSf4wxYotXBE9QjehUXhgJNTPNxLtk74hHnYdoUyrp 12D3KooW9uULycq7tF4VpMxJZg2qxECoc3ve9d8UfscrnoBf9Dmu
		12D3KooWE3YeVJrQgczpnPncZH9Lde1pZKSaFpGB3AZX9whcZemA 12D3KooWC352xpLardKWLDyb245LBRoCAi99g5ZtE2FBYLv9QheC
		12D3KooWD9c9EfDobKjUnBuTnpWVLQR2Zcbk2M1cBDv4qwAJVWsJ 12D3KooWGffarwbAPB8ByXFrEpix1TFynDyq7CLvsoMq5j8eygfD
		12D3KooWPMSCkNTZ4fPRuPNM5EtFdYcaGTFdsVkEat16nqbburQ7 12D3KooWGZ2guibCkWQDk2htZ6WeYypWBW4SLj7enun6zpDJbZBu
		12D3KooWKPtxRCYig58jFTAVnCvDBHydBewbu7sVkv2eDht2aGSv 12D3KooWL4ADX4LxZPJ1VZvryR2TgL73muXsQKz7bFsVR4Pzyf2a
		12D3KooWFr7iu7ysDozn59tpNMSe4DzpC8jk3h45yPWCY4axZqGs 12D3KooWSc3EQB1JPrFX6ut6o8EsS6aAHUg9jTbUs1KWjRZDnFnA
		12D3KooWEKPqN15okey28hATfRzXZ6rzQjDasPGpYKcZzMEybQac 12D3KooWFMZxmeEMbMkjtSzuuGxtCXcMF6ENfzdj3iaMJfJdutku
		12D3KooWRZCGFdF1A4s362p8YZuPC1Zhtx2hrVNekcf8qjtjNtfr 12D3KooWBudKRSd15MaVgkUbe1XsuKgTQUk8zJXQ2YnoaESYTSA8
		12D3KooWFE18Js5hgHbbSnn4Avxz9Z8aMXpuCMFKXJqnkWctWxLN 12D3KooWJdvshDjTGsDU4CL1FeiVYmoWC6UABh98M763G3fqP93r
		12D3KooWErGWeXjYzYmJoVy6qgFtwPjH8pugTm7djGsE5BMB7AvL 12D3KooWLUByAeEvzyrhGYVGDknhPPBaW56PbT33d5ok8wRadPrv
		12D3KooWMhm7oCfQ7btBQvi8VwXHbb11LJdFjmJCX8tRsUWUGuuN 12D3KooWHnRSdn4FoxAHt3jqsea3QoqTKFyWQ2n22KfCAW1o6ENZ`)
	hosts := make([]hostFigures, len(peers))
	for i, p := range peers {
		hosts[i].peer = p
	}
	var keys []uint64
	for _, s := range []string{
		"bafkreibonufmjlz66fmtnneohebmwjicyq5bv772f5ptdriqx7flz77rqe",
		"bafkreienj7egfcdwr5u36dypx56cuznziqijnp4vvoitkhmbwe4625gfmu",
		"bafkreiagzrhn6ailah3lw4hph6frpnxhkhehlq5mvos3npdvrj3flzy24y",
		"bafkreidfsxm5bo5xp35edlswjawfq2qjydtlol3dchqzly7frzjn6jk4fi",
	} {
		c, _, err := metadata.ParseCID(s)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, policy.ChunkKey(c.Bytes()))
	}
	if got, want := daemonFetchers(hosts, keys), []int{0, 8, 11, 17}; !slices.Equal(got, want) {
		t.Errorf("fetchers %v, want %v (the daemons that asked the origin)", got, want)
	}
	data := randomBytes(t, 2<<20+5)
	keys = chunkKeys(data, 1<<20)
	if len(keys) != 3 || keys[2] != policy.ChunkKey(metadata.SumCID(data[2<<20:]).Bytes()) {
		t.Errorf("chunkKeys of 2 MiB + 5 bytes: %d keys", len(keys))
	}
}

// TestCPUProfile: the daemons' CPU read over a run, between samples and
// per window.
func TestCPUProfile(t *testing.T) {
	r := realRun{profile: []cpuSample{{0.5, 1}, {1, 1.5}, {2, 3.5}}}
	for _, c := range []struct{ at, want float64 }{{0.25, 0.5}, {0.5, 1}, {0.75, 1.25}, {1.5, 2.5}, {3, 3.5}} {
		if got := r.cpuUntil(c.at); got != c.want {
			t.Errorf("cpuUntil(%v) = %v, want %v", c.at, got, c.want)
		}
	}
	if got, want := r.cpuProfile(0.5), "2.00 1.00 2.00 2.00"; got != want {
		t.Errorf("cpuProfile(0.5) = %q, want %q", got, want)
	}
}
