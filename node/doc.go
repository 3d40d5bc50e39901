// Package node is the host daemon: the libp2p host and DHT, identity,
// configuration, lifecycle and the local API server. It wires transfer,
// share and metadata together through small interfaces.
//
// # Rules
//
//   - One daemon per data directory. NewDaemon takes an exclusive flock on
//     DATA/lock and holds it until Close; a second daemon on the directory
//     is refused. Readers of a stopped daemon's directory (OpenOffline,
//     VerifyStore, RebuildIndex, RepairStore) take it too, so that nothing
//     reads or repairs a store a daemon is writing.
//   - Built whole, then served. NewDaemon opens the store, starts the libp2p
//     host (Config.P2P) and the swarm, makes the metadata client and the VM
//     registry and registers the metrics; a daemon that NewDaemon returns
//     answers Fetch and Status at once. Run serves: it restores the views,
//     answers peers on the swarm and files protocols, scrubs and repairs the
//     store, and serves the admin socket and the VM sockets until its
//     context ends. Close ends the downloads and releases everything.
//   - One download per package, outliving its requests. Every request for
//     a package (Fetch, Install, a VM's install, a repair) joins the one
//     download of its manifest CID (a flight, packages.go); the download
//     runs on the daemon's background context, so a requester that goes
//     away cancels nothing for the others, and ends only at Close.
//   - One download engine: the swarm (transfer/swarm). With Config.P2P nil
//     (stork daemon --no-swarm) it has no network and the origin is its only
//     source; otherwise it trades with the peers the DHT finds and asks the
//     origin only for what no peer has.
//   - The admin socket (DATA/stork.sock, 0600) is the host administrator's:
//     it answers every request. A VM's socket (DATA/vms/ID.sock, 0660) is its
//     identity: nothing in a request names another VM. Through it a VM lists
//     the packages its Allow patterns permit, lists what it has installed
//     and installs a permitted package into its own registered root and view
//     mode, within its Quota (quota.go); every other request is
//     ErrForbidden, and the packages it is shown carry paths relative to
//     its root, never the host's. Each socket takes at
//     most its share of the file descriptors (APILimits, listen.go).
//   - Views change one at a time. Installs, uninstalls, the views restored
//     at Run and the views re-made when a VM's setuid policy changes hold
//     one lock (Daemon.serveM); downloads do not, and run in parallel.
//
// # One chunk, from the wire to the store
//
// A request names NAME[@VERSION]. The metadata client (metaClient) refreshes
// the signed repository metadata when it is older than RefreshInterval and
// resolves the name, with its dependencies, to manifests that the signed
// targets pin (metadata.Client.ResolveClosureEach), handing each package
// over as soon as its manifest and those before it are in, so that the
// first downloads start while later manifests are on their way.
// ensurePackage starts or joins the package's flight; fillPackage opens the package's share.Partial
// (share.Store.BeginPackage) and hands it, as the sink, to
// swarm.Swarm.Download. The swarm asks peers (the swarm wire protocol on
// /stork/swarm/1.0.0, streams of the libp2p host in p2p.go) and the
// origin (the HTTP client of transfer/origin) for the chunks the Partial
// is missing, checks every chunk against its CID (a chunk from the origin
// once, by the client), and passes it to Partial.PutVerifiedChunk:
// the store writes it into its partial file, a commit group makes it
// durable and records it, and a complete file becomes an object. When every
// chunk is in, Partial.Commit builds the package's tree of hard links to
// the objects, and the swarm announces the package so that peers fetch it
// from this host. Install then shows the tree in the VM's view
// (share.MountView).
//
// # Keeping the store sound
//
// The daemon checks a package's objects before exposing its tree, scrubs
// every object in the background at a bounded rate, and downloads again
// every package whose objects were found damaged (repair.go). Views
// (views.go) show trees as the archive has them; setuid and setgid take
// effect only in bind and overlay views of VMs registered with
// AllowSetuid, which show the package's setuid variant tree mounted without
// nosuid; elsewhere the install says "dropped" and the daemon logs it once
// per package. Changing a VM's policy re-makes its views of such packages
// at once. With the daemon stopped, RebuildIndex recovers a lost index,
// VerifyStore checks the store and RepairStore marks what must be
// downloaded again; OpenOffline reads a stopped daemon's packages, VMs and
// views without writing anything (stork list, status).
//
// Doctor (doctor.go) checks a host for what keeps a daemon from running
// well: one function per check, each returning findings with what to fix.
//
// Metrics (metrics.go) are read from the swarm's and the store's counters
// when scraped; the latency histograms and the metadata gauges are set as
// events happen.
//
// # The origin is a fallback
//
// Everything a host needs to resolve and download a package can come from
// its peers. Hosts serve each other, on /stork/files/1.0.0 (p2p_files.go),
// the TUF metadata they trust (metadata.TrustedFile: timestamp.json and
// every N.ROLE.json they hold, root chain included) and the manifests their
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
// # Each chunk leaves the origin once
//
// The peers a host is connected to that speak /stork/pull/1.0.0
// (p2p_pull.go: identify lists the protocol; no DHT look-up) are the
// members of cooperative origin fetching (transfer/swarm, pull.go): for
// each chunk they rank themselves by rendezvous hashing, the first-ranked
// fetches it from the origin, and the others ask it for the chunk, so a
// flash crowd of a small package costs the origin about one copy. A peer
// can make this host fetch only chunks of packages that the signed
// metadata it trusts publishes (pullManifests: a manifest not published
// there is refused; a peer's request never forces a metadata refresh).
// Config.NoPullThrough turns it off.
//
// When the origin is unreachable during a download, the chunks peers hold
// keep coming; the rest wait, the origin probed one request at a time
// with backoff; `stork status` shows the package as waiting_origin since
// the outage began; the swarm logs the outage once at WARN and its end
// once at INFO; the download fails with an error naming the origin only
// after Config.OriginDeadline without a chunk from anyone, and resumes by
// itself if the origin answers before then. A daemon without peers waits
// the same way. An origin that answers that it lacks a chunk, or sends it
// corrupt, twice in a row, fails the download of a daemon without peers at
// once: no other source exists.
//
// # Groups and convergence
//
// A VM may belong to groups (VM.Groups: `stork vm add --group`, `stork vm
// groups`). Its own requests are allowed what its Allow patterns match or
// what some group of its requires, never what a group of its forbids
// (vmMayHave). The daemon converges (converge.go) at start, every
// Config.Poll, when a VM's groups change, when an announcement brought
// newer metadata, and after a failed pass with backoff (doubling from a
// second up to Poll). A pass on a host none of whose VMs has groups reads
// nothing; otherwise it refreshes the metadata (if older than
// RefreshInterval) and, per VM with groups, reads its groups' policies
// and resolves the union of their requirements into one closure
// (ResolveSet); a policy that cannot be read, a closure that cannot be
// resolved or holds a forbidden name, or a member that cannot be fetched
// leaves the VM exactly as it was, and is reported in status.converge
// (error, pending, failures, next try). Everything is fetched before any
// view changes: then each member is installed through Install (a no-op
// when there), another version is switched in place, and what the VM's
// groups installed and want no more, or forbid, is uninstalled. The names
// convergence installed are kept per VM in converge.json, so that a
// daemon that was down during several updates removes what they dropped;
// what an operator installed by hand is never removed unless forbidden.
// A package that convergence took out of every view is released for GC,
// which runs after such a pass.
//
// An upgrade switches a bind or overlay view in one step
// (share.ReplaceView): the new tree is mounted beneath the old on the same
// mount point (MOVE_MOUNT_BENEATH) and the old one detached, so a path
// lookup in the VM meets the old tree or the new, never a mix and never
// nothing, and a process that has an old file open keeps reading it (the
// detached mount lives until its last user lets go). A link view, or a
// view that went missing, is replaced by removing and making it.
//
// Hosts tell each other of newer metadata over gossipsub (pubsub.go), one
// topic per repository (/stork/timestamp/ + SHA-256 of its first root). A
// host that trusts a newer timestamp (from a refresh, from `stork group
// set --notify` through POST /v1/announce, or from a peer) publishes it at
// the end of the convergence pass that follows, so that the peers it tells
// can take from it both the metadata files and the new packages.
// A peer's message is rate-limited per peer and checked against the
// trusted root before anything is fetched; forged or malformed ones are
// rejected (gossipsub lowers that peer's score), stale, replayed, expired
// or rolled-back ones ignored, and none is forwarded as such: a newer one
// is applied, its files asked first of the peer that announced it (which
// applied them) and of the origin and other peers only if that peer does
// not give a copy that verifies, converged, then announced by this host.
// So an update costs the origin the metadata of one refresh, not one per
// host;
// the next-root probe ends at the announcing peer (a root rotation that a
// peer hides is found at the next poll, which asks the origin).
package node
