package main

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storkpm/stork/cmd/stork/internal/testbed"
	"github.com/storkpm/stork/simulations"
)

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestTestbedShort is the short version of `make testbed` (docs/testbed.md):
// a site of 3 hosts and one of 2 in network namespaces, links shaped by tc,
// 20 ms one way between sites through the user-space delay, a 32 MiB
// package; every host fetching over HTTP alone, then the swarm (told its
// site where the binary can), then the swarm with a host's link taken down
// mid-transfer and brought back. Every host must complete and every store
// verify; the figures must say what the runs did: the HTTP-only run pulls
// one copy per host from the origin and one per host through each site's
// uplink, the swarm pulls fewer, the daemons' pings across sites take at
// least the delay both ways, the fault happened, and nothing is left behind.
// Root only.
func TestTestbedShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 5-host testbed and runs it for about 45 s")
	}
	cfg := testbed.ShortConfig()
	if err := testbed.Check(cfg.Delay > 0); err != nil {
		t.Skipf("%v (the short testbed runs in make test as root)", err)
	}
	cfg.Stork, cfg.Dir, cfg.Progress = storkBin, t.TempDir(), testWriter{t}
	cfg.LinkDownFor = 2 * time.Second
	swarm := testbed.RunSwarm
	if out, _ := exec.Command(storkBin, "daemon", "--help").CombinedOutput(); strings.Contains(string(out), "--site") {
		swarm = testbed.RunSwarmSites
	}
	cfg.Runs = []string{testbed.RunHTTP, swarm, testbed.RunLinkDown}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := testbed.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed) > 0 {
		t.Errorf("testbed failures: %s", strings.Join(res.Failed, "; "))
	}
	runs := map[string]*testbed.RunResult{}
	for _, r := range res.Runs {
		runs[r.Name] = r
		if r.Skipped != "" {
			t.Errorf("run %s skipped: %s", r.Name, r.Skipped)
			continue
		}
		for _, h := range r.Hosts {
			if h.Err != "" || h.Verified != "ok" {
				t.Errorf("run %s, host %s: error %q, verified %q", r.Name, h.Name, h.Err, h.Verified)
			}
		}
	}
	http, sw, down := runs[testbed.RunHTTP], runs[swarm], runs[testbed.RunLinkDown]
	if http == nil || sw == nil || down == nil || len(http.Hosts) != 5 {
		t.Fatalf("runs: %v, want %v with 5 hosts each", slices.Collect(maps.Keys(runs)), cfg.Runs)
	}
	size := float64(res.Package.Bytes)
	// One copy per host, and a little more where `stork get` asked for a
	// chunk again after a stall.
	if o := float64(http.OriginSent) / size; o < 4.95 || o > 5.5 {
		t.Errorf("HTTP only: origin sent %.3f copies, want 5 (one per host)", o)
	}
	for i, want := range []float64{3, 2} {
		if in := float64(http.Links.SiteIn[i].Payload()) / size; in < want*0.97 || in > want*1.1 {
			t.Errorf("HTTP only: %.3f copies into site %d over its uplink, want %.0f (one per host)", in, i+1, want)
		}
	}
	var fromPeers int64
	for _, h := range sw.Hosts {
		fromPeers += h.FromPeers
	}
	if o := float64(sw.OriginSent) / size; o >= 2.5 || fromPeers == 0 {
		t.Errorf("%s: origin sent %.3f copies, peers %d bytes: want the hosts to share", swarm, o, fromPeers)
	}
	if min := 2 * cfg.Delay.Seconds(); !(sw.RTTWAN >= min) {
		t.Errorf("%s: round trip across sites %.4f s, want at least twice the %v delay", swarm, sw.RTTWAN, cfg.Delay)
	}
	if !strings.Contains(down.Fault, "link down") || !strings.Contains(down.Fault, "link up") {
		t.Errorf("link-down: fault %q: want the link taken down and up", down.Fault)
	}
	for _, f := range []string{testbed.ReportFile, "runs.csv", "hosts.csv", "sites.csv", "progress.csv", testbed.PlotCompletion} {
		if st, err := os.Stat(filepath.Join(cfg.Dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("report file %s: %v", f, err)
		}
	}
	sc, err := simulations.LoadScenario(filepath.Join(cfg.Dir, testbed.ScenarioFile))
	if err != nil || sc.Hosts != 5 || sc.Sites != 2 || int64(sc.PackageSize) != res.Package.Bytes {
		t.Errorf("scenario file: %+v, %v: want 5 hosts in 2 sites, the package's size", sc, err)
	}
	if len(res.Sim) == 0 {
		t.Error("no simulator figures")
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if prefix := testbed.NSPrefix + strconv.Itoa(os.Getpid()) + "-"; strings.Contains(string(out), prefix) {
		t.Errorf("namespaces left behind:\n%s", out)
	}
}
