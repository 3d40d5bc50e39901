// Package origin is the HTTP side of moving chunks: the client of a
// repository (the origin) that the daemon and `stork get` use, the
// verified download of a whole package tree without a daemon (Get, behind
// `stork get`), and the static repository server behind `stork repo
// serve`. It knows nothing of the swarm: the daemon gives a Client to the
// swarm as one more chunk source.
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
// Client is a plain HTTP client of a repository laid out as DESIGN.md says
// (metadata/, manifests/CID, chunks/CID). Every response is bounded three
// ways: in size (never more than the expected length plus one byte is
// buffered, so an endless body is cut and reported as metadata.ErrTooLarge),
// in stall time (no byte for StallTimeout: ErrStalled) and in rate (fewer
// than MinRate bytes per second over any StallTimeout window: ErrSlow, the
// defence against slow-retrieval attacks). There is no global timeout, so a
// large but healthy transfer is never cut. Client implements metadata's
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
//  4. Fetch each unique chunk once (FetchChunks), Parallel at a time, verify its CID and
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
package origin
