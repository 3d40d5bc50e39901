// Package swarm trades a package's chunks with other hosts: the swarm's
// wire protocol, its sessions (one stream with one peer about one
// package), and its engine (Swarm), which downloads a package from peers
// and from the origin for what no peer has, and serves the chunks this
// host holds. Which chunk to ask next, and from whom, is decided by
// package transfer/policy; this package carries the decisions out.
//
// # Rules
//
//   - The swarm declares the small interfaces it needs (iface.go) and
//     imports neither libp2p nor the store: Network and Stream (node
//     implements them with libp2p streams on Protocol, /stork/swarm/1.0.0),
//     Discovery (the /stork DHT: one provider record per package, never
//     per chunk), ChunkStore (what this host may upload: verified chunks
//     only) and ChunkSource (the origin, or a fake). transfertest has
//     in-memory fakes of each and a conformance suite per interface.
//   - Nothing a peer or the origin says is trusted. Every chunk is checked
//     against its CID and length (which the signed manifest pins) before
//     the sink sees it; a peer whose chunk fails is banned for the package
//     and disconnected (Network.ClosePeer). Unverified bytes are never
//     stored nor served: the ChunkStore holds verified chunks only.
//   - Every goroutine belongs to the Swarm (Swarm.goroutine) and has
//     returned when Close does. A download's Picker is guarded by the
//     download's lock; the Swarm's maps by the Swarm's; a session's queues
//     by the session's.
//   - Anything malformed on the wire is an error wrapping ErrProtocol and
//     resets the stream (wire.go states the encoding).
//
// # Files
//
// swarm.go: the Swarm, its configuration and counters. download.go: one
// package's download (Swarm.Download) and its scheduling. session.go: a
// session's life and its writer; receive.go: its reader and what it does
// with each message; upload.go: how it serves its peer; fair.go: fair
// turns at the upload limit. wire.go: the messages and their encoding.
// iface.go: what the swarm needs from the daemon. sites.go: this host's
// site and its peers'. acct.go: which source a stored chunk counts for.
//
// # A chunk from the wire to the store
//
// Swarm.Download announces the package (Discovery.Provide) and looks for
// holders in the background (download.findPeers, which also feeds every
// provider found to Picker.SetMembers); neither ever delays the origin, so
// a package with no peers starts at once. With each peer found it opens a
// stream (download.connect); the peer's side accepts it in
// Swarm.HandleStream. Each side runs a session (session.run): the opener
// says Hello for the manifest, both send their have-map (register), and
// HaveUpdate follows every verified chunk, so a host uploads while its
// own download still runs.
//
// download.schedule asks the Picker what to request and sends it: a
// batched Request to each peer with room in its pipeline, best peers
// first, then origin requests (download.fetchOrigin), announced to the
// peers with Fetching. The session's reader (session.readLoop) reads each
// message, puts a large chunk's ChunkParts together in place (reporting
// Progress while they flow), and dispatches it (session.handle, one
// function per message kind). A whole chunk goes to the session's
// deliverLoop workers, so that hashing and storing never hold up the
// control messages behind it: download.peerChunk verifies it (or bans
// the peer), and download.deliver stores it in the download's sink once
// (DownloadRequest.Sink), tells the Picker (Received, which names the
// other requests for it to cancel) and the peers (HaveUpdate), and asks
// the Picker for more. A chunk from the origin takes the same last step.
//
// # Copies asked twice
//
// A chunk may be asked twice: of two peers in the end game, or of a peer
// and of the origin (through a fetcher) when one stalls or a peer gets
// it first. The second copy costs the sender and this host TLS, the
// transport, system calls and a hash for nothing, and on a host
// saturated by many downloads every answer is slow, so a rule that
// waits a fixed time duplicates nearly every request. Two rules keep it
// down. The end game's delay follows the time this host's requests take
// (Swarm.endgameDelay: twice the mean of every download's answers, from
// the idle policy.DefaultEndgameDelay up to a quarter of RequestTimeout),
// handed to every download's Picker as it starts and on every tick: a
// package of one chunk is in the end game from its first request, before
// its own requests have measured anything. And a request whose chunk is
// on its way (a session's first parts, a pull-through answer that
// started) is duplicated only once it is four times that delay old
// (policy.Picker.Streaming); one that stops fails or times out, and the
// chunk is asked again. Counters counts what
// is thrown away: duplicates by how they came and why they were asked,
// and chunks cancelled part way.
//
// # Serving peers
//
// A peer's Request queues chunks (session.queueUploads); a few readers
// per session read them from the ChunkStore ahead of the writer
// (session.readUploads, at most uploadAhead chunks); the writer
// (session.writeLoop) sends control messages first, then the chunks.
// Chunks larger than policy.PartSize go out as ChunkParts with control
// messages between them, so a Cancel stops a chunk being sent, not only a
// queued one: the sender ends it with Reject (RejectCancelled) and the
// receiver drops the parts it has. A late answer to one of our own
// cancels is not held against the peer.
//
// No peer can take more than its share of this host's upload. A session
// keeps the set of chunks it has pending for its peer (queued, being read
// or sent) and the chunks it sent whole recently (the last 1,024, within
// RequestTimeout): a Request of either again is a duplicate and dropped,
// so thousands of copies of one index in a Request cost one upload. A
// Cancel clears a chunk from both, so a peer whose request timed out (it
// cancels first) is served again. With an upload rate limit, the turns at
// the limiter (one piece each) go to the waiting sessions by start-time
// fair queueing over peers, by bytes (fair.go): while several peers want
// chunks each gets an equal share of the rate, however many streams (one
// per package) and however deep a queue it has; a peer that was idle
// banks no credit. Without a limit the link is shared by the transport,
// one connection per peer.
//
// # Peers that fail
//
// A peer whose chunk fails its hash is banned for the package. A peer
// that stays silent past RequestTimeout, or rejects what it said it had,
// takes strikes and is dropped at MaxStrikes. A download that receives no
// chunk for NoProgressTimeout fails with ErrNoSource.
//
// # Memory and concurrency
//
// Received chunks are verified and stored by a few workers per session
// (deliverWorkers; at most twice as many per download at once), so the
// store's latency overlaps with the network and the reader is
// backpressured by a bounded queue. Requested chunks are read from the
// store (and re-verified) by uploadReaders readers per session, a bounded
// number of chunks ahead of the writer. Large chunk buffers are pooled on
// both sides: a received chunk's buffer is reused once a VerifiedChunkSink
// has stored it, an upload's once it is written to the stream
// (ChunkReaderInto).
//
// # Cooperative origin fetching (pull.go, coop.go)
//
// With a Network that is a PullNetwork (and Config.NoPullThrough off) a
// download does not ask the origin itself for a chunk it can have
// fetched for it. Its members are the hosts the network is connected to
// that serve PullProtocol (PullNetwork.Members: no DHT look-up, so a host
// starting a download in a flash crowd sends its first origin requests
// to the right member at once), asked again every FindInterval/4, plus
// the providers Discovery finds. policy.Fetchers ranks them, this host
// included, for each chunk by rendezvous hashing of the chunk's CID: by
// hash alone while this host knows no site; with its site known, in two
// levels (see Sites below).
// An origin request the Picker makes (download.fetchOrigin) goes to the
// chunk's first-ranked fetcher as a pull-through request; a fetcher that
// refuses or fails goes to the next (at most maxPullRanks), and only
// when this host ranks first, or every fetcher before it failed, does it
// ask the origin itself. The download's Picker takes the chunks in its
// usual order, all of the window due at once: hosts that each started
// with their own share split a capped origin's rate over every chunk at
// once, and none is whole (and shared) until late. Before it asks the origin for a chunk it ranks
// first for, a host asks the host that asked it for the chunk while it
// did not know the package (that host fetched it elsewhere), or else
// the next in rank whether it holds the chunk, unless that peer's
// have-map is known already: a host arriving late takes the chunk from
// those that came before. A chunk a peer comes to have (its Have or
// have-map) while an origin request for it is open is taken from the
// peer: the request is cancelled (pullsOvertaken), unless the fetcher
// has started sending it. A fetcher that cannot be reached, or says
// nothing for pullIdle (it sends a keepalive every pullKeepalive while it
// works), or keeps working without sending the chunk for pullClaim, or
// answers that it cannot reach the origin (its site may be cut off from
// it), is ranked no more for the download: a dead or cut-off fetcher
// costs one timeout. Silence is counted in time this host could listen:
// on a host whose own goroutines run late (its download ticks), the idle
// timeout grows by that lateness, up to twice pullIdle (pullalive.go). A
// chunk whose fetchers failed, and that a session peer holds or is
// sending by then, is taken from the peer: neither the next in rank nor
// the origin is asked for it (sessionBrings). A host asked for a chunk
// that its own download is receiving (from a session peer, or from a
// fetcher that answered it) serves that copy when it comes rather than
// fetch another from the origin (awaitDownload). A chunk from a fetcher
// is verified like any other; a corrupt one bans the fetcher.
//
// The fetcher (Swarm.HandlePull) serves the chunk from the chunks it
// fetched for peers lately (in memory), from its store, from
// its own download of the package once a peer delivers it, or from the
// origin, one fetch per chunk however many hosts ask (originFetch joins
// them, and keeps the chunk a while in memory for those that come later,
// pullCacheBytes at most); a chunk it fetched goes into its own download
// too. It serves only chunks of manifests it holds, downloads or can
// resolve from signed metadata it trusts (Config.Manifests), at most
// maxPullsPerPeer requests per peer and maxPulls in all at once; beyond
// that it refuses, and the asker goes on down the ranking. A request
// names its chunk (CID and length) as well as the manifest and index: a
// fetcher that has not resolved the package yet serves the chunk from
// what it holds, or fetches it from its origin at once and resolves the
// package meanwhile, so that the first asker in a flash crowd does not
// wait for the fetcher's own metadata refresh; the chunk is checked
// against the resolved manifest after the fact, and what an asker can
// have fetched before that is bounded (pullref.go). A host that fetched
// a chunk for peers takes it from there for its own download. A host that
// does not speak PullProtocol refuses the stream, which the asker takes
// as a refusal: old peers stay compatible.
//
// A host with no other member (alone, or every member skipped) asks the
// origin itself, with the same window as without cooperative fetching.
//
// A package of one chunk (most Debian packages) comes through its fetcher
// nearly always: its download opens no session until it is
// sessionDeferral end-game delays old without its chunk, and then opens
// those it deferred (Counters.SessionsDeferred counts the others). A
// fetcher that is slow to answer still leaves the download its peers.
//
// Accounting (acct.go, Stats): a chunk a download stores counts as from
// the origin at the host that fetched it from the origin, whether for its
// own download or for a peer's pull-through request, and whoever the
// download then took it from; at every other host it counts as from
// peers. So the hosts' origin bytes add up to what the origin sent them
// when no chunk was fetched twice and every fetcher downloads the
// package too.
//
// # The origin's outages
//
// An unreachable origin (a request refused, reset, stalled or answered
// with an HTTP error, as opposed to a missing or corrupt chunk) is a state
// of the download, not a failure: the peers keep serving what they hold,
// the origin is probed one request at a time with backoff (at most 5s
// apart), NoProgressTimeout gives way to OriginDeadline (counted from the
// outage or the last chunk from anyone, whichever is later; then
// ErrOriginUnavailable, naming the origin), and the first chunk the
// origin sends again ends it: the origin window reopens and the policy's
// fallback delays count from the resume (Picker.OriginResumed). The Swarm
// logs each outage once at WARN and its end once at INFO;
// Swarm.DownloadState reports a download's wait.
//
// # Sites
//
// A host with a configured site (Config.Site) announces it in every Have;
// without one it infers its site from the round trips Config.RTT measures
// (policy.InferSite), at once for each new peer and again every second
// while a download runs, and announces nothing. Once the site is known,
// each download's Picker runs the policy's site rule (Picker.SetSites),
// told which of its peers are local: with a configured site, those that
// announced the same; with an inferred one, the RTT cluster. A download
// then trades with at most Config.CrossSitePeers peers of other sites, as
// the simulator's hosts do (policy.ChooseSitePeers, AcceptSitePeer): the
// providers found are chosen our site's first, a peer whose have-map
// shows it in another site joins only below the cap, and those over it
// that joined before the site was known are detached, the Picker's best
// kept. A detached session stays open, so the peer may still fetch from
// us.
//
// Pull-through with a configured site runs in two levels (coop.go) when
// the network tells the members' sites as they connect
// (PullNetwork.Members; node tells them in identify's agent version), so
// that every host ranks in two levels from a download's start: a member
// is in our site if its told site is ours. Each chunk has a fetcher
// in each site (the first of that site's members by rendezvous) and a
// global one (the first of all members by the same weights, so also the
// first of its own site). A host asks its site's fetcher; the site's
// fetcher asks the global fetcher (policy.Fetchers.Upstream) instead of
// the origin, forwarding its site's requests there joined with its own
// (pullShared: one request per chunk), and passes on the global fetcher's
// progress keepalives; the global fetcher alone asks the origin. So the
// origin sends about one copy and each site's uplink carries about one
// in, whatever the cap on cross-site sessions, which stays (pull-through
// is a stream of its own). A chunk a peer of another site comes to have
// does not overtake the pull-through request open for it (the site's
// fetcher brings the site's copy). A silent or failing fetcher is passed
// over as without sites: the next in the site, then the next global one,
// then the origin itself. Without told sites (an inferred site, a network
// that does not tell them) the site policy's claims run instead of
// pull-through: hosts learning sites later, each at its own time, would
// each fetch what its policy of the moment gives it.
package swarm
