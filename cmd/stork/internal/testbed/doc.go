// Package testbed builds, on one machine, sites of hosts joined by slow
// links, runs Stork on them and reports what happened (`make testbed`,
// docs/testbed.md).
//
// The network: one network namespace per host; per site a switch namespace
// holding a bridge; a router namespace joining the sites and the
// repository site (one origin host). Links are veth pairs shaped by a tbf
// qdisc on their sending end, so each direction has its own rate: hosts'
// links, site uplinks and the origin's link. This kernel has no netem, so
// latency is added in user space: the router's policy routing sends every
// packet it forwards into a TUN device, and `stork testbed delay` (RunDelay)
// writes each one back a fixed delay later; packets that come out of the
// device are routed by the main table. A packet crossing between sites (or
// to the origin) therefore takes the delay once; inside a site it takes
// none. Addresses are 10.77.SITE.HOST, and exist only inside the
// namespaces; nothing is added to the root namespace.
//
// Names: every namespace is named stk-PID-..., PID being the creating
// process, so parallel runs never collide and Clean can remove what a dead
// run left (the namespaces take their links, bridges and qdiscs with
// them). Every process the testbed starts is stopped by its PID and dies
// with the testbed's process (parent-death signal).
//
// The runs (Config.Runs), each on fresh daemons and data directories:
// every host fetching over HTTP alone (`stork get`); the swarm without and
// with sites (`--site`, when the binary has it); and four faults on the
// swarm: a host's link down mid-transfer and back, a site cut off from the
// repository site only, the origin stopped once its request log shows
// every chunk served (the overlay then holds a whole copy), one slow host. Each run records per host the completion
// time, bytes from the origin and from peers (`stork status`), its link's
// counters and CPU; per site the bytes over its uplink (tbf counters);
// the origin's bytes sent. After each swarm run every store is checked
// with `stork verify`. The simulator runs the same scenario (sites, payload
// rates, size, latencies; written to scenario.json) and the report puts
// the two side by side.
package testbed
