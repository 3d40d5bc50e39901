package simulations

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// A workload of many packages (Scenario.Packages), as the daemon fetches
// a closure: every host downloads the packages in one order, Parallel of
// them at a time (0: all at once; the daemon runs 16 downloads at once,
// node.MaxDownloads), each package its own swarm (its own Pickers,
// members, sessions and provider records, Policy.ProviderDelay applying
// to each) and all of them one run: one clock, and the same host upload
// links, receivers, site links and origin, so that packages fetched at
// the same time share them as the daemon's downloads do.
//
// A host's first package starts at its arrival (Scenario.Arrival);
// package k after it starts Overhead after package k-1 started, or after
// one of the host's Parallel downloads ended if that is later: the
// daemon starts the downloads of a closure one after the other, each
// after its own start-up (its record in the store, its provider record
// and lookup), a cost per package given as a duration. With a shared CPU
// and CPU.PerPackage (cpu.go), that instant is when package k's start-up
// work begins instead, in a download slot of its own (the daemon takes
// the slot first, then starts the package in its download goroutine),
// and the package starts when the work is done: up to Parallel start-ups
// of a host run side by side, each its own share of the cores.
//
// Each package is a sim on the shared engine; the engine tags every
// event and flow with the package whose sim made it (engine.tag) and the
// run hands each to that sim.

// WorkloadSizes draws the sizes of sc.Packages (seeded by Packages.Seed,
// else sc.Seed), cut to Packages.MaxSize.
func WorkloadSizes(sc Scenario) ([]int64, error) {
	d, err := ReadSizeDist(sc.Packages.Sizes)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: packages: %w", sc.Name, err)
	}
	seed := sc.Packages.Seed
	if seed == 0 {
		seed = sc.Seed
	}
	r := rand.New(rand.NewPCG(seed, 0x9ac4))
	sizes := make([]int64, sc.Packages.Count)
	for k := range sizes {
		sizes[k] = d.Sample(r.Float64(), r.Float64())
		if m := int64(sc.Packages.MaxSize); m > 0 {
			sizes[k] = min(sizes[k], m)
		}
	}
	return sizes, nil
}

// maxWorkloadPackages: a package's index must fit an event's tag.
const maxWorkloadPackages = math.MaxUint16 + 1

// workloadRun is one run of a workload's packages.
type workloadRun struct {
	sc       Scenario
	e        *engine
	sims     []*sim // nil: a package no host has started yet (newPackage)
	sizes    []int64
	overhead float64
	next     []int     // each host's next package to start
	last     []float64 // when each host started its latest package
	done     int       // packages every host has
	keep     bool      // tests: release no package
	// relArrival, relDone: each host's earliest arrival and latest end
	// in the packages released (release).
	relArrival, relDone []float64
	noPrune             bool // tests: keep the sessions between done hosts (prune.go)
	// live: packages made and not released; peakLive the most at once.
	live, peakLive int
	maxT           float64
	// job: each package starts after its start-up work on the shared CPU
	// (CPU.PerPackage), which holds one of the host's download slots;
	// slots: each host's slots free (Parallel), a start-up's taken when
	// it is scheduled and given back when the package is done.
	job   bool
	slots []int
}

// runWorkload runs sc.Packages with strategy st (sc has its defaults),
// calling onMany every memSampleEveryEvts events. The Result adds up the
// packages' sims: PackageBytes is the workload's bytes, a host's Arrival
// its first package's start and Done its last package's end.
func runWorkload(sc Scenario, st Strategy, onMany func(now float64, events int64)) (*Result, error) {
	sizes, err := WorkloadSizes(sc)
	if err != nil {
		return nil, err
	}
	if len(sizes) > maxWorkloadPackages {
		return nil, fmt.Errorf("scenario %s: packages.count %d: at most %d", sc.Name, len(sizes), maxWorkloadPackages)
	}
	w := newWorkload(sc, st, sizes)
	if err := w.run(onMany); err != nil {
		return nil, err
	}
	return w.result(sizes), nil
}

