package simulations

import (
	"math"
	"testing"
	"time"

	"github.com/storkpm/stork/transfer/policy"
)

// flashCrowd is the daemons' loopback measurement as a scenario: hosts
// all at once, one package of size in 256 KiB chunks, 1 Gbit/s hosts and
// origin in one site, with a provider delay of delay.
func flashCrowd(hosts int, size Size, delay time.Duration) Scenario {
	sc := DefaultScenario()
	sc.Name = "flash"
	sc.Hosts = hosts
	sc.Sites = 1
	sc.VMsPerHost = 1
	sc.PackageSize = size
	sc.ChunkSize = 256 << 10
	sc.HostUpload = Dist{{Rate: 125e6, Weight: 1}}
	sc.HostDownload = Dist{{Rate: 125e6, Weight: 1}}
	sc.OriginUpload = 125e6
	sc.Latency = Latency{Site: Duration(100 * time.Microsecond), Origin: Duration(time.Millisecond)}
	sc.Policy.ProviderDelay = Duration(delay)
	sc.Policy.FindInterval = Duration(time.Second)
	sc.Seed = 3
	return sc
}

func copies(r *Result) float64 { return r.OriginBytes / r.PackageBytes }

// checkComplete fails unless every host finished and received every
// byte (at least once: the part of a cancelled origin transfer that was
// sent counts as received, not as a duplicate).
func checkComplete(t *testing.T, r *Result) {
	t.Helper()
	if r.Finished != r.Hosts {
		t.Fatalf("%s: %d of %d hosts finished", r.Strategy, r.Finished, r.Hosts)
	}
	for _, h := range r.PerHost {
		if got := h.FromOrigin + h.FromSite + h.FromWAN - h.Duplicate; got < r.PackageBytes-1 {
			t.Errorf("%s: host %d received %v useful bytes, want %v", r.Strategy, h.Host, got, r.PackageBytes)
		}
	}
}

// TestDiscoveryDelayFlashCrowd: hosts that learn of each other's
// downloads only once provider records are out fetch a small package
// from the origin alone, as the daemons do; learning at once they split
// the origin's chunks exactly.
func TestDiscoveryDelayFlashCrowd(t *testing.T) {
	t.Parallel()
	r := run(t, flashCrowd(24, 1<<20, 0), Swarm)
	checkComplete(t, r)
	if c := copies(r); c > 1.1 {
		t.Errorf("no provider delay: %.2f origin copies, want about 1", c)
	}
	r = run(t, flashCrowd(24, 1<<20, time.Second), Swarm)
	checkComplete(t, r)
	if c := copies(r); c <= 10 {
		t.Errorf("provider delay 1s: %.2f origin copies, want more than 10", c)
	}
}

// TestCoopFlashCrowd: with the provider delay, cooperative fetching
// still fetches each chunk from the origin about once: the fetchers are
// ranked among the overlay's members, not the providers found.
func TestCoopFlashCrowd(t *testing.T) {
	t.Parallel()
	sc := flashCrowd(24, 1<<20, time.Second)
	r := run(t, sc, SwarmCoop)
	checkComplete(t, r)
	if c := copies(r); c > 1.1 {
		t.Errorf("swarm-coop: %.2f origin copies, want at most 1.1", c)
	}
	if r := run(t, sc, Swarm); copies(r) <= 10 {
		t.Errorf("swarm: %.2f origin copies, want more than 10", copies(r))
	}
	// A larger package in more chunks, and with several sites.
	sc = flashCrowd(24, 16<<20, time.Second)
	sc.Sites = 3
	r = run(t, sc, SwarmCoop)
	checkComplete(t, r)
	if c := copies(r); c > 1.1 {
		t.Errorf("swarm-coop, 16 MiB over 3 sites: %.2f origin copies, want at most 1.1", c)
	}
}

func TestCoopChurnRefused(t *testing.T) {
	sc := flashCrowd(4, 1<<20, 0)
	sc.Churn.Fraction = 0.5
	if _, err := Run(sc, SwarmCoop); err == nil {
		t.Fatal("swarm-coop with churn ran; want ErrCoopChurn")
	}
}

