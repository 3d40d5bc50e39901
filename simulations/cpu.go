package simulations

import "fmt"

// This file is the shared CPU (Scenario.CPU): the cores of the one
// machine that runs every host, as on the testbed and in validate-crowd.
// See doc.go, "The shared CPU".

// CPU is the machine the hosts share. Cores 0 (or the section absent):
// each host has CPU enough, and nothing below applies. The costs are
// measured, not fitted: CPU-seconds a real run used, divided by what it
// moved or started (docs/validation.md says where each scenario's come
// from).
type CPU struct {
	// Cores: the machine's cores, shared by every host (and the origin).
	Cores float64 `json:"cores,omitempty"`
	// PerByte: CPU-seconds per byte moved from host to host, sender and
	// receiver together.
	PerByte float64 `json:"per_byte,omitempty"`
	// PerOriginByte: CPU-seconds per byte from the origin to a host, the
	// origin and the receiver together.
	PerOriginByte float64 `json:"per_origin_byte,omitempty"`
	// PerWANByte: CPU-seconds per byte that crosses a site link (between
	// sites, or from the origin), added to the above: a forwarder on the
	// same machine, as the testbed's router.
	PerWANByte float64 `json:"per_wan_byte,omitempty"`
	// PerPackage: CPU-seconds a host spends starting each package (its
	// metadata, manifest and records): a host's package starts once this
	// work is done, on its share of the cores; in a workload, each of
	// the host's download slots (Packages.Parallel) does its own
	// package's start-up, side by side, as the daemon's download
	// goroutines do.
	PerPackage float64 `json:"per_package,omitempty"`
	// PerCommit: CPU-seconds a host spends on each package after its
	// last chunk has arrived (the daemon's verifying and committing it
	// to the store, and what else its download does at the end), on its
	// share of the cores, one core at most: the host has the package
	// once this work is done.
	PerCommit float64 `json:"per_commit,omitempty"`
	// PerDownload: CPU-seconds a host spends on each package beside its
	// bytes while it downloads (the daemon's lookups, sessions and
	// bookkeeping): a job on its share of the cores, one core at most,
	// from the end of its start-up (Policy.DiscoveryDelay after it
	// arrives) on; the host has its chunks once they are in and this
	// work is done, then commits (PerCommit). Once per package: a host
	// that leaves and comes back does not start it again.
	PerDownload float64 `json:"per_download,omitempty"`
}

// validate reports the first negative field.
func (c CPU) validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"cores", c.Cores}, {"per_byte", c.PerByte}, {"per_origin_byte", c.PerOriginByte}, {"per_wan_byte", c.PerWANByte}, {"per_package", c.PerPackage}, {"per_commit", c.PerCommit}, {"per_download", c.PerDownload}} {
		if !(f.v >= 0) {
			return fmt.Errorf("cpu.%s %v: must not be negative", f.name, f.v)
		}
	}
	return nil
}

// Work is the CPU-seconds of moving bytes host to host, originBytes from
// the origin, wanBytes across site links and starting and committing
// packages (per host and package): a lower bound on a run's makespan is
// Work ÷ Cores.
func (c CPU) Work(bytes, originBytes, wanBytes float64, packages int) float64 {
	return c.PerByte*bytes + c.PerOriginByte*originBytes + c.PerWANByte*wanBytes + (c.PerPackage+c.PerCommit+c.PerDownload)*float64(packages)
}

// jobCap: a start-up job's rate cap, one core: its work is one
// goroutine's.
const jobCap = jobUnit

// jobUnit: a start-up job's work is counted in CPU-microseconds, so that
// the engine's floor of one unit per second on a flow's rate is far below
// any share of a core.
const jobUnit = 1e6

// cpuState is the engine's shared CPU: a link (engine.links[link]) of
// capacity Cores that every flow with a cost crosses, each flow weighted
// by its CPU-seconds per byte, levelled in CPU-seconds per second.
type cpuState struct {
	on   bool
	link int32
	// perByte, perOrigin, perWAN: CPU.PerByte, PerOriginByte, PerWANByte.
	perByte, perOrigin, perWAN float64
	origin                     int32 // the origin's server
	// perPackage, perCommit, perDownload: CPU.PerPackage, PerCommit,
	// PerDownload; jobBase: host h's start-up, commit and download work
	// runs on server jobBase+h, of the machine's cores, each job on one
	// core at most (jobCap; 0: no such work).
	perPackage, perCommit, perDownload float64
	jobBase                            int32
}

// cpuFlow is a flow's part in the shared CPU: w its CPU-seconds per
// byte (per unit of work for a job; 0: not on the CPU link), pos its
// place in the CPU link's flows; job: a host's start-up work, not bytes.
type cpuFlow struct {
	w   float64
	pos int32
	job bool
}

// joinCPU records flow id's part in the shared CPU and puts it on the
// CPU link if it has a cost; it returns that part, nil if none.
func (e *engine) joinCPU(id, sid, su, sd int32, job bool) *cpuFlow {
	if !e.cpu.on {
		return nil
	}
	for len(e.cpuF) < len(e.flows) {
		e.cpuF = append(e.cpuF, cpuFlow{})
	}
	cf := &e.cpuF[id]
	*cf = cpuFlow{w: e.cpu.weight(sid, su, sd, job), job: job}
	if cf.w <= 0 {
		return nil
	}
	l := &e.links[e.cpu.link]
	cf.pos = int32(len(l.flows))
	l.flows = append(l.flows, id)
	return cf
}