// newWorkload builds the sims of the packages hosts start at once on one
// engine and schedules those starts; the others are made as hosts start
// them (hostDone).
func newWorkload(sc Scenario, st Strategy, sizes []int64) *workloadRun {
	return newWorkloadMade(sc, st, sizes, false)
}

// newWorkloadMade is newWorkload; eager (tests) makes every package's sim
// at the start, as before packages were made when started.
func newWorkloadMade(sc Scenario, st Strategy, sizes []int64, eager bool) *workloadRun {
	n := sc.Hosts
	w := &workloadRun{sc: sc, e: &engine{pend: make([]int32, len(sizes))}, overhead: sc.Packages.Overhead.Seconds(),
		next: make([]int, n), last: make([]float64, n), sims: make([]*sim, len(sizes)), sizes: sizes}
	par := sc.Packages.Parallel
	if par <= 0 || par > len(sizes) {
		par = len(sizes)
	}
	arrive := rand.New(rand.NewPCG(sc.Seed, 0xa77))
	for h := range n {
		if sc.Arrival.Pattern == ArrivalStaggered {
			w.last[h] = arrive.Float64() * sc.Arrival.Over.Seconds()
		}
	}
	w.job = sc.CPU.Cores > 0 && sc.CPU.PerPackage > 0
	var total float64
	for k, size := range sizes {
		total += float64(size)
		if k >= par && !eager {
			continue // made when a host starts it (hostDone)
		}
		starts := make([]float64, n)
		for h := range starts {
			starts[h] = math.Inf(1)
			if k < par && !w.job {
				starts[h] = w.last[h] + float64(k)*w.overhead
				w.next[h] = k + 1
			}
		}
		w.newPackage(st, k, starts)
	}
	if w.job {
		w.slots = make([]int, n)
		for h := range n {
			w.slots[h] = par
			w.chain(int32(h))
		}
	} else {
		for h := range n {
			w.last[h] += float64(w.next[h]-1) * w.overhead
		}
	}
	all := sc
	all.Packages = Packages{}
	all.PackageSize = Size(total)
	// A generous limit, as sim.setLimits: a hundred times the slowest
	// plausible run (every VM's copy from the origin).
	perVM := float64(sc.Hosts*sc.VMsPerHost) * total / float64(sc.OriginUpload)
	w.maxT = 100*max(FluidBound(all), perVM, cpuBound(sc, total, len(sizes))) + float64(len(sizes))*w.overhead + sc.Arrival.Over.Seconds() + 600
	return w
}

// newPackage makes package k's sim on the workload's engine, its hosts
// starting at starts (+Inf: not yet). Packages past the first Parallel
// are made when their first host starts them, so that a workload holds
// state only for the packages some host has started and not every host
// finished (release): with Parallel downloads per host, a few times
// Parallel packages, not all of them.
func (w *workloadRun) newPackage(st Strategy, k int, starts []float64) *sim {
	pk := w.sc
	pk.Packages = Packages{}
	pk.PackageSize = Size(w.sizes[k])
	tag := w.e.tag
	w.e.tag = uint16(k)
	s := newSimAt(pk, st, starts, w.e)
	w.e.tag = tag
	w.e.ids = s.ids // one table of peer IDs for every package
	s.coop.pkg = k
	s.fanPar = false // one event loop for every package (no pipe, no helper)
	s.onDone = w.hostDone
	s.onJob = w.jobDone
	s.pruneOn = s.pruneOn && !w.noPrune
	w.sims[k] = s
	w.live++
	w.peakLive = max(w.peakLive, w.live)
	return s
}

// newLater makes package k, which no host has started yet.
func (w *workloadRun) newLater(k int) {
	starts := make([]float64, w.sc.Hosts)
	for i := range starts {
		starts[i] = math.Inf(1)
	}
	w.newPackage(w.sims[0].strat, k, starts)
}