// TestCoopPlots: the plots and CSV of runs with swarm-coop, over two
// host counts, are written with a line for swarm-coop.
func TestCoopPlots(t *testing.T) {
	t.Parallel()
	var rs []*Result
	for _, n := range []int{4, 12} {
		for _, st := range []Strategy{Swarm, SwarmCoop} {
			rs = append(rs, run(t, flashCrowd(n, 1<<20, time.Second), st))
		}
	}
	dir := t.TempDir()
	if _, err := WritePlots(dir, rs); err != nil {
		t.Fatalf("WritePlots: %v", err)
	}
	if err := WriteCSV(dir, rs); err != nil {
		t.Fatalf("WriteCSV: %v", err)
	}
	_, order, _ := byStrategy(rs)
	if len(order) != 2 || order[1] != SwarmCoop {
		t.Errorf("plotted strategies %v, want [swarm swarm-coop]", order)
	}
}

// TestCoopLarge: swarm-coop at 1,000 hosts, where HaveUpdates fan out
// on a second goroutine (pipe.go), completes with one origin copy.
func TestCoopLarge(t *testing.T) {
	t.Parallel()
	sc := flashCrowd(fanParallelHosts, 2<<20, time.Second)
	r := run(t, sc, SwarmCoop)
	checkComplete(t, r)
	if c := copies(r); c > 1.1 {
		t.Errorf("swarm-coop, %d hosts: %.2f origin copies, want at most 1.1", sc.Hosts, c)
	}
}

// capped is the validation scenario (testdata/validate): 8 hosts, 48 MiB
// in 1 MiB chunks, origin 12 MiB/s, uploads capped at 8 MiB/s, a
// loopback's download and latency.
func capped(pullUpload Rate) Scenario {
	sc := DefaultScenario()
	sc.Name = "capped"
	sc.Hosts, sc.Sites, sc.VMsPerHost = 8, 1, 1
	sc.PackageSize, sc.ChunkSize = 48<<20, 1<<20
	sc.OriginUpload = 12 << 20
	sc.HostUpload = Dist{{Rate: 8 << 20, Weight: 1}}
	sc.HostDownload = Dist{{Rate: 1.25e9, Weight: 1}}
	sc.PullUpload = pullUpload
	l := Duration(50 * time.Microsecond)
	sc.Latency = Latency{Site: l, WAN: l, Origin: l}
	sc.Policy.Tick = Duration(20 * time.Millisecond)
	sc.Policy.MaxPeers = 32
	sc.Seed = 1
	return sc
}

// TestCoopAskersPullEveryWindowChunk: as the daemon does, a host that
// sends an origin request to the chunk's fetcher announces no Fetching
// (the fetcher does not either), so every host asks the fetcher for each
// chunk of the origin window, and with pull-through answers not paced by
// the upload cap (pull_upload) the chunks spread at the link's rate: the
// run ends soon after the origin has sent the package once (5.39 s
// against its 4 s: the last chunks wait for the end game, whose delay
// follows the host's response times, seconds here while the whole window
// is asked at once). Askers announcing a Fetching kept the others off the
// chunk until it reached them through the capped swarm (7.2 s, 1.8 times
// the origin's 4 s).
func TestCoopAskersPullEveryWindowChunk(t *testing.T) {
	t.Parallel()
	sc := capped(1.25e9)
	r := run(t, sc, SwarmCoop)
	checkComplete(t, r)
	origin := float64(sc.PackageSize) / float64(sc.OriginUpload)
	if c := copies(r); c > 1.01 {
		t.Errorf("origin copies %.3f, want 1", c)
	}
	if r.Makespan > 1.5*origin {
		t.Errorf("makespan %.2fs, want within 50%% of the origin's %.2fs", r.Makespan, origin)
	}
}

