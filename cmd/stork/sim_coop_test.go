package main

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"strconv"
	"testing"
)

// TestSimRunCoop: `stork sim run --strategy swarm-coop --provider-delay`
// runs the cooperative strategy with provider records found late: the
// swarm fetches a 1 MiB package from the origin once per host, swarm-coop
// about once; the CSV and plots are written.
func TestSimRunCoop(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	app := newApp(&out, io.Discard)
	err := app.Run([]string{"stork", "sim", "run", "--out", dir, "--hosts", "12", "--vms", "1", "--sites", "1",
		"--package-size", "1MiB", "--chunk-size", "256KiB", "--host-upload", "1Gbps", "--host-download", "1Gbps",
		"--origin-upload", "1Gbps", "--provider-delay", "1s", "--strategy", "swarm", "--strategy", "swarm-coop"})
	if err != nil {
		t.Fatalf("sim run: %v\n%s", err, out.String())
	}
	re := regexp.MustCompile(`(?m)^(swarm|swarm-coop)\s+12 hosts: .*\(([0-9.]+) copies\)`)
	got := map[string]float64{}
	for _, m := range re.FindAllStringSubmatch(out.String(), -1) {
		got[m[1]], _ = strconv.ParseFloat(m[2], 64)
	}
	if got["swarm"] < 6 || got["swarm-coop"] == 0 || got["swarm-coop"] > 1.1 {
		t.Errorf("origin copies %v, want swarm above 6 and swarm-coop at most 1.1\n%s", got, out.String())
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		t.Fatalf("no outputs in %s: %v", dir, err)
	}
}

// TestSimRunSites: `stork sim run --strategy swarm-sites` runs the swarm
// with sites and two-level cooperative fetching: over 3 sites behind
// 100 Mbit/s links the origin sends the package about once.
func TestSimRunSites(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	app := newApp(&out, io.Discard)
	err := app.Run([]string{"stork", "sim", "run", "--out", dir, "--hosts", "12", "--vms", "1", "--sites", "3",
		"--package-size", "8MiB", "--chunk-size", "256KiB", "--host-upload", "1Gbps", "--host-download", "1Gbps",
		"--origin-upload", "100Mbps", "--strategy", "swarm-sites"})
	if err != nil {
		t.Fatalf("sim run: %v\n%s", err, out.String())
	}
	m := regexp.MustCompile(`(?m)^swarm-sites\s+12 hosts: .*\(([0-9.]+) copies\)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no swarm-sites line in\n%s", out.String())
	}
	if c, _ := strconv.ParseFloat(m[1], 64); c == 0 || c > 1.1 {
		t.Errorf("origin copies %v, want at most 1.1\n%s", c, out.String())
	}
}

// TestSimRunMetadata: a scenario's metadata section adds a line with the
// origin's bytes, metadata included: swarm-coop fetches the files once,
// the swarm once per host (12 hosts: 12 × 100 + 1,000 and 12 × 1,100
// bytes beside the chunks).
func TestSimRunMetadata(t *testing.T) {
	dir := t.TempDir()
	scenario := dir + "/meta.json"
	if err := os.WriteFile(scenario, []byte(`{"hosts": 12, "package_size": "1MiB", "chunk_size": "256KiB", "metadata": {"per_host": 100, "files": 1000}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	app := newApp(&out, io.Discard)
	err := app.Run([]string{"stork", "sim", "run", "--out", dir, "--strategy", "swarm", "--strategy", "swarm-coop", scenario})
	if err != nil {
		t.Fatalf("sim run: %v\n%s", err, out.String())
	}
	re := regexp.MustCompile(`(?m)^  (swarm|swarm-coop): origin bytes, metadata included: [0-9]+ B \([0-9.]+ copies; metadata and manifests ([0-9]+) B`)
	got := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(out.String(), -1) {
		got[m[1]] = m[2]
	}
	if got["swarm"] != "13200" || got["swarm-coop"] != "2200" {
		t.Errorf("metadata bytes %v, want swarm 13200, swarm-coop 2200\n%s", got, out.String())
	}
}