// hostDone: host h has the package of the sim now running (e.tag); it
// starts its next package if it waits for a free download.
func (w *workloadRun) hostDone(h int32) {
	if w.job {
		w.slots[h]++
		w.chain(h)
		return
	}
	k := w.next[h]
	if k >= len(w.sims) {
		return
	}
	if w.sims[k] == nil {
		w.newLater(k)
	} else if !math.IsInf(w.sims[k].hosts[h].arrival, 1) {
		return
	}
	w.next[h]++
	t := max(w.e.now, w.last[h]) + w.overhead
	w.last[h] = t
	tag := w.e.tag
	w.e.tag = uint16(k)
	w.sims[k].hosts[h].arrival = t
	w.sims[k].schedule(t, evArrive, h, 0, 0)
	w.e.tag = tag
}

// chain schedules the start-up work of host h's next packages, one in
// each free download slot, as hostDone would start them without a CPU:
// the first at the host's arrival, each later one Overhead after the one
// before it began, and not before now.
func (w *workloadRun) chain(h int32) {
	for w.slots[h] > 0 && w.next[h] < len(w.sims) {
		k := w.next[h]
		if w.sims[k] == nil {
			w.newLater(k)
		}
		t := w.last[h]
		if k > 0 {
			t = max(w.e.now, w.last[h]) + w.overhead
		}
		w.last[h] = t
		w.next[h]++
		w.slots[h]--
		tag := w.e.tag
		w.e.tag = uint16(k)
		w.sims[k].schedule(t, evJob, h, 0, 0)
		w.e.tag = tag
	}
}

// jobDone: host h's start-up work for the package of the sim now running
// (e.tag) is done: the package starts in the slot its start-up held.
func (w *workloadRun) jobDone(h int32) {
	w.sims[w.e.tag].arrive(h, false)
}

// run is sim.run for every package at once: each event and finished flow
// goes to the sim of its package.
func (w *workloadRun) run(onMany func(now float64, events int64)) error {
	e := w.e
	finished := make([]bool, len(w.sims))
	for w.done < len(w.sims) {
		sid, ts := e.nextServer()
		if e.events.empty() && math.IsInf(ts, 1) {
			return fmt.Errorf("%w: %s workload, %d hosts: nothing left to happen with %d of %d packages unfinished",
				ErrUnfinished, w.sims[0].strat, w.sc.Hosts, len(w.sims)-w.done, len(w.sims))
		}
		var s *sim
		if !e.events.empty() && e.events.nextT() <= ts {
			ev := e.events.pop()
			e.pend[ev.pkg]--
			e.now = max(e.now, ev.t)
			e.tag = ev.pkg
			s = w.sims[ev.pkg]
			s.handle(ev)
		} else {
			e.now = max(e.now, ts)
			id := e.finishing(sid)
			e.tag = e.flows[id].pkg
			s = w.sims[e.tag]
			if !e.pieceNext(id) {
				s.flowDone(id) // not a piece of a flow with more to send
			}
		}
		if s.pruneDue() {
			s.prune()
		}
		if s.finished && !finished[e.tag] {
			finished[e.tag] = true
			w.done++
		}
		if finished[e.tag] && e.pend[e.tag] == 0 && s.res == nil && !w.keep {
			w.release(s)
			w.live--
		}
		e.nEv++
		if e.afterEvent != nil {
			e.afterEvent()
		}
		if onMany != nil && e.nEv%memSampleEveryEvts == 0 {
			onMany(e.now, e.nEv)
		}
		if e.now > w.maxT {
			return fmt.Errorf("%w: %s workload, %d hosts: %d of %d packages unfinished at t=%.0fs",
				ErrUnfinished, w.sims[0].strat, w.sc.Hosts, len(w.sims)-w.done, len(w.sims), e.now)
		}
	}
	return nil
}