// TestCoopPullUploadShared: without pull_upload a fetcher's pull-through
// answers share its upload link with its swarm uploads, so the run cannot
// beat the fluid bound of the capped uploads; with it the answers leave
// by a server of their own and the uploads of pull flows are counted.
func TestCoopPullUploadShared(t *testing.T) {
	t.Parallel()
	sc := capped(0)
	r := run(t, sc, SwarmCoop)
	checkComplete(t, r)
	if b := FluidBound(sc); r.Makespan < b {
		t.Errorf("pull answers on the host's link: makespan %.2fs, want at least the fluid bound %.2fs", r.Makespan, b)
	}
	free := run(t, capped(1.25e9), SwarmCoop)
	var up, upFree float64
	for k := range r.PerHost {
		up += r.PerHost[k].Uploaded
		upFree += free.PerHost[k].Uploaded
	}
	// Every host's copies came from hosts (the origin sent one).
	want := float64(sc.Hosts-1) * float64(sc.PackageSize)
	for _, u := range []float64{up, upFree} {
		if u < want*0.99 {
			t.Errorf("hosts uploaded %.0f bytes, want at least %.0f", u, want)
		}
	}
	if free.Makespan >= r.Makespan {
		t.Errorf("makespan %.2fs with pull_upload, %.2fs without: want shorter with", free.Makespan, r.Makespan)
	}
}

func TestPullUploadNegativeRefused(t *testing.T) {
	sc := capped(-1)
	if err := sc.Validate(); err == nil {
		t.Fatal("Validate accepted pull_upload -1")
	}
}

// TestCoopCancelStopsPull: a host that got a chunk from a peer while its
// pull-through request was open cancels the request, as the daemon resets
// its stream, and the fetcher's answer stops: the reference scenario's
// hosts (100, 64 MiB) receive under 0.5% of their bytes twice. Answers
// that ran on to the end gave 2.2% (146 MB), and a longer makespan.
func TestCoopCancelStopsPull(t *testing.T) {
	t.Parallel()
	sc := DefaultScenario()
	sc.Hosts = 100
	sc.PackageSize = 64 << 20
	r := run(t, sc, SwarmCoop)
	checkComplete(t, r)
	if got, all := r.DuplicateBytes, r.PackageBytes*float64(r.Hosts); got > 0.005*all {
		t.Errorf("duplicate bytes %.0f of %.0f delivered (%.2f%%), want under 0.5%%", got, all, 100*got/all)
	}
}

// testbedSites is the testbed's scenario (docs/testbed.md, its
// scenario.json) with a package of size: 12 hosts in 3 sites of 4,
// 1 Gbit/s hosts, 100 Mbit/s site links and origin, 20 ms between sites
// and to the origin, chunks of the real package's mean size.
func testbedSites(size Size) Scenario {
	sc := DefaultScenario()
	sc.Name = "testbed"
	sc.Hosts, sc.Sites, sc.VMsPerHost = 12, 3, 1
	sc.PackageSize, sc.ChunkSize = size, 577137
	sc.HostUpload = Dist{{Rate: 124e6, Weight: 1}}
	sc.HostDownload = Dist{{Rate: 124e6, Weight: 1}}
	sc.SiteUplink, sc.SiteDownlink, sc.OriginUpload = 12.4e6, 12.4e6, 12.4e6
	wan := Duration(20 * time.Millisecond)
	sc.Latency = Latency{Site: Duration(50 * time.Microsecond), WAN: wan, Origin: wan}
	sc.Policy.Tick = Duration(20 * time.Millisecond)
	sc.Policy.MaxPeers = 32
	sc.WriteAhead = true
	sc.Seed = 1
	return sc
}

// intoSites returns the copies of the package that entered each site over
// its downlink (from the origin and from other sites), as the testbed's
// harness counts them.
func intoSites(r *Result, sites int) []float64 {
	in := make([]float64, sites)
	for _, h := range r.PerHost {
		in[h.Site] += (h.FromOrigin + h.FromWAN) / r.PackageBytes
	}
	return in
}

// TestCoopFetcherAnnouncesOwnRequest: a fetcher already fetching a chunk
// for askers announces Fetching when its own download asks the origin for
// the chunk, as the daemon's download.schedule does for every chunk no
// fetcher ranks before it (its originFetch joins the fetch under way); the
// hosts that have not asked the fetcher yet then wait for its Have and
// take the chunk from a peer, often one of their own site. When such a
// fetcher said nothing, nearly every host pulled nearly every chunk from
// its fetcher, in another site two times in three, and more copies
// crossed into each site than the bound here, which lies between the
// figures with and without the announcement (docs/validation.md).
func TestCoopFetcherAnnouncesOwnRequest(t *testing.T) {
	t.Parallel()
	r := run(t, testbedSites(256<<20), SwarmCoop)
	checkComplete(t, r)
	in := intoSites(r, 3)
	mean := (in[0] + in[1] + in[2]) / 3
	if mean > 2.52 {
		t.Errorf("copies into each site %.2f %.2f %.2f (mean %.2f), want a mean of at most 2.52", in[0], in[1], in[2], mean)
	}
}

