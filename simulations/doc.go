// Package simulations is a discrete-event simulation of many hosts that
// drives the real piece-selection and origin policy code, package
// transfer/policy (policy.Picker), to measure repository offload and
// completion time at scales no single machine can run: 10 to 10,000 hosts.
//
// simulations imports transfer/policy and plotting only: none of the
// daemon's network, store or repository code. It never copies the
// policy: every simulated host owns a policy.Picker and makes every
// choice the daemon's download makes through it (SetMembers, NextForPeer,
// NextForOrigin, Requested, Received, Progress, Timeouts, PeerJoined,
// PeerHave, PeerPending, PeerLeft, Failed, Cancelled).
//
// # Scenarios and strategies
//
// A Scenario (JSON, see ParseScenario) gives the hosts (VMs per host,
// upload and download capacity drawn from discrete distributions), the
// sites they sit in (round-robin), the site links, the origin's upload
// capacity, one-way latencies (within a site, across sites, to the
// origin), the package (size, chunk size), the arrival pattern (flash
// crowd, or staggered uniformly over a window), a new version over an old
// one (a fraction of the chunks, the same on every host, already held),
// churn (a fraction of hosts leaving at random times, dropping their
// transfers but keeping their store, and coming back later or never) and
// the swarm's tuning. A seed makes the run deterministic: the same
// scenario and seed write the same CSV bytes.
//
// Strategies: origin-per-vm (every VM downloads the whole package from the
// origin), origin-per-host (one download per host of what its store
// lacks; its VMs share it), swarm (the Stork swarm) and swarm-locality
// (the swarm with every host knowing its site, as a daemon given --site
// does: each Picker runs the policy's site rule, Picker.SetSites and
// SetPeerLocal, so a chunk a same-site peer holds is asked of it and one
// none holds is asked across by one host of the site; peers are chosen
// and accepted in the host's site first, policy.ChooseSitePeers and
// AcceptSitePeer), and swarm-coop (the swarm with cooperative origin
// fetching, coop.go: each origin request goes to the chunk's first-ranked
// member, policy.Fetchers over the hosts present (or the host
// Scenario.Fetchers names: validate-crowd gives the daemons' own draw),
// which fetches it from the origin once for every host asking; the asker
// announces no Fetching, and the answers share the host's upload with
// its sessions, as the
// daemon paces both at its upload cap, unless Scenario.PullUpload gives
// them a capacity of their own; not part of the default
// sweep), and swarm-sites (the swarm as daemons given --site run it:
// swarm-locality's site rule and peer choice, and cooperative fetching in
// two levels, coop.go: the members ranked with their sites by
// policy.Fetchers, a host's origin request goes to the chunk's
// first-ranked member of its own site, which asks the chunk's global
// fetcher, Fetchers.Upstream, once for its whole site, and only the
// global fetcher asks the origin; each answer crosses the site links
// between fetcher and asker, so each site takes one copy in; not part of
// the default sweep either).
//
// Discovery: Policy.DiscoveryDelay is the time from arrival to the first
// lookup; Policy.ProviderDelay the time from arrival until other hosts'
// lookups find the host's provider record (a configured duration standing
// for the daemon's per-package overhead and the DHT put). Until then a
// host is neither a member nor a candidate peer for the others; a host
// that finds none fetches from the origin alone and looks again every
// FindInterval. Both default to 0, every present host known at once.
//
// Scenario.Packages replaces the one package by many whose sizes are
// drawn from a size table (testdata/debian12-main-sizes.tsv, SizeDist),
// fetched by every host Packages.Parallel at a time (0: all at once; the
// daemon downloads 16 packages of a closure at once, node.MaxDownloads)
// in one run: each package is a sim of its own (its Pickers, members and
// sessions) on one shared engine, so the packages fetched at the same
// time share the hosts' links, the site links and the origin
// (workload.go). A package's sim is made when its first host starts it,
// and a package every host has, with none of its events or flows left,
// keeps only its result (release): a workload holds state only for the
// packages some host is fetching, a few times Parallel of them
// (packages.overhead, or cpu.per_package below, starts each host's
// packages apart).
//
// # The swarm, as simulated
//
// Each host joins (arrival), learns the swarm's members (every host
// present, downloading or holding the package: the DHT's providers, given
// to its Picker with SetMembers at each discovery, so that in a flash
// crowd every host sees the same members and the origin partition is
// exact), discovers random hosts among them up to its download's peer
// limit (Policy.MaxPeers, but no more than the package has chunks, at
// least two: the daemon's peerLimit), opens a session with each (both
// sides serve each other; a side whose Picker already knows MaxPeers
// peers does not add the other, as the daemon does), and learns their
// have-maps. With cooperative fetching its first origin requests go to
// their fetchers before that, as the daemon's first schedule runs before
// its first session is open (coop.go). From then on it acts as
// the daemon's download loop: after every chunk, HaveUpdate, new peer and
// on a tick (Policy.Tick) it asks its Picker for chunks to request from
// peers (pipelines bounded by PipelineDepth) and from the origin, sends
// Fetching for origin chunks, HaveUpdates for chunks received, cancels
// what Received says to cancel, reports the peers whose chunks (larger
// than policy.PartSize, the daemon's ChunkParts) are flowing in with
// Progress (and marks their chunks Streaming, as a pull-through answer
// once it starts: the end game waits four times longer before asking
// another peer for a chunk on its way, and never asks a peer for a chunk
// that peer is sending it as its pull-through answer, as the daemon's
// download.schedule: it asks that peer nothing more that round), sets
// its Picker's end-game
// delay on every tick from the host's response times over all its
// downloads (policy.ResponseTimes: twice their mean, from 100 ms to a
// quarter of the request timeout, as the daemon's Swarm.endgameDelay),
// expires requests with Timeouts and drops
// peers with MaxStrikes strikes, and looks for more peers every
// FindInterval while it has fewer than MaxPeers. A sender serves each
// session's requests in order, one chunk at a time per session, all
// sessions at once (the daemon's writeLoop); a host keeps serving after it
// finishes. Messages other than chunks (requests, cancels, HaveUpdates,
// Fetching) take one one-way latency and no bandwidth; with
// Scenario.HeadOfLine they also wait for the end of the chunk their sender
// is sending the same peer, as on the daemon's one stream per session
// (headofline.go; docs/validation.md shows what it changes).
//
// One shortcut is taken for speed and changes no decision: a HaveUpdate
// for a chunk the receiving host already holds is not passed to its Picker
// (availability only steers the choice among missing chunks, and a claim
// of PeerPending only matters for them too). The daemon calls its full
// schedule (every peer, in RankPeers order, then the origin) after each
// event; the simulator asks only the peer concerned, the origin, and every
// peer on the tick, at most once a second, after a timeout, when a
// first-hop deferral ended (Picker.Thawed), and in the end
// game. RankPeers order is not used: pipelines open one at a time in a
// discrete-event run, so the order rarely matters.
//
// Runs of 1,000 hosts and more use a second goroutine for the fan-outs
// of HaveUpdates. Without locality (pipe.go) the event loop does not wait
// for a fan-out: it posts it as a job, a helper runs the jobs in order
// (the event loop takes some when the helper is behind), the event loop
// waits only before it touches a Picker a pending job will touch, and the
// jobs' messages go out in posting order before the run reaches the
// job's time plus the smallest latency. Every Picker sees the same calls
// in the same order; only messages due at the same instant may be
// ordered differently than if each fan-out ran at once, the same way
// whichever goroutine ran which job. With locality (fanout.go) each
// fan-out is split in two halves run at once, its messages sent after in
// watcher order: the same run, byte for byte, as on one goroutine.
//
// # The network model
//
// Flow level, not packet level: each chunk in transit (or, for the
// baselines, each whole download) is a flow from a sender (a host's
// upload link, or the origin) to a receiver, at a rate set as follows.
//
//   - A receiver splits its download capacity equally among its incoming
//     flows. A flow crossing sites is also limited by the sender site's
//     uplink and the receiver site's downlink (origin flows cross the
//     receiver site's downlink): each site link's share is its water
//     level, the level at which its flows, each also held by what limits
//     it elsewhere (its receiver's share, the other site link, its
//     sender's fair level), fill the link, so that what a flow held
//     elsewhere leaves goes to the link's other flows, as TCP flows
//     through one bottleneck queue share it. The smallest of these is the
//     flow's cap.
//   - A sender shares its upload capacity max-min fairly given the flows'
//     caps (exact water-filling): flows capped below the fair level get
//     their cap, the others share the rest. A host shares it between
//     its receivers, not its flows, as the daemon's fairShare hands out
//     its upload turns fairly between peers by bytes however many streams
//     each has (a pull-through answer and a session's chunk to the same
//     peer, or sessions of several packages): each flow weighs 1 ÷ the
//     host's flows to the same receiver. The origin shares its upload
//     equally between its flows (the HTTP responses).
//   - Uploads in pieces (Scenario.UploadPiece, piece.go; 0: the fluid
//     sharing above): the daemon's upload limiter hands out one turn at
//     a time, of one 64 KiB piece, to the peers waiting for it in
//     start-time fair order by bytes, so a fetcher's one-piece answers
//     end one after another, a turn apart, where fluid sharing ends them
//     all together at the last one's end. A host's server sent in pieces
//     moves one flow at a time, the one holding the turn, for one piece
//     at the server's rate (or its cap); the others are parked, with cap
//     0 and no share of the links or the CPU they cross; when the piece
//     is sent the flow asks for its next one (tagged start = max(V,
//     F[receiver]), F[receiver] += piece, as fairShare) and the turn goes
//     to the smallest tag. For chunks of many pieces the two models end
//     within a round of turns of each other; parked flows still count in
//     their receiver's equal split.
//
// This is max-min fairness at every sender, nearly so on site links (each
// link levelled given the other links' levels, not all at once), and an
// equal split at receivers: a receiver does not hand a share that one
// slow sender leaves unused to its other flows. Rates change only when a
// flow starts or ends, and only for the flows of the hosts involved: the
// sender's flows are re-levelled in O(log n) (its shared flows progress by
// one virtual clock, its capped flows each at their cap, each set in a
// heap by finishing point). A receiver's share and a site link's level
// are recomputed, for every flow through it, only when its flow count
// drifts by more than 10% since the last recomputation (a receiver: by
// more than one flow in ten, so below ten flows every change; a site link
// levels in O(n log n)); in between, a new flow gets at most an equal
// share and old ones keep theirs, so a downlink or a site link may be
// over- or under-committed by about 10%. Latency is
// added once per message and once per chunk (the chunk's last byte
// reaches the receiver one one-way latency after the sender sent it);
// there is no TCP slow start and no loss.
//
// # The shared CPU
//
// Scenario.CPU (cpu.go) puts every host on one machine of CPU.Cores
// cores, as the testbed and validate-crowd run their daemons; without it
// (or with Cores 0) each host has CPU enough and a run is the same, to
// the byte, as without the model. The CPU is one more link of the
// network model that every flow with a cost crosses, with capacity Cores
// CPU-seconds per second: a flow's weight is its CPU-seconds per byte,
// CPU.PerByte host to host (sender and receiver together),
// PerOriginByte from the origin, plus PerWANByte when it crosses a site
// link or comes from the origin (a forwarder on the same machine, as the
// testbed's router). The link is levelled like a site link, but in
// CPU-seconds per second: each flow gets the same share of the cores
// unless it is held lower elsewhere (its receiver, its sender, a site
// link), the rest going to the others, as a scheduler shares cores
// between runnable threads; a flow's rate cap is its share over its
// weight. It is levelled again at every start and end of a flow, not
// only when its count drifts, at a cost of every live flow each time: the
// model is for the tens of hosts one machine runs. When the CPU binds,
// the makespan is the run's CPU-seconds over the cores.
//
// CPU.PerPackage is work, not bytes: before each of its packages starts
// (its arrival, or in a workload each package's start), a host runs
// PerPackage CPU-seconds of start-up on the same cores, as a flow of
// CPU work from the host's start-up server, not counted as bytes at any
// receiver. In a workload each start-up holds one of the host's
// Packages.Parallel download slots, as the daemon's download goroutine
// takes its slot and then starts its package (the store's record, the
// swarm's lookups and sessions): a host runs up to Parallel start-ups
// side by side, each on one core at most and each one flow on the CPU
// link, beginning when hostDone would start the package without a CPU
// (Packages.Overhead after the last began, while a slot is free). So
// start-ups compete with the bytes of the packages already started
// instead of starting packages a fixed interval apart: they take longer
// when bytes are moving and less when they are not. With cooperative
// fetching every host is a member from the start of its start-up, as
// the daemons are in the overlay before they fetch (in a flash crowd
// the start-ups end a rounding error apart, and the first to end would
// otherwise rank themselves fetchers among a few). The costs are
// inputs measured on the real runs (CPU-seconds divided by bytes
// received or by downloads), never fitted to a makespan;
// docs/validation.md says which run measured which. A byte costs its
// PerByte whether or not the receiver keeps it (an end-game duplicate,
// a chunk cancelled under way), as the daemons' CPU does.
//
// CPU.PerDownload and PerCommit are work during and after a download,
// flows of CPU work from the host's start-up server, one core at most.
// PerDownload begins when the host's start-up ends (DiscoveryDelay after
// it arrives) and runs beside its bytes (the daemon's lookups, sessions,
// bookkeeping): it takes its share of the cores while the host waits for
// bytes, and delays the host only when it is not done by its last
// chunk. PerCommit begins when the last chunk is in and the PerDownload
// work done (the daemon verifying and committing the package to its
// store); the host has the package when it ends. Its download runs
// meanwhile (a late duplicate starts nothing). Baselines too: a host
// whose origin download ends commits the same way.
//
// # Metadata and manifests
//
// Scenario.Metadata (metadata.go) counts the repository's other files a
// host fetches, as the daemon does: on its refresh, per_host bytes from
// the origin itself (the probe for a newer root), and files:
// timestamp.json (which with cooperative fetching a member passes on and
// the origin confirms with a 304, no body) and the bytes that never
// change (fixed-version metadata and every package's manifest): from
// the origin once for all with swarm-coop
// (the first-ranked member fetches each), once per site with
// swarm-sites, once per host otherwise (per VM with origin-per-vm). They
// are counted in Result.MetadataBytes, not moved as flows: a few KB per
// host, fetched during the start-up that DiscoveryDelay or
// CPU.PerPackage already stands for. Result.OriginBytes and every figure
// from it stay the chunks'; OriginTotal adds both.
//
// # Figures
//
// Delivered = package size × VMs of the hosts that finished (what the
// VMs received). Offload = 1 − origin bytes ÷ delivered; host offload = 1
// − origin bytes ÷ (package size × hosts), the saving that sharing between
// hosts brings on top of the per-host store. FluidBound gives the fluid
// lower bound of a flash crowd's completion time, max(S/U_origin,
// S/D_host, N·S/(U_origin + ΣU_hosts)); a run reports its makespan over
// it. Sweep runs host counts × strategies; WriteCSV, WritePlots and
// WriteReport write the outputs that `stork sim run` and `stork sim
// sweep` produce; AppendReportSection adds a workload's section to a
// report (`stork sim sweep --append-report`); `make sim-report`
// regenerates the whole of REPORT.md with both.
//
// # Announcement spread
//
// RunAnnounce (announce.go, `stork sim announce`) is a separate, smaller
// model of how a group change reaches every host when hosts announce newer
// signed timestamps to their gossipsub mesh (eager push, then a few rounds
// of lazy gossip) besides polling the origin, against polling alone: each
// host takes the changed metadata files from the peer that told it (one
// round trip per file), converges, and announces in turn; a host whose poll
// comes first takes them from the origin. It reports the time at which the
// hosts converged and the origin's metadata requests per update.
package simulations
