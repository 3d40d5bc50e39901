package simulations

import "fmt"

// This file is the repository's other files (Scenario.Metadata): the
// metadata and manifests a host fetches besides the package's chunks,
// counted in the origin's bytes, not simulated as flows.

// Metadata is what each host fetches of the repository besides chunks,
// as the daemon does (README, "The origin is a fallback"). Absent (both
// 0): none, and every figure is the chunks' alone.
//
// The bytes are counted, not moved: they take no time on any link and
// no CPU. They are small beside a package (a few KB per host against its
// chunks), and a host fetches them before its package starts, in the
// start-up that Policy.DiscoveryDelay or CPU.PerPackage already stands
// for, so that moving them as flows would count that time twice.
type Metadata struct {
	// PerHost: the bytes each host takes from the origin itself on a
	// refresh, whatever the strategy (the probe for a newer root, whose
	// absence only the origin can tell): one refresh per host, of its
	// one package or of a workload's whole closure; per VM with
	// origin-per-vm, every VM fetching alone.
	PerHost Size `json:"per_host,omitempty"`
	// Files: the bytes of the other files a host needs: timestamp.json
	// (with cooperative fetching a host takes it from a member, and the
	// origin confirms that copy with a 304 and no body), and those whose
	// bytes never change (metadata.CooperativePath: the fixed-version
	// snapshot, targets and delegated roles, and the manifest of every
	// package it fetches, a workload's every package's together). With
	// cooperative fetching (swarm-coop) the member ranked first fetches
	// each from the origin once for all; with swarm-sites once per site
	// (a site's first-ranked member); without it (every other strategy,
	// the daemon's --no-pull-through) each host asks the origin for
	// each (per VM with origin-per-vm).
	Files Size `json:"files,omitempty"`
}

// validate reports a negative field.
func (m Metadata) validate() error {
	if m.PerHost < 0 || m.Files < 0 {
		return fmt.Errorf("metadata.per_host %d, files %d: must not be negative", m.PerHost, m.Files)
	}
	return nil
}

// originBytes is what the origin sends of m to hosts hosts (vms VMs per
// host) over sites sites with strategy st: per_host for every host, and
// the files once per fetcher (cooperative: once, or once per site with a
// host; else every host).
func (m Metadata) originBytes(st Strategy, hosts, vms, sites int) float64 {
	clients := float64(hosts)
	if st == OriginPerVM {
		clients *= float64(vms)
	}
	fetchers := clients
	switch st {
	case SwarmCoop:
		fetchers = min(clients, 1)
	case SwarmSites:
		fetchers = float64(min(hosts, sites))
	}
	return clients*float64(m.PerHost) + fetchers*float64(m.Files)
}

// OriginTotal is the origin's bytes, chunks and metadata
// (Scenario.Metadata) together.
func (r *Result) OriginTotal() float64 { return r.OriginBytes + r.MetadataBytes }
