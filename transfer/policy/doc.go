// Package policy is the swarm's piece-selection and origin policy: for one
// download, which chunk to ask next and from whom (a peer or the HTTP
// origin). The daemon's swarm (package transfer/swarm) and the simulator
// (package simulations) drive the very same code, so that what a
// simulation of 10,000 hosts says is what the daemon does.
//
// # Rules
//
//   - Pure code: no I/O, no goroutines, no clock (every call that needs
//     the time is given it) and no import beyond the standard library.
//   - Deterministic for a given PickerConfig.Rand: the same calls in the
//     same order make the same choices.
//   - A Picker is not safe for concurrent use; its caller guards it (the
//     swarm with its download's lock).
//   - The Picker decides and records; its caller acts. NextForPeer and
//     NextForOrigin change nothing but expiries: the caller sends the
//     request and says so (Requested), and reports what happened
//     (Received, Failed, Cancelled, Timeouts, PeerHave, PeerLeft, ...).
//     What the Picker closes by itself (Received's losers, Timeouts,
//     Withdrawn) it returns, for the caller to cancel.
//
// Chunks are indexed 0..n-1 in the order of the package's unique chunks
// (metadata.Manifest.UniqueChunks); peers are named by PeerID, the origin
// by the pseudo-peer OriginPeer.
//
// # Piece selection (levels.go, pick.go, endgame.go)
//
// Rarest first: among the chunks a peer has, that we lack and that nobody
// is being asked for, a pick takes one of those held by the fewest known
// peers. Chunks sit in one bitset per availability level (with a summary
// word per 64 words); a pick scans the lowest level the peer can serve,
// ANDed with the peer's have-map, from a random word and bit, so ties
// break randomly and concurrent hosts spread out. Availability changes are
// O(1).
//
// Requests are pipelined per peer to depth ceil(throughput x RTT / mean
// chunk length) + 1 (PipelineDepth), at most the larger of
// MaxInflightBytes and DownloadInflight/peers bytes of chunks: a peer
// serves all its sessions at once, so a deeper pipeline only queues at a
// peer that serves many hosts, and a chunk that became easier to get
// elsewhere waits behind it.
//
// End game: with at most EndgameThreshold chunks left, a peer with nothing
// new to offer may be asked for a chunk already requested elsewhere (the
// least requested first, at most EndgameDuplicates outstanding) once its
// requests are EndgameDelay old; Received returns the other requests to
// cancel. A request whose chunk is on its way (Streaming: its first bytes
// arrived) is duplicated only once it is four times the delay old: the
// second copy would most often arrive behind the first for nothing. The delay is a floor: the caller adapts it
// (SetEndgameDelay) to how long its host's requests take
// (ResponseTimes.EndgameDelay, twice their mean, capped), so that a
// saturated host, whose every answer takes many times an idle one's, does
// not duplicate requests that are merely queued behind its own load.
//
// # Peer scoring (scoring.go)
//
// Each chunk received measures its peer: throughput (an EWMA of bytes over
// the time the peer spent on the chunk) and, for a request made while
// nothing else was in flight to it, the round trip. Scores size the
// pipelines and order the peers (RankPeers); strikes count consecutive
// failures and timeouts, and the caller drops a peer with too many.
//
// A peer request unanswered for RequestTimeout, from a peer that delivered
// nothing for as long, is returned by Timeouts; one older than
// StallTimeout makes its chunk eligible for the origin as well. Progress
// (part of a large chunk arrived, see PartSize) keeps a slow peer from
// counting as stalled.
//
// # The origin (origin.go, window.go, ring.go)
//
// The origin is one more source, asked only for chunks that no known peer
// has or said it is fetching (PeerPending: peers say Fetching before they
// go to the origin), or whose peer request stalled (those come first,
// always). Which host asks the origin for which chunk depends on what the
// host knows of the swarm.
//
// A host that knows no other member (SetMembers was never given any)
// walks the eligible chunks in its own random order (a permutation drawn
// at NewPicker), so that hosts starting together ask for different chunks
// and then trade them, with a window of OriginParallel/(peers+1) that
// opens with slow start (OriginInitialWindow, one more per chunk the
// origin delivers) and small jitter (OriginJitter).
//
// Once it knows the members (the swarm feeds every provider Discovery
// finds into SetMembers, not only the peers it trades with), two rules
// make the origin send about one copy at a pace that does not grow with
// the swarm:
//
//   - Partition (ring.go). Members and chunks are hashed onto one ring
//     (each member with a few virtual points when members are few); a
//     chunk's owner is the member at or after the chunk's point, the next
//     distinct members are ranks 1, 2, ... Every host computes the same
//     owner when the views agree. The owner asks the origin at once; a
//     host of rank r asks only r fallback delays after the chunk entered
//     its window, if nobody it knows has or fetches it by then (the owner
//     is gone, slow, cut off from the origin or sees other members). The
//     fallback delay is twice the measured mean time from a chunk entering
//     the window to being seen, at most RequestTimeout, at least
//     OriginFallbackDelay (RequestTimeout before the first sample).
//   - Pacing (window.go). Every host ranks the chunks in one global order
//     (ChunkOrder: a hash of the index, independent of the ring) and lets
//     a chunk into its origin window only when it is among the first
//     OriginSwarmWindow (K) chunks of that order that neither it nor a
//     known peer has. So the whole swarm keeps about K chunks open at the
//     origin, in order, whatever the number of hosts, and spreads each
//     chunk while the origin sends the next ones; a host's own cap is
//     OriginParallel with slow start, without jitter.
//
// After an origin outage, OriginResumed makes the window's unseen chunks
// enter it afresh, so that fallback delays count from the resume.
//
// # Cooperative fetching (fetchers.go)
//
// Fetchers ranks a host's members, itself included, as each chunk's
// origin fetchers by rendezvous (highest random weight) hashing of the
// chunk's key (ChunkKey: a hash of its CID, so one chunk has one fetcher
// whatever package it is in, and the chunks of many small packages
// spread over the members). Hosts that see the same members agree on
// every fetcher with no message exchanged; a member joining or leaving
// moves only the chunks it ranks first. Each Member carries a site ("":
// unknown): with the host's own site known, the members of that site
// rank before all others (Before), and the first of a site asks the
// chunk's global fetcher, the first by weight alone (Upstream), so that
// only that one asks the origin and each site takes one copy in. The swarm
// sends each origin request to the chunk's first-ranked fetcher (a
// pull-through request) and asks the origin itself only when it ranks
// first or its fetchers fail; SetPullThrough(true) then makes every
// chunk of the members' origin window due at once, at every host, with
// no fallback delay by rank.
//
// # The first copies (firsthop.go, scoring.go)
//
// With the members known, three rules keep the first copies of a chunk
// moving fast.
//
//   - First-hop deferral: a chunk that has just reached its only holder
//     among our peers (often its owner, fresh from the origin), a holder
//     not measured fast, is asked of it at once by only about two of the
//     hosts that see it (a hash of host and chunk picks them, with
//     probability 2/peers); the others leave it until a second known peer
//     has it, or OriginFallbackDelay/4 has passed (while the holder is
//     measured slow, up to six times that, about two more hosts asking at
//     each), so a slow holder does not share its upload among dozens of
//     copies of one chunk. Thawed tells a caller that polls its peers
//     (the simulator) that a deferral ended.
//   - Slow peers: a peer that has been silent, with requests open, for 4
//     times the mean peer request time, or whose measured throughput is 4
//     times below our peers' mean, is asked only for chunks no other known
//     peer has, so its upload goes to what only it holds (unless nothing
//     else is on its way to us or the end game is on: then anything, one
//     request at a time, so it is measured again and never starves a
//     chunk).
//   - Rerouting: when a peer that is not slow comes to have a chunk whose
//     every open request is at measured-slow peers (asked while they were
//     its only holders), those requests are withdrawn (Withdrawn) for the
//     caller to cancel, and the chunk is asked of the new holder.
//
// # Sites (sites.go)
//
// Hosts of one site share a fast network and one uplink. Once told (SetSites,
// then SetPeerLocal per peer), a Picker asks a peer of another site only
// for chunks that no peer of our site holds and that we rank first for
// among our site's hosts we know (rendezvous hashing of host and chunk),
// so each site pulls about one copy across its link and spreads it
// inside. A host ranked r-th joins in after r waits (4 times the measured
// time from a chunk seen at a peer to a local peer holding it, at least
// OriginFallbackDelay/8), should no local peer hold it by then; the end
// game lifts the rule. A host's site is configured, or inferred from the
// round trips to its peers (InferSite: the cluster of peers within
// max(2 x the nearest, nearest + 1ms), if all others are at least 3 times
// and 10ms farther); configuration always wins (ResolveSite). Which peers to
// connect to, our site's first and at most a few of others, is
// ChooseSitePeers and AcceptSitePeer.
//
// # Cost
//
// SetMembers costs O(m log m + n log m) for m members and n chunks
// (O(n log m) with a MemberRing prepared once and shared by many Pickers:
// SetMemberRing); each origin decision is O(log n); a pick scans the
// non-empty words of the lowest levels.
//
// # The simulator's API (ref.go)
//
// A simulation runs thousands of Pickers and makes millions of calls. For
// it, Pickers of one package share what depends on the package alone
// (PickerConfig.Order, a MemberRing), and the *Ref methods take a PeerRef
// handle instead of a PeerID, skipping a map look-up per call; they do
// exactly what the methods of the same name do.
package policy