// TestSitesTwoLevel: with sites known and capped uplinks, swarm-sites
// takes each chunk into each site about once and the origin sends one
// copy, and the origin's bytes go to the chunks' global fetchers alone:
// each host receives from the origin exactly the chunks it ranks first
// for by policy.Fetchers with sites (none before it in its site, none
// upstream). In one level (swarm-coop) a host asks a fetcher of another
// site for two chunks in three, so about two copies or more cross into
// each site; under swarm-locality's claim policy the origin's chunks go
// to other hosts than the global fetchers.
func TestSitesTwoLevel(t *testing.T) {
	t.Parallel()
	sc := testbedSites(256 << 20).withDefaults()
	s := newSim(sc, SwarmSites)
	var ids []string
	ms := make([]policy.Member, sc.Hosts)
	for h := range ms {
		ms[h] = policy.Member{ID: s.ids[h], Site: s.siteName(int32(h))}
		ids = append(ids, string(s.ids[h]))
	}
	if err := s.run(); err != nil {
		t.Fatal(err)
	}
	r := s.result()
	checkComplete(t, r)
	if c := copies(r); c > 1.01 {
		t.Errorf("origin copies %.3f, want 1", c)
	}
	for k, c := range intoSites(r, sc.Sites) {
		if c > 1.25 {
			t.Errorf("copies into site %d: %.2f, want at most 1.25", k, c)
		}
	}
	for _, h := range r.PerHost {
		f := policy.NewFetchers(ms[h.Host], ms)
		var want float64
		for i := range sc.NumChunks() {
			key := chunkKey(0, i)
			if len(f.Before(key, 1, nil)) == 0 && len(f.Upstream(key, 1, nil)) == 0 {
				want += float64(min(int64(sc.ChunkSize), int64(sc.PackageSize)-int64(i)*int64(sc.ChunkSize)))
			}
		}
		if math.Abs(h.FromOrigin-want) > 1 {
			t.Errorf("host %s (site %d) received %.0f bytes from the origin, want %.0f: the chunks it is the global fetcher of", ids[h.Host], h.Site, h.FromOrigin, want)
		}
	}
}

// TestSitesWorkload: swarm-sites over many packages fetched one after
// another by hosts arriving over 2 s, in 3 sites, where a site's fetcher
// often has not started a package when its site's hosts ask it for a
// chunk: it asks the chunk's global fetcher for them (and keeps the
// chunk for its own download), every host completes, and the origin
// still sends each package about once, deterministically. A fetcher's
// own download, started while such a request is under way, joins it, as
// the daemon's joins the call under way: asking the global fetcher again
// would take a second copy into the site, received twice.
func TestSitesWorkload(t *testing.T) {
	t.Parallel()
	sc := workload(SwarmSites)
	sc.Sites = 3
	sc.Packages.Count = 20
	sc.Arrival = Arrival{Pattern: ArrivalStaggered, Over: Duration(2 * time.Second)}
	r := run(t, sc, SwarmSites)
	checkComplete(t, r)
	c := copies(r)
	if c > 1.1 {
		t.Errorf("origin copies %.2f, want at most 1.1", c)
	}
	if d := r.DuplicateBytes / r.PackageBytes; d > 0.005 {
		t.Errorf("%.4f copies of the packages received twice, want under 0.005", d)
	}
	if again := copies(run(t, sc, SwarmSites)); again != c {
		t.Errorf("again: %v origin copies, first %v: not deterministic", again, c)
	}
}

// lateCrowd is a one-chunk package of 1 MiB that hosts start 20 s apart
// in all (staggered), uploads fast enough that each has it long before
// the next starts: every later host has holders to find.
func lateCrowd(hosts int) Scenario {
	sc := flashCrowd(hosts, 1<<20, 0)
	sc.ChunkSize = 1 << 20
	sc.Arrival = Arrival{Pattern: ArrivalStaggered, Over: Duration(20 * time.Second)}
	return sc
}