// result adds up the packages' results.
func (w *workloadRun) result(sizes []int64) *Result {
	var sum *Result
	var total float64
	for k, s := range w.sims {
		total += float64(sizes[k])
		r := s.res
		if r == nil {
			r = s.result()
		}
		if sum == nil {
			sum = r
			continue
		}
		sum.SiteBytes += r.SiteBytes
		sum.WANBytes += r.WANBytes
		sum.DuplicateBytes += r.DuplicateBytes
		for h, b := range s.resBytes {
			b.addTo(&sum.PerHost[h])
		}
		for h, hr := range r.PerHost {
			p := &sum.PerHost[h]
			p.Arrival = min(p.Arrival, hr.Arrival)
			p.Done = max(p.Done, hr.Done) // NaN (never done) stays NaN
			bytesOf(&hr).addTo(p)
		}
	}
	// Released packages' arrivals and ends, folded as they were released
	// (min and max give the same whatever the order).
	for h := range w.relArrival {
		p := &sum.PerHost[h]
		p.Arrival = min(p.Arrival, w.relArrival[h])
		p.Done = max(p.Done, w.relDone[h])
	}
	// The origin, the clock and the event count are the shared engine's:
	// the first package's result has them whole.
	all := w.sc
	all.Packages = Packages{}
	all.PackageSize = Size(total)
	sum.PackageBytes = total
	sum.Bound = FluidBound(all)
	sum.summarise()
	return sum
}

// release keeps only the result of a package every host has and none of
// whose events or flows is left (engine.pend): nothing can change it any
// more, so its hosts, sessions, have-maps and member lists are dropped.
// Per host and package, a workload then holds state only while the
// package runs; a run of 10,000 hosts fetching 300 packages needs it.
// The result is the one the package would give at the end of the run:
// its own figures no longer change, and the workload's origin bytes,
// clock and events are read from the first package, which its origin
// samples keep running to the end. Of its hosts' results it keeps the
// bytes (hostBytes), which result adds up in the packages' order, and
// folds their arrivals and ends into the workload's earliest and latest.
func (w *workloadRun) release(s *sim) {
	r := s.resultWith(0) // the workload's origin figures are the first package's
	if w.relArrival == nil {
		w.relArrival, w.relDone = make([]float64, len(r.PerHost)), make([]float64, len(r.PerHost))
		for h := range w.relArrival {
			w.relArrival[h], w.relDone[h] = math.Inf(1), math.Inf(-1)
		}
	}
	s.resBytes = make([]hostBytes, len(r.PerHost))
	for h, hr := range r.PerHost {
		w.relArrival[h] = min(w.relArrival[h], hr.Arrival)
		w.relDone[h] = max(w.relDone[h], hr.Done)
		s.resBytes[h] = bytesOf(&hr)
	}
	r.PerHost = nil
	s.res = r
	s.release()
}

// hostBytes is a host's bytes in a released package's result.
type hostBytes struct {
	fromOrigin, fromSite, fromWAN, dup, uploaded float64
}

func bytesOf(hr *HostResult) hostBytes {
	return hostBytes{hr.FromOrigin, hr.FromSite, hr.FromWAN, hr.Duplicate, hr.Uploaded}
}

// addTo adds b to p's bytes, in the order result has always added them.
func (b hostBytes) addTo(p *HostResult) {
	p.FromOrigin += b.fromOrigin
	p.FromSite += b.fromSite
	p.FromWAN += b.fromWAN
	p.Duplicate += b.dup
	p.Uploaded += b.uploaded
}

// release drops s's state but its result (workloadRun.release).
func (s *sim) release() {
	s.hosts, s.ids, s.present, s.presPos, s.siteHost, s.sitePos = nil, nil, nil, nil, nil, nil
	s.haveM, s.chunkLen, s.old, s.memb, s.ring = nil, nil, nil, nil, nil
	s.coop = coopState{on: s.coop.on, two: s.coop.two, pkg: s.coop.pkg}
	s.tmo, s.wdr, s.ask, s.samples = nil, nil, nil, nil
	s.pruneQ, s.pruneHead = nil, 0
}
