// Package node is the host daemon: the libp2p host and DHT, identity,
// configuration, lifecycle and the local API server. It wires transfer,
// share and metadata together through small interfaces.
//
// The daemon keeps its store sound (repair.go): it checks a package's
// objects before exposing its tree, scrubs every object in the background
// at a bounded rate, and fetches again, through the swarm or the origin,
// every package whose objects were found damaged. A VM's own requests are
// held to its quota (quota.go). Views (views.go) show trees as the
// archive has them; setuid and setgid take effect only in bind and
// overlay views of VMs registered with AllowSetuid, which show the
// package's setuid variant tree mounted without nosuid; elsewhere the
// install says "dropped" and the daemon logs it once per package.
// Changing a VM's policy re-makes its views of such packages at once.
// With the daemon stopped, RebuildIndex
// recovers a lost index, VerifyStore checks the store and RepairStore
// marks what must be fetched again; OpenOffline reads a stopped daemon's
// packages, VMs and views without writing anything (stork list, status).
//
// Doctor (doctor.go) checks a host for what keeps a daemon from running
// well: one function per check, each returning findings with what to fix.
//
// Metrics (metrics.go) are read from the daemon's counters when scraped;
// the latency histograms and the metadata gauges are set as events happen.
//
// # The origin is a fallback
//
// Everything a host needs to resolve and fetch a package can come from its
// peers. Hosts serve each other, on /stork/files/1.0.0 (p2p_files.go), the
// TUF metadata they trust (metadata.TrustedFile: timestamp.json and every
// N.ROLE.json they hold, root chain included) and the manifests their
// stores hold; nothing else, rate-limited per peer, size-capped, with a
// deadline on both sides. The daemon's repository fetcher (fetcher.go)
// asks the origin and a few peers at once and takes the first copy that
// verifies: metadata is checked against the trusted set before a copy is
// chosen (metadata.CheckingFetcher), a manifest against the CID in its
// path; a peer whose copy fails is replaced by the next. For
// timestamp.json, which names no version, it takes the newest copy that
// verifies: the origin's ends the wait (it is the source of truth for
// what is newest), a peer's is taken if the origin has not answered
// within a short wait. With nobody able to answer the host goes on with
// its trusted metadata until its timestamp expires; an expired timestamp
// is refused whoever serves it. Manifests come from the host's own store
// first.
//
// When the origin is unreachable during a download, the chunks peers hold
// keep coming; the rest wait, the origin probed one request at a time
// with backoff; `stork status` shows the package as waiting_origin since
// the outage began; the swarm logs the outage once at WARN and its end
// once at INFO; the download fails with an error naming the origin only
// after Config.OriginDeadline without a chunk from anyone, and resumes by
// itself if the origin answers before then.
package node