// TestCoopFirstRequestToFetcher: a download's first origin request goes
// to its fetcher before its sessions tell it who holds the chunk, as the
// daemon's first schedule runs before its first session is open; the
// fetcher, holding the chunk, answers it. In a workload (every host a
// member from the start) every host takes the package from its fetcher,
// so the fetcher is the only host that uploads, where hosts asking the
// holders their sessions find spread the uploads over them.
func TestCoopFirstRequestToFetcher(t *testing.T) {
	t.Parallel()
	sc := lateCrowd(8)
	sc.PackageSize = 0
	sc.Packages = Packages{Count: 1, Sizes: "testdata/debian12-main-sizes.tsv", MaxSize: 1 << 20, Seed: 23}
	for seed := uint64(1); seed <= 3; seed++ {
		sc.Seed = seed
		r := run(t, sc, SwarmCoop)
		checkComplete(t, r)
		var uploaders []int
		for _, h := range r.PerHost {
			if h.Uploaded > 0 {
				uploaders = append(uploaders, h.Host)
			}
		}
		if len(uploaders) != 1 || copies(r) > 1.001 {
			t.Errorf("seed %d: hosts %v uploaded, origin copies %.2f; want the fetcher alone, 1 copy", seed, uploaders, copies(r))
		}
	}
}

// TestCoopFirstRankedAsksNext: one package, hosts present as they
// start, so a late host often ranks first for the chunk: it asks the
// next in rank, the first-ranked before it arrived, which holds the
// chunk, and the origin sends it once, not once per host that came to
// rank first.
func TestCoopFirstRankedAsksNext(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 3; seed++ {
		sc := lateCrowd(24)
		sc.Seed = seed
		r := run(t, sc, SwarmCoop)
		checkComplete(t, r)
		if c := copies(r); c > 1.001 {
			t.Errorf("seed %d: %.3f origin copies, want 1", seed, c)
		}
	}
}

// TestEndgameFollowsResponses: the end game waits for a chunk on its way
// and follows the host's response times, as the daemon's (h30-dups): a
// pull-through answer or a session's chunk that has started is asked of
// nobody else until it is four times the end game's delay old, and the
// delay is twice the mean time the host's requests take (at least 100
// ms, at most a quarter of the request timeout), over all its packages.
// In a workload of one-chunk packages fetched 16 at a time by 8 hosts
// with 4 MiB/s uploads, every package is in the end game from its first
// request and answers take seconds: with a fixed 100 ms delay the hosts
// asked a second peer for most of them, and moved 1.24-1.28 times the
// bytes they needed; then 1.09-1.11, and 1.13-1.17 since a host's
// upload is shared per peer (engine.go server: a receiver's answers
// and session chunks from one host share one share, so each takes
// longer); 1.02 since the end game does not ask a chunk of the peer
// sending it as its pull-through answer (TestEndgameNotAskedOfItsFetcher).
func TestEndgameFollowsResponses(t *testing.T) {
	t.Parallel()
	sc := capped(0)
	sc.HostUpload = Dist{{Rate: 4 << 20, Weight: 1}}
	sc.PackageSize = 0
	sc.Packages = Packages{Count: 60, Sizes: "testdata/debian12-main-sizes.tsv", MaxSize: 1 << 20, Seed: 23, Parallel: 16}
	sc.Policy.ProviderDelay = Duration(time.Millisecond)
	for seed := uint64(1); seed <= 3; seed++ {
		sc.Seed = seed
		r := run(t, sc, SwarmCoop)
		checkComplete(t, r)
		moved := r.OriginBytes
		for _, h := range r.PerHost {
			moved += h.Uploaded
		}
		if m := moved / (r.PackageBytes * float64(sc.Hosts)); m > 1.2 {
			t.Errorf("seed %d: moved %.3f times the bytes the hosts needed, want at most 1.2", seed, m)
		}
	}
}

