package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storkpm/stork/node"
	"github.com/storkpm/stork/simulations"
)

// validateMaxGap is the largest gap, in percent, allowed between the
// simulator and real daemons (issue 5).
const validateMaxGap = 15

// TestValidateSimulator is a small version of `make validate`
// (testdata/validate/validate.sh, docs/validation.md): the same scenario,
// testdata/validate/validate.json with a smaller package, run as real
// daemon processes on loopback (origin `stork repo serve --rate`, every
// daemon --upload-rate, a flash crowd of fetches) and in the simulator;
// host offload, makespan and median completion must agree within
// validateMaxGap percent. Origin copies are logged beside them.
func TestValidateSimulator(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 rate-capped daemons for about 10s")
	}
	const (
		hosts      = 8
		size       = 48 << 20
		originRate = 12 << 20
		uploadRate = 8 << 20
	)
	sc, err := simulations.LoadScenario(filepath.Join("..", "..", "testdata", "validate", "validate.json"))
	if err != nil {
		t.Fatal(err)
	}
	sc.Hosts, sc.PackageSize = hosts, size
	sc.OriginUpload = originRate
	sc.HostUpload = simulations.Dist{{Rate: uploadRate, Weight: 1}}
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}

	r := newRepo(t)
	blob := filepath.Join(t.TempDir(), "blob.bin")
	writeFile(t, blob, randomBytes(t, size), 0o644)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "blob", "--version", "1.0.0", "--chunk-size", "1M", blob)
	url := serve(t, r.dir, "--rate", strconv.Itoa(originRate))

	rate := []string{"--upload-rate", strconv.Itoa(uploadRate)}
	datas := make([]string, hosts)
	for i := range datas {
		d, err := os.MkdirTemp("", "stork-validate-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		datas[i] = d
	}
	startDaemonProc(t, datas[0], url, r.root, rate...)
	st, err := node.NewClient(datas[0]).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	boot := ""
	for _, a := range st.Addrs {
		if strings.Contains(a, "/tcp/") {
			boot = a
		}
	}
	if boot == "" {
		t.Fatalf("bootstrap daemon has no TCP address: %v", st.Addrs)
	}
	for _, d := range datas[1:] {
		startDaemonProc(t, d, url, r.root, append(rate, "--bootstrap", boot)...)
	}
	waitOverlay(t, datas, 10*time.Second)

	// The flash crowd: every host fetches at once.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make([]float64, hosts)
	errs := make([]error, hosts)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i, d := range datas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = node.NewClient(d).Fetch(ctx, "blob", nil)
			done[i] = time.Since(t0).Seconds()
		}()
	}
	wg.Wait()
	var realOrigin float64
	for i, d := range datas {
		if errs[i] != nil {
			t.Fatalf("host %d: fetch: %v", i, errs[i])
		}
		st, err := node.NewClient(d).Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		realOrigin += float64(st.BytesFromOrigin)
	}

	res, err := simulations.Run(sc, simulations.Swarm)
	if err != nil {
		t.Fatal(err)
	}
	var simDone []float64
	for _, h := range res.PerHost {
		simDone = append(simDone, h.Done-h.Arrival)
	}

	hostBytes := float64(hosts) * size
	rows := []struct {
		name      string
		real, sim float64
		checked   bool
	}{
		{"origin copies", realOrigin / size, res.OriginBytes / size, false},
		{"host offload %", 100 * (1 - realOrigin/hostBytes), 100 * res.HostOffload, true},
		{"makespan s", slices.Max(done), res.Makespan, true},
		{"median completion s", median(done), median(simDone), true},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%d hosts, %d MiB, origin %d B/s, uploads %d B/s\n%-22s %10s %10s %8s\n",
		hosts, size>>20, originRate, uploadRate, "figure", "real", "sim", "gap")
	for _, r := range rows {
		g := 100 * (r.sim - r.real) / r.real
		fmt.Fprintf(&table, "%-22s %10.3f %10.3f %+7.1f%%\n", r.name, r.real, r.sim, g)
		if r.checked && !(math.Abs(g) <= validateMaxGap) {
			t.Errorf("%s: real daemons %.3f, simulator %.3f: gap %+.1f%%, want within ±%d%%", r.name, r.real, r.sim, g, validateMaxGap)
		}
	}
	t.Logf("real daemons vs simulator:\n%s", table.String())
}

// waitOverlay waits until every daemon sees every other one.
func waitOverlay(t *testing.T, datas []string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		low := ""
		for _, d := range datas {
			st, err := node.NewClient(d).Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Peers < len(datas)-1 {
				low = fmt.Sprintf("%s sees %d peers", d, st.Peers)
			}
		}
		if low == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("overlay not formed within %v: %s, want %d", limit, low, len(datas)-1)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// median returns the median of xs (not modified).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
