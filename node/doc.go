// Package node is the host daemon: the libp2p host and DHT, identity,
// configuration, lifecycle and the local API server. It wires transfer,
// share and metadata together through small interfaces.
//
// The daemon keeps its store sound (repair.go): it checks a package's
// objects before exposing its tree, scrubs every object in the background
// at a bounded rate, and fetches again, through the swarm or the origin,
// every package whose objects were found damaged. A VM's own requests are
// held to its quota (quota.go). With the daemon stopped, RebuildIndex
// recovers a lost index, VerifyStore checks the store and RepairStore
// marks what must be fetched again; OpenOffline reads a stopped daemon's
// packages, VMs and views without writing anything (stork list, status).
//
// Doctor (doctor.go) checks a host for what keeps a daemon from running
// well: one function per check, each returning findings with what to fix.
//
// Metrics (metrics.go) are read from the daemon's counters when scraped;
// the latency histograms and the metadata gauges are set as events happen.
package node
