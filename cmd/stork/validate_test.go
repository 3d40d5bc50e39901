package main

import (
	"bytes"
	"cmp"
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
// daemon --upload-rate, a flash crowd of fetches) and in the simulator
// (mean of 5 seeds). Origin copies, host offload, makespan and median
// completion must agree within validateMaxGap percent. Origin copies are
// the sharper figure: host offload stays near its ceiling of 1 - 1/hosts.
// The simulator runs the scenario's model (head_of_line off: the daemon
// sends a capped upload's chunks as parts with control messages between).
// The daemons run --no-pull-through: the simulator's swarm strategy models
// the swarm without cooperative origin fetching
// (TestValidateSimulatorCoop has it).
//
// Real origin bytes are what the origin process wrote to its sockets during
// the fetches (/proc/PID/io), responses cut off by a cancelling daemon
// included, as the simulator counts them; the daemons' bytes_from_origin
// (chunks kept) is logged beside.
//
// The real run is repeated once, with fresh daemons, if it misses: the
// test shares two cores with the rest of `go test ./...`, and a run
// starved of CPU is slower than its links (both runs are logged). Two
// misses fail.
func TestValidateSimulator(t *testing.T) {
	validateSimulator(t, simulations.Swarm, "--no-pull-through")
}

// TestValidateSimulatorCoop is TestValidateSimulator with cooperative
// origin fetching: the daemons with pull-through (their default) against
// the simulator's swarm-coop. The daemon paces its pull-through answers
// at --upload-rate with its sessions, so the scenario gives them no
// capacity of their own (pull_upload unset).
func TestValidateSimulatorCoop(t *testing.T) {
	validateSimulator(t, simulations.SwarmCoop)
}

// validateSimulator runs the validation scenario as real daemons (with
// the extra daemon flags) and as strategy st in the simulator, and fails
// if a figure's gap is over validateMaxGap three times in a row: a real
// run now and then takes half as long again as the others (not traced;
// the origin's rate and the uploads are the same), and one such run must
// not fail the suite.
func validateSimulator(t *testing.T, st simulations.Strategy, extra ...string) {
	if testing.Short() {
		t.Skip("starts 8 rate-capped daemons for about 10s")
	}
	const (
		hosts      = 8
		size       = 48 << 20
		originRate = 12 << 20
		uploadRate = 8 << 20
		attempts   = 3
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
	sim := validateSimRuns(t, sc, st, 5)

	r := newRepo(t)
	blob := filepath.Join(t.TempDir(), "blob.bin")
	writeFile(t, blob, randomBytes(t, size), 0o644)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "blob", "--version", "1.0.0", "--chunk-size", "1M", blob)
	url, origin := serveProc(t, r.dir, "--rate", strconv.Itoa(originRate))
	rate := append([]string{"--upload-rate", strconv.Itoa(uploadRate)}, extra...)

	hostBytes := float64(hosts) * size
	var missed []string
	for attempt := 1; attempt <= attempts; attempt++ {
		w0 := writtenBytes(t, origin.Pid)
		rr := validateRealRunAt(t, hosts, url, r.root, "blob", rate, "")
		done, kept := rr.done, rr.kept
		realOrigin := float64(writtenBytes(t, origin.Pid) - w0)
		rows := []validateRow{
			{"origin copies", realOrigin / size, sim.origin / size},
			{"host offload %", 100 * (1 - realOrigin/hostBytes), 100 * (1 - sim.origin/hostBytes)},
			{"makespan s", slices.Max(done), sim.makespan},
			{"median completion s", median(done), sim.median},
		}
		head := fmt.Sprintf("%s, %d hosts, %d MiB, origin %d B/s, uploads %d B/s, daemons %v; the daemons kept %.3f copies of the origin's",
			st, hosts, size>>20, originRate, uploadRate, extra, kept/size)
		var table string
		table, missed = validateTable(head, rows)
		load, _ := os.ReadFile("/proc/loadavg")
		sorted := slices.Sorted(slices.Values(done))
		t.Logf("attempt %d (load average %s): real daemons vs simulator:\n%s(hosts done at %.2f s; %d inferred a site; pulls %+v)", attempt, strings.Fields(string(load) + " ?")[0], table, sorted, rr.inferred, rr.pulls)
		if len(missed) == 0 {
			return
		}
	}
	for _, m := range missed {
		t.Error(m)
	}
}

// validateRow is one figure, real and simulated.
type validateRow struct {
	name      string
	real, sim float64
}

// validateTable formats rows under head with their gaps, and returns the
// table and the rows whose gap is over validateMaxGap.
func validateTable(head string, rows []validateRow) (string, []string) {
	var table strings.Builder
	var missed []string
	fmt.Fprintf(&table, "%s\n%-22s %10s %10s %8s\n", head, "figure", "real", "sim", "gap")
	for _, r := range rows {
		g := 100 * (r.sim - r.real) / r.real
		fmt.Fprintf(&table, "%-22s %10.3f %10.3f %+7.1f%%\n", r.name, r.real, r.sim, g)
		if !(math.Abs(g) <= validateMaxGap) {
			missed = append(missed, fmt.Sprintf("%s: real daemons %.3f, simulator %.3f: gap %+.1f%%, want within ±%d%%", r.name, r.real, r.sim, g, validateMaxGap))
		}
	}
	return table.String(), missed
}

// simFigures are the simulator's means over seeds.
type simFigures struct {
	origin, makespan, median float64
	// total: the origin's bytes with the scenario's metadata section
	// (simulations.Result.OriginTotal).
	total float64
	// moved: bytes sent host to host (cancelled and duplicate chunks
	// included) and from the origin.
	moved float64
}

// validateSimRuns runs st on sc with seeds 1..seeds and returns the means.
// A swarm-coop run's pull-through answers share the host's upload, as
// the daemon paces them at --upload-rate with its sessions' pieces.
func validateSimRuns(t *testing.T, sc simulations.Scenario, st simulations.Strategy, seeds int) simFigures {
	t.Helper()
	var f simFigures
	n := float64(seeds)
	for seed := range uint64(seeds) {
		sc.Seed = seed + 1
		res, err := simulations.Run(sc, st)
		if err != nil {
			t.Fatal(err)
		}
		var simDone []float64
		for _, h := range res.PerHost {
			simDone = append(simDone, h.Done-h.Arrival)
		}
		f.origin += res.OriginBytes / n
		f.total += res.OriginTotal() / n
		f.moved += res.OriginBytes / n
		for _, h := range res.PerHost {
			f.moved += h.Uploaded / n
		}
		f.makespan += res.Makespan / n
		f.median += median(simDone) / n
	}
	return f
}

// validateRealRun starts hosts fresh daemon processes (one bootstrap, the
// others joining through it), has every one fetch pkg (and its closure)
// at once, and returns each host's completion time (seconds from the
// common start) and the bytes all of them took from the origin. The
// daemons are stopped before it returns.
func validateRealRun(t *testing.T, hosts int, url, root, pkg string, extra []string) ([]float64, float64) {
	t.Helper()
	r := validateRealRunAt(t, hosts, url, root, pkg, extra, "")
	return r.done, r.kept
}

// realRun is what validateRealRunAt measured.
type realRun struct {
	done []float64 // each host's completion, seconds from t0
	kept float64   // bytes the daemons kept from the origin
	t0   time.Time // when the fetches started
	// cpu: CPU seconds (user and system) the daemons used from t0 until
	// the last fetch ended.
	cpu float64
	// pulls: the daemons' pull-through and origin counters, summed.
	pulls node.PullStatus
	// moved: the bytes the daemons sent to peers (pull-through answers,
	// and parts of chunks cancelled under way, included) and received
	// from the origin, summed (Status); fromPeers the verified chunk
	// bytes they received from peers.
	moved, fromPeers float64
	// inferred: the daemons that inferred a site from round trips (on
	// one loaded machine, from noise), and so ran the site policy.
	inferred int
	// hosts: each daemon's own figures, in start order.
	hosts []hostFigures
	// profile: the daemons' CPU seconds since t0, read about every
	// cpuSampleEvery, and at the last fetch's end (cpu).
	profile []cpuSample
}

// cpuSample is the daemons' CPU seconds since t0 (cpu) at seconds after
// it.
type cpuSample struct{ at, cpu float64 }

// cpuSampleEvery: how often validateRealRunAt reads the daemons' CPU.
const cpuSampleEvery = 50 * time.Millisecond

// cpuUntil returns the daemons' CPU seconds from t0 to at seconds after
// it, from the profile (linear between samples; the whole run's beyond).
func (r realRun) cpuUntil(at float64) float64 {
	prev := cpuSample{}
	for _, p := range r.profile {
		if p.at >= at {
			if p.at == prev.at {
				return p.cpu
			}
			return prev.cpu + (p.cpu-prev.cpu)*(at-prev.at)/(p.at-prev.at)
		}
		prev = p
	}
	if len(r.profile) == 0 {
		return math.NaN()
	}
	return prev.cpu
}

// cpuProfile is the cores the daemons used in each window of w seconds
// from t0, as one line.
func (r realRun) cpuProfile(w float64) string {
	var b strings.Builder
	end := 0.0
	if len(r.profile) > 0 {
		end = r.profile[len(r.profile)-1].at
	}
	for t := 0.0; t < end; t += w {
		fmt.Fprintf(&b, " %.2f", (r.cpuUntil(min(t+w, end))-r.cpuUntil(t))/(min(t+w, end)-t))
	}
	return strings.TrimSpace(b.String())
}

// hostFigures is one daemon's part of a realRun, from its Status.
type hostFigures struct {
	peer                  string
	done                  float64 // its fetch's end, seconds from t0
	fromOrigin, fromPeers int64   // chunk bytes kept, by where they came from
	originFetches         int64   // chunk requests it sent the origin
	upSession, upPull     int64   // bytes it sent peers, by route
}

// validateRealRunAt is validateRealRun returning a realRun. With logDir
// set, the daemons log at debug level and each one's log is written
// there (hNN.log, in start order, with t0.txt: the fetches' start).
func validateRealRunAt(t *testing.T, hosts int, url, root, pkg string, extra []string, logDir string) realRun {
	t.Helper()
	var env []string
	if logDir != "" {
		env = []string{"STORK_DEBUG=1", "STORK_LOG_FORMAT=json"}
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	datas := make([]string, hosts)
	procs := make([]*daemonProc, hosts)
	for i := range datas {
		d, err := os.MkdirTemp("", "stork-validate-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(d)
		datas[i] = d
	}
	defer func() {
		for _, p := range procs {
			if p != nil {
				p.kill()
			}
		}
	}()
	procs[0] = startDaemonProcEnv(t, env, datas[0], url, root, extra...)
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
	for i, d := range datas[1:] {
		procs[i+1] = startDaemonProcEnv(t, env, d, url, root, append(slices.Clone(extra), "--bootstrap", boot)...)
	}
	waitOverlay(t, datas, time.Duration(10+hosts)*time.Second)

	// The flash crowd: every host fetches at once.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	done := make([]float64, hosts)
	errs := make([]error, hosts)
	var wg sync.WaitGroup
	cpu0 := procsCPU(procs)
	t0 := time.Now()
	// The daemons' CPU over the run, every cpuSampleEvery (cpuProfile).
	var profile []cpuSample
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(cpuSampleEvery)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				profile = append(profile, cpuSample{time.Since(t0).Seconds(), procsCPU(procs) - cpu0})
			}
		}
	}()
	for i, d := range datas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = node.NewClient(d).Fetch(ctx, pkg, nil)
			done[i] = time.Since(t0).Seconds()
		}()
	}
	wg.Wait()
	close(stopSampling)
	<-sampled
	cpuEnd := time.Since(t0).Seconds()
	cpu := procsCPU(procs) - cpu0
	var origin, moved, fromPeers float64
	var pulls node.PullStatus
	inferred := 0
	figs := make([]hostFigures, hosts)
	for i, d := range datas {
		if errs[i] != nil {
			t.Fatalf("host %d: fetch: %v", i, errs[i])
		}
		st, err := node.NewClient(d).Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		origin += float64(st.BytesFromOrigin)
		moved += float64(st.BytesUploaded + st.BytesFromOrigin)
		fromPeers += float64(st.BytesFromPeers)
		p := &pulls
		p.Streams += st.Pulls.Streams
		p.Silent += st.Pulls.Silent
		p.Claimed += st.Pulls.Claimed
		p.Refused += st.Pulls.Refused
		p.OriginFetches += st.Pulls.OriginFetches
		p.OriginFallbacks += st.Pulls.OriginFallbacks
		if st.SiteSource == "inferred" {
			inferred++
		}
		figs[i] = hostFigures{peer: st.PeerID, done: done[i], fromOrigin: st.BytesFromOrigin, fromPeers: st.BytesFromPeers,
			originFetches: st.Pulls.OriginFetches, upSession: st.Pulls.UpSession, upPull: st.Pulls.UpPull}
	}
	if logDir != "" {
		writeDaemonLogs(t, logDir, t0, procs, figs)
	}
	return realRun{done: done, kept: origin, t0: t0, cpu: cpu, pulls: pulls, inferred: inferred, moved: moved, fromPeers: fromPeers, hosts: figs,
		profile: append(profile, cpuSample{cpuEnd, cpu})}
}

