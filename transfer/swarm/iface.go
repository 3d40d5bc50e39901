package swarm

import (
	"context"
	"io"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
)

// The small interfaces the swarm needs from the daemon. node implements
// them with libp2p (streams, Kademlia DHT) and the host store; tests use the
// in-memory fakes in transfertest. transfertest's conformance suites
// (TestChunkStore, TestNetwork, TestDiscovery, TestChunkSource) state
// each contract as tests, and every implementation runs them.

// PeerID names a peer: the string form of its libp2p peer ID.
type PeerID = policy.PeerID

// Stream is one bidirectional swarm-protocol stream to a peer.
type Stream interface {
	io.ReadWriteCloser
	// Reset aborts the stream in both directions (a protocol violation).
	Reset() error
}

// Network opens swarm-protocol streams (Protocol) to peers and can
// drop a peer altogether (a banned peer).
type Network interface {
	OpenStream(ctx context.Context, p PeerID) (Stream, error)
	// ClosePeer closes every connection to p.
	ClosePeer(p PeerID) error
}

// PullNetwork is an optional Network extension: a network whose hosts
// serve pull-through requests (PullProtocol) for one another. The swarm
// ranks the members it reports as each chunk's origin fetchers (see
// policy.Fetchers) and asks a chunk's fetcher for it before it asks the
// origin itself.
type PullNetwork interface {
	// Members returns the hosts this host is connected to that serve
	// PullProtocol, at once and without asking anyone (no DHT look-up),
	// each with its site if known. The swarm asks again from time to time.
	Members() []policy.Member
	// OpenPull opens a PullProtocol stream to p.
	OpenPull(ctx context.Context, p PeerID) (Stream, error)
}

// ManifestResolver is what a host serving pull-through requests uses to
// learn a package it neither holds nor downloads: it returns the manifest
// of CID manifest only if signed repository metadata this host trusts
// pins it (a peer cannot make this host fetch chunks of anything else),
// fetching the manifest's bytes if it must.
type ManifestResolver interface {
	ResolveManifest(ctx context.Context, manifest cid.Cid) (*metadata.Manifest, error)
}

// Discovery announces that this host holds (or is fetching) a package and
// finds the other hosts that do: one record per package (its manifest CID),
// never per chunk.
type Discovery interface {
	Provide(ctx context.Context, manifest cid.Cid) error
	// FindProviders streams peers that announced manifest, each at most
	// once and never this host; the channel closes when the search ends
	// or soon after ctx does.
	FindProviders(ctx context.Context, manifest cid.Cid) <-chan PeerID
}

// ChunkStore is what this host can upload: verified chunks only.
type ChunkStore interface {
	// Manifest returns a package's manifest if this host knows it (an
	// error wrapping metadata.ErrNotFound when it does not).
	Manifest(manifest cid.Cid) (*metadata.Manifest, error)
	// ReadChunk returns a verified chunk's bytes (metadata.ErrNotFound, or
	// an error wrapping it, when this host does not hold it).
	ReadChunk(c cid.Cid) ([]byte, error)
	// HasChunk reports whether ReadChunk would succeed.
	HasChunk(c cid.Cid) bool
}

// PackageStore is an optional ChunkStore extension: a store that knows it
// holds every chunk of a package says so in one call, where a have-map
// would otherwise take a HasChunk per chunk (10,000 index look-ups before
// the first message of a session about a package of 10,000 small files).
type PackageStore interface {
	// HasPackage reports whether HasChunk holds for every chunk of the
	// package.
	HasPackage(manifest cid.Cid) bool
}

// ChunkReaderInto is an optional ChunkStore extension: ReadChunkInto is
// ReadChunk into buf when buf is large enough, so that the swarm reuses
// its upload buffers (no allocation and zeroing per chunk served). It
// returns the chunk, in buf or not, and keeps no reference to buf.
type ChunkReaderInto interface {
	ReadChunkInto(c cid.Cid, buf []byte) ([]byte, error)
}

// ChunkSource is the origin as the swarm sees it: one more source of
// chunks, asked only for what no peer can serve (the HTTP origin's client,
// or a fake). It need not verify: the swarm checks every chunk against its
// CID and length before anything else sees it.
type ChunkSource interface {
	// FetchChunk returns the bytes of chunk c, which the caller expects to be
	// size bytes long. A source must refuse to read more than size bytes
	// (an error wrapping metadata.ErrTooLarge); a missing chunk is an error
	// wrapping metadata.ErrNotFound.
	FetchChunk(ctx context.Context, c cid.Cid, size int64) ([]byte, error)
}

// CheckedSource is an optional ChunkSource extension: a source whose
// FetchChunk returns a chunk only once it matches its CID (the HTTP
// origin's client) says so, and the swarm checks only its length rather
// than hash it a second time.
type CheckedSource interface {
	ChecksChunks()
}

// Protocol is the libp2p protocol ID of the swarm wire protocol.
const Protocol = "/stork/swarm/1.0.0"

// PullProtocol is the libp2p protocol ID of pull-through requests (pull.go).
const PullProtocol = "/stork/pull/1.0.0"