// TestEndgameNotAskedOfItsFetcher: as the daemon's download.schedule
// (TestEndgameNotAskedOfItsOwnFetcher in transfer/swarm), the end game
// does not ask a peer over a session for a chunk that peer is sending
// the host as its pull-through answer. The scenario is `make
// validate-crowd`'s 4 MiB flash crowd (24 hosts, four 1 MiB chunks, in
// the end game from the first request; uploads 4 MiB/s, the origin 12
// MiB/s): while a chunk is new its fetcher is its only holder, and the
// askers' end games asked it for the chunk a second time, one more flow
// from the same upload beside its answer (up to 26 at once at seed 1),
// and the hosts moved 1.13-1.25 times the bytes they needed. No host may
// receive a chunk from a peer over a session and as that peer's answer
// at the same time.
func TestEndgameNotAskedOfItsFetcher(t *testing.T) {
	t.Parallel()
	sc := capped(0)
	sc.Hosts = 24
	sc.PackageSize = 4 << 20
	sc.HostUpload = Dist{{Rate: 4 << 20, Weight: 1}}
	for seed := uint64(1); seed <= 3; seed++ {
		sc.Seed = seed
		s := newSim(sc.withDefaults(), SwarmCoop)
		both := 0
		type from struct{ q, i int32 }
		pulls := map[from]bool{}
		s.afterEvent = func() {
			for h := range s.rin {
				r := &s.rin[h]
				clear(pulls)
				for k, c := range r.cls {
					if id := r.in[k]; id >= 0 && c&clsPull != 0 {
						pulls[from{s.srvHost(s.flows[id].srv), s.flows[id].chunk}] = true
					}
				}
				for k, c := range r.cls {
					if id := r.in[k]; id >= 0 && c&(clsPull|clsOrigin) == 0 && pulls[from{s.srvHost(s.flows[id].srv), s.flows[id].chunk}] {
						both++
					}
				}
			}
		}
		if err := s.run(); err != nil {
			t.Fatal(err)
		}
		r := s.result()
		checkComplete(t, r)
		moved := r.OriginBytes
		for _, h := range r.PerHost {
			moved += h.Uploaded
		}
		m := moved / (r.PackageBytes * float64(sc.Hosts))
		t.Logf("seed %d: makespan %.3fs, moved %.3f times the bytes needed", seed, r.Makespan, m)
		if both > 0 {
			t.Errorf("seed %d: %d times (events × hosts) a host was receiving a chunk from a peer over a session while that peer's pull-through answer for it was under way; moved %.3f times the bytes needed", seed, both, m)
		}
	}
}

// TestCoopScenarioFetchers: a scenario's fetchers (the daemons' draw,
// given by validate-crowd) replace the ranking of the simulated hosts'
// names: each chunk leaves the origin once, for the host given, and two
// chunks on one host take that host's upload twice as long as one
// chunk each on two hosts.
func TestCoopScenarioFetchers(t *testing.T) {
	t.Parallel()
	sc := capped(0)
	sc.Hosts = 24
	sc.PackageSize = 4 << 20
	sc.HostUpload = Dist{{Rate: 4 << 20, Weight: 1}}
	spread := run(t, sc, SwarmCoop)
	sc.Fetchers = []int{5, 17, 5, 17}
	r := run(t, sc, SwarmCoop)
	checkComplete(t, r)
	for _, h := range r.PerHost {
		want := 0.0
		if h.Host == 5 || h.Host == 17 {
			want = 2 << 20
		}
		if math.Abs(h.FromOrigin-want) > 1 {
			t.Errorf("host %d took %.0f bytes from the origin, want %.0f", h.Host, h.FromOrigin, want)
		}
	}
	t.Logf("makespan %.2fs, four fetchers %.2fs", r.Makespan, spread.Makespan)
	// 2 × 23 MiB of answers at 4 MiB/s, against 23 MiB.
	if r.Makespan < 1.7*spread.Makespan {
		t.Errorf("two chunks on each of two fetchers: makespan %.2fs, want at least 1.7 times the %.2fs of four fetchers", r.Makespan, spread.Makespan)
	}
	sc.Fetchers = []int{5, 17, 5}
	if _, err := Run(sc, SwarmCoop); err == nil {
		t.Error("fetchers for 3 of 4 chunks: no error")
	}
}
