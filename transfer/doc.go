// Package transfer moves chunks: the HTTP origin fetcher, the verified
// download of a whole package tree (Get), the static repository server
// behind `stork repo serve`, and the swarm: its wire protocol, its engine
// (Swarm) and its policy (Picker), which is pure code so that package
// simulations runs the very same decisions as the daemon.
//
// transfer declares the small interfaces it needs and never imports libp2p
// or the store: Network and Stream (node implements them with libp2p
// streams on /stork/swarm/1.0.0), Discovery (the /stork DHT: one provider
// record per package), ChunkStore (what this host may upload: verified
// chunks only) and ChunkSource (the HTTP origin, or a fake).
//
// # The swarm
//
// A Download announces the package (Provide) and looks for holders
// (FindProviders) in the background; neither ever delays the origin, so a
// package with no peers starts at once. With each peer found it opens a
// stream, says Hello for the manifest and exchanges have-maps (a bitfield
// over the manifest's unique chunks); HaveUpdate follows every verified
// chunk, so a host uploads while its own download still runs. Requests are
// batched (many small chunks in one message) and pipelined per peer to
// depth ceil(throughput x RTT / chunk length) + 1, at most the larger of
// 4 MiB and 32 MiB / peers of chunks (MaxInflightBytes, DownloadInflight:
// a deeper pipeline only queues at a peer that serves many hosts at once;
// at 1,000 simulated hosts the cap cut the makespan from 1.37 to 1.24 x
// the fluid bound); every chunk is verified
// against its CID before the sink sees it; a peer whose chunk fails is
// banned for the package (ClosePeer), a peer that stays silent past
// RequestTimeout takes strikes and is dropped.
//
// The Picker decides. Rarest first: chunks sit in one bitset per
// availability level; a pick takes the lowest level the peer can serve,
// from a random word and bit, so ties break randomly and concurrent hosts
// spread out. End game: with at most EndgameThreshold chunks left, idle
// peers may duplicate in-flight requests and the losers are cancelled. The
// origin is one more source, asked only for chunks that no known peer has
// or is fetching (peers say Fetching before they go to the origin), or
// whose peer request stalled (those come first, always).
//
// Which host asks the origin for which chunk depends on what the host
// knows of the swarm. A host that knows no other member (SetMembers was
// never given any) walks the eligible chunks in its own random order, with
// a window of OriginParallel/(peers+1) that opens with slow start and
// small jitter. Once it knows the members (the Download feeds every
// provider Discovery finds into Picker.SetMembers, not only the peers it
// trades with), two rules make the origin send about one copy at a pace
// that does not grow with the swarm:
//
//   - Partition. Members and chunks are hashed onto one ring (each member
//     with a few virtual points when members are few); a chunk's owner is
//     the member at or after the chunk's point, the next distinct members
//     are ranks 1, 2, ... Every host computes the same owner when the
//     views agree. The owner asks the origin at once; a host of rank r
//     asks only r fallback delays after the chunk entered its window, if
//     nobody it knows has or fetches it by then (the owner is gone, slow
//     or sees other members). The fallback delay is twice the measured
//     mean time from a chunk entering the window to being seen, at least
//     OriginFallbackDelay (RequestTimeout before the first sample).
//   - Pacing. Every host ranks the chunks in one global order (a hash of
//     the index, independent of the ring) and lets a chunk into its origin
//     window only when it is among the first OriginSwarmWindow (K) chunks
//     of that order that neither it nor a known peer has. So the whole
//     swarm keeps about K chunks open at the origin, in order, whatever
//     the number of hosts, and spreads each chunk while the origin sends
//     the next ones; a host's own cap is OriginParallel with slow start,
//     without jitter.
//
// With the members known, three rules keep the first copies of a chunk
// moving fast. First-hop deferral: a chunk that has just reached its only
// holder among our peers (often its owner, fresh from the origin), a
// holder not measured fast, is asked of it at once by only about two of
// the hosts that see it (a hash of host and chunk picks them, with
// probability 2/peers); the others leave it until a second known peer has
// it, or OriginFallbackDelay/4 has passed (while the holder is measured
// slow, up to six times that, about two more hosts asking at each), so a
// slow holder does not share its upload among dozens of copies of one
// chunk. Slow peers: a peer that has been silent, with requests open, for
// 4 times the mean peer request time, or whose measured throughput is 4
// times below our peers' mean, is asked only for chunks no other known
// peer has, so its upload goes to what only it holds (unless nothing else
// is on its way to us or the end game is on: then anything, one request
// at a time, so it is measured again and never starves a chunk).
// Rerouting: when a peer that is not slow comes to have a chunk whose
// every open request is at measured-slow peers (asked while they were its
// only holders), those requests are withdrawn (Picker.Withdrawn) and
// cancelled, and the chunk is asked of the new holder.
//
// A Cancel stops a chunk being sent, not only a queued one: chunks larger
// than 256 KiB (64 KiB with an upload rate limit, the limiter's pieces) go
// out as ChunkParts with control messages between them, and a sender that
// sees a Cancel of the chunk it is sending ends it with Reject
// (RejectCancelled); the receiver drops the parts it has. A late answer to
// one of our own cancels is not held against the peer.
//
// No peer can take more than its share of this host's upload. A session
// keeps the set of chunks it has pending for its peer (queued, being read
// or sent) and the chunks it sent whole recently (the last 1,024, within
// RequestTimeout): a Request of either again is a duplicate and dropped,
// so thousands of copies of one index in a Request cost one upload. A
// Cancel clears a chunk from both, so a peer whose request timed out (it
// cancels first) is served again. With an upload rate limit, the turns at
// the limiter (one piece each) go to the waiting sessions by start-time
// fair queueing over peers, by bytes: while several peers want chunks each
// gets an equal share of the rate, however many streams (one per package)
// and however deep a queue it has; a peer that was idle banks no credit.
// Without a limit the link is shared by the transport, one connection per
// peer.
//
// SetMembers costs O(m log m + n log m) for m members and n chunks
// (O(n log m) with a MemberRing prepared once and shared by many Pickers:
// SetMemberRing); each origin decision is O(log n).
//
// Received chunks are verified and stored by a few workers per session
// (bounded, at most twice as many per download at once), so the store's
// latency overlaps with the network and the reader is backpressured by a
// bounded queue. Requested chunks are read from the Store (and re-verified)
// by two readers per session, at most 2 MiB ahead of the writer. Large
// chunk buffers are pooled on both sides: a received chunk's buffer is
// reused once a VerifiedChunkSink has stored it, an upload's once it is
// written to the stream (ChunkReaderInto).
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
// # Trust
//
// Nothing a source says is trusted. A ChunkSource only delivers bytes; Get
// checks every chunk against its CID and length (which the signed manifest
// pins), every file's whole-file hash (the chunk-list hash, see
// metadata.FileHash) against its chunks, and every path again even though
// the caller validated the manifest. Unverified bytes are never left behind.
//
// # The origin
//
// Origin is a plain HTTP client of a repository laid out as DESIGN.md says
// (metadata/, manifests/CID, chunks/CID). Every response is bounded three
// ways: in size (never more than the expected length plus one byte is
// buffered, so an endless body is cut and reported as metadata.ErrTooLarge),
// in stall time (no byte for StallTimeout: ErrStalled) and in rate (fewer
// than MinRate bytes per second over any StallTimeout window: ErrSlow, the
// defence against slow-retrieval attacks). There is no global timeout, so a
// large but healthy transfer is never cut. Origin implements metadata's
// Fetcher (for TUF metadata and manifests) and ChunkSource.
//
// # Get
//
// Get rebuilds a tree from a manifest:
//
//  1. Check the manifest's paths (metadata.ValidatePath: clean, relative,
//     no "..", no NUL; backslashes and bytes that are not UTF-8 allowed;
//     parents are directories; symlink targets non-empty without NUL, kept
//     as written, absolute ones too), each Entry.Hash against its
//     chunk list (so a file whose chunks all verify is the file the manifest
//     names), and OutDir (absent or empty).
//  2. Make a hidden staging directory ".NAME.stork-partial-XXXX" beside
//     OutDir, so the final rename is atomic, and open it as an os.Root: no
//     operation below can leave it.
//  3. Create directories (owner-writable for now), then every file with
//     O_CREAT|O_EXCL|O_NOFOLLOW, pre-sized with Truncate; remember each
//     file's inode, and refuse to write through any later reopen that finds
//     another one.
//  4. Fetch each unique chunk once, Parallel at a time, verify its CID and
//     length, and
//     pwrite it at every offset of every file that uses it. Transient errors
//     are retried with backoff; a hash mismatch or an over-long body at most
//     once; a missing chunk never.
//  5. Fsync each file as soon as its last chunk is written (overlapping the
//     rest of the download); empty files at the end.
//  6. Create symlinks, only now, so nothing was ever written through one.
//     A target is resolved by whoever reads the tree, relative to its own
//     root (a chroot or container using OutDir); Get never follows one.
//  7. Apply owners and modes: run as root, each entry gets the archive's
//     owner (lchown, before chmod: chown clears setuid) and full mode; run
//     as another user (or with NoOwners), entries stay the caller's and
//     files lose setuid and setgid, counted in GetResult.SetuidDropped.
//     Files, then directories deepest first, then the top, so a read-only
//     directory never stops its own population.
//  8. Rename the staging directory to OutDir and fsync the parent.
//
// Any error or cancellation removes the staging directory: a failed or
// interrupted Get leaves OutDir as it found it.
//
// # The server
//
// Server serves a repository directory read-only: GET and HEAD of regular
// files with Range support; no listings, no "..", no symlink leaving the
// directory (os.Root). Content-addressed and versioned files are marked
// immutable for caches; timestamp.json and other unversioned metadata
// no-cache.
package transfer