// onCPU returns flow id's part in the shared CPU, nil if it has none.
func (e *engine) onCPU(id int32) *cpuFlow {
	if !e.cpu.on || e.cpuF[id].w <= 0 {
		return nil
	}
	return &e.cpuF[id]
}

// isJob reports whether flow id is a host's start-up work.
func (e *engine) isJob(id int32) bool { return e.cpu.on && e.cpuF[id].job }

// weight is a flow's CPU-seconds per byte (per job unit for a job); 0:
// the flow costs no CPU and stays off the CPU link.
func (c *cpuState) weight(sid, su, sd int32, job bool) float64 {
	if job {
		return 1 / jobUnit
	}
	w := c.perByte
	if sid == c.origin {
		w = c.perOrigin
	}
	if su >= 0 || sd >= 0 {
		w += c.perWAN
	}
	return w
}

// evJob: a host's start-up work for a package begins: a=host.
const evJob = evPullFetch + 1

// initCPU adds the CPU link and the hosts' start-up servers (a run's or
// a workload's first package; the others share them).
func (s *sim) initCPU() {
	c := s.sc.CPU
	if c.Cores <= 0 {
		return
	}
	s.cpu = cpuState{on: true, link: int32(len(s.links)), perByte: c.PerByte, perOrigin: c.PerOriginByte,
		perWAN: c.PerWANByte, origin: s.origin, perPackage: c.PerPackage, perCommit: c.PerCommit, perDownload: c.PerDownload}
	s.links = append(s.links, link{capacity: c.Cores})
	s.relevel(s.cpu.link)
	if c.PerPackage > 0 || c.PerCommit > 0 || c.PerDownload > 0 {
		s.cpu.jobBase = int32(len(s.srvs))
		for range s.n {
			// A host's start-ups together may use every core; each
			// alone one (jobCap): a download goroutine is one thread.
			s.addServer(max(c.Cores, 1) * jobUnit)
		}
	}
}

// jobs reports whether a host's packages start after their start-up work.
func (s *sim) jobs() bool { return s.cpu.jobBase > 0 && s.cpu.perPackage > 0 }

// A job flow's vm: the host's commit work, its work beside its download
// (else its start-up).
const (
	commitJob = 1
	workJob   = 2
)

// evWork: a host's work beside its download begins: a=host.
const evWork = evJob + 1

// startJob starts host h's start-up work for this sim's package.
func (s *sim) startJob(h int32) {
	s.hosts[h].arrival = s.now // the host wants the package from here
	s.startFlowCPU(s.cpu.jobBase+h, h, -1, 0, s.cpu.perPackage*jobUnit, -1, -1, true)
}

// jobDone: host h's start-up work (flow id) is done; its package starts.
// Or its commit work: it has the package.
func (s *sim) jobDone(id int32) {
	h, vm := s.flows[id].dst, s.flows[id].vm
	s.endFlow(id)
	switch vm {
	case commitJob:
		s.commitDone(h)
		return
	case workJob:
		s.workDone(h)
		return
	}
	if s.onJob != nil {
		s.onJob(h)
		return
	}
	s.arrive(h, false)
}

// finish: host h has every chunk of the package. It has the package
// once its commit work (CPU.PerCommit) is done, on the shared cores; at
// once without it. Its download is running meanwhile: a chunk arriving
// late (a duplicate) finds it done with chunks and starts nothing more.
func (s *sim) finish(h int32) {
	hs := &s.hosts[h]
	if hs.working {
		hs.waitWork = true // its chunks are in; it finishes with its work
		return
	}
	if s.cpu.perCommit <= 0 || s.cpu.jobBase == 0 {
		s.hostDone(h)
		return
	}
	if hs.committing {
		return
	}
	hs.committing = true
	s.startFlowCPU(s.cpu.jobBase+h, h, -1, commitJob, s.cpu.perCommit*jobUnit, -1, -1, true)
}

// startWork starts host h's work beside its download (CPU.PerDownload),
// if it has any and is still downloading.
func (s *sim) startWork(h int32) {
	hs := &s.hosts[h]
	if hs.state != stActive {
		return
	}
	hs.working = true
	s.startFlowCPU(s.cpu.jobBase+h, h, -1, workJob, s.cpu.perDownload*jobUnit, -1, -1, true)
}

// workDone: host h's work beside its download is done; if its chunks are
// in, it finishes.
func (s *sim) workDone(h int32) {
	hs := &s.hosts[h]
	hs.working = false
	if hs.waitWork {
		hs.waitWork = false
		s.finish(h)
	}
}

// commitDone: host h's commit work is done, unless it left meanwhile.
func (s *sim) commitDone(h int32) {
	hs := &s.hosts[h]
	if !hs.committing || hs.state != stActive {
		return
	}
	hs.committing = false
	s.hostDone(h)
}

// cpuBound is the CPU-seconds of the scenario's work over its cores
// (every host receiving pkgBytes, each package started once per host):
// added to the run's time limit. 0 without a CPU.
func cpuBound(sc Scenario, pkgBytes float64, packages int) float64 {
	c := sc.CPU
	if c.Cores <= 0 {
		return 0
	}
	hosts := float64(sc.Hosts)
	w := max(c.PerByte, c.PerOriginByte) + c.PerWANByte
	return (w*hosts*pkgBytes*float64(sc.VMsPerHost) + (c.PerPackage+c.PerCommit+c.PerDownload)*hosts*float64(packages)) / c.Cores
}