// writeDaemonLogs stops the daemons of procs and writes each one's log
// (its stderr) to dir as hNN.log, t0 (RFC 3339) to t0.txt and each
// host's peer ID (hNN ID, a line each) to peers.txt.
func writeDaemonLogs(t *testing.T, dir string, t0 time.Time, procs []*daemonProc, hosts []hostFigures) {
	t.Helper()
	var peers strings.Builder
	for i, h := range hosts {
		fmt.Fprintf(&peers, "h%02d %s\n", i, h.peer)
	}
	if err := os.WriteFile(filepath.Join(dir, "peers.txt"), []byte(peers.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "t0.txt"), []byte(t0.Format(time.RFC3339Nano)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, p := range procs {
		p.kill() // its stderr is complete once it has exited
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("h%02d.log", i)), p.stderr.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// hostTable is a run's figures host by host (r.hosts), one package of
// size bytes: when each ended, what it kept from the origin and from
// peers, and what it sent peers by route, in MiB and in copies of the
// package; the hosts that sent most first.
func hostTable(r realRun, size float64) string {
	hs := slices.Clone(r.hosts)
	idx := make(map[string]int, len(hs))
	for i, h := range r.hosts {
		idx[h.peer] = i
	}
	slices.SortStableFunc(hs, func(a, b hostFigures) int {
		return cmp.Compare(b.upSession+b.upPull, a.upSession+a.upPull)
	})
	const mib = 1 << 20
	var b strings.Builder
	b.WriteString("| host | peer | done s | from origin MiB | origin requests | from peers MiB | sent in sessions MiB | sent as pull answers MiB | sent, copies |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, h := range hs {
		peer := h.peer
		if len(peer) > 8 {
			peer = "…" + peer[len(peer)-6:]
		}
		fmt.Fprintf(&b, "| h%02d | %s | %.3f | %.2f | %d | %.2f | %.2f | %.2f | %.2f |\n", idx[h.peer], peer, h.done,
			float64(h.fromOrigin)/mib, h.originFetches, float64(h.fromPeers)/mib, float64(h.upSession)/mib, float64(h.upPull)/mib,
			float64(h.upSession+h.upPull)/size)
	}
	return b.String()
}

// procsCPU returns the CPU seconds (utime + stime in /proc/PID/stat) the
// running daemons of procs used so far; NaN where there is no /proc.
func procsCPU(procs []*daemonProc) float64 {
	var sum float64
	for _, p := range procs {
		if p == nil || p.cmd.Process == nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			return math.NaN()
		}
		// The fields after the command name (which may hold spaces):
		// state is field 3, utime 14 and stime 15.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			return math.NaN()
		}
		u, err1 := strconv.ParseFloat(f[11], 64)
		k, err2 := strconv.ParseFloat(f[12], 64)
		if err1 != nil || err2 != nil {
			return math.NaN()
		}
		sum += (u + k) / clockTicks
	}
	return sum
}

// clockTicks is the kernel's USER_HZ, 100 on Linux.
const clockTicks = 100

// writtenBytes returns what process pid has handed to write(2) and send(2)
// so far (wchar in /proc/PID/io); the test is skipped where there is none.
func writtenBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Skipf("no per-process I/O counters: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/io: %q", pid, l)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/io has no wchar", pid)
	return 0
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
