// Package metadata is Stork's content model and its signed repository
// metadata: what a package is (a tree of files cut into chunks, listed in a
// manifest named by its CID), how a package source becomes one (Import), how
// untrusted manifest bytes are checked (DecodeManifest, Validate), and the
// TUF metadata, keys and policies that sign manifests (see the repo, client
// and keys files).
//
// # Content model
//
// A package is a tree of entries: files, directories and symlinks, carried
// exactly as the archive has them. The root is implicit and never listed.
// Paths are slash-separated, relative, clean (no empty, "." or ".."
// element), with no NUL, and at most Limits.MaxPathLen bytes
// (ValidatePath); every other byte a Linux file system accepts in a name is
// allowed: backslashes, control characters, bytes that are not UTF-8.
// Entries are sorted, and duplicates refused, on the raw bytes. Every
// parent directory of an entry is itself a directory entry, so a path never
// passes through a file or a symlink. Device files, fifos and sockets do
// not exist in the model.
//
// Each entry keeps the archive's full mode (mode & 0o7777: write bits,
// setuid, setgid and sticky) and its owner as numbers (UID, GID; 0 is
// root, and a source that says nothing gives root) with the names where
// the archive has them (User, Group; "root" for id 0 is implied and not
// repeated). Symlinks carry mode 0777. A symlink's target is data: any
// non-empty bytes without NUL, kept as written, absolute or climbing out
// of the tree or looping alike. It is resolved only where the tree is used
// (inside a VM's view, in the VM's own file system, as the package
// intends); nothing that stores, moves or checks a tree follows it.
//
// The encoding carries names losslessly: a path or symlink target that is
// valid UTF-8 is a JSON string ("path", "target"); any other is base64 in
// "path_b64" or "target_b64" instead, so that JSON never rewrites it. The
// owner fields are omitted when zero or empty. So a tree of root-owned
// entries with UTF-8 names encodes, and is named, exactly as before owners
// and raw names were carried.
//
// Each file is cut into consecutive chunks of Manifest.ChunkSize bytes (the
// last one shorter, none for an empty file; ChunkSize within [MinChunkSize,
// MaxChunkSize]). A chunk is named by its CIDv1, codec raw, multihash
// sha2-256: the CID any IPFS tool computes for the same bytes. Chunks need
// no signature: the manifest pins them.
//
// # The file hash
//
// Entry.Hash is the file's chunk-list hash (FileHash): the sha2-256 of the
// concatenation of the 32-byte sha2-256 digests of its chunks, in order,
// wrapped as a CIDv1 raw sha2-256. For an empty file that is SumCID(nil).
// It is NOT the IPFS CID of the file's content (the two differ for every
// non-empty file), and the same content cut at another chunk size has
// another Hash. Two files have the same Hash exactly when they have the same
// chunk list, which (sha2-256 being collision resistant) means the same
// content at the same chunk size; so Hash is a sound name for a file in a
// store. It is defined this way so that an import hashes every byte once:
// the chunk CIDs need a sha2-256 of every chunk anyway, and a sha2-256 of
// the whole content on top would hash every byte twice and halve import
// throughput (sha2-256 is the bottleneck). The chunk-list hash costs 32
// bytes of hashing per chunk. Validate recomputes it from Chunks, so a
// manifest cannot carry a Hash that disagrees with its chunks, and whoever
// has verified every chunk of a file has verified its Hash (Entry.VerifyHash,
// FileHash). Hash is not defined as the content CID for single-chunk files
// either: mixing the two definitions would let a small file whose content is
// the digest list of a large one share the large file's Hash. Stores should
// still keep file hashes and chunk CIDs in separate namespaces: a chunk
// whose bytes are a digest list has a CID equal to some file's Hash.
//
// # Manifests
//
// A Manifest holds the format version, the chunk size and the entries,
// sorted by path, with no duplicates. Encode gives its one canonical
// encoding (compact JSON in field order) and CID the CID of those bytes,
// which names the package content: the same tree always gives the same
// bytes. DecodeManifest accepts untrusted bytes only if they are within
// Limits.MaxManifestSize, strict JSON (no unknown fields, no trailing data),
// pass Validate, and are byte for byte the canonical encoding of what they
// decode to; so a manifest has exactly one accepted encoding.
//
// Validate checks all of the above: format, chunk size, order, paths,
// parents, types, modes, owners (ids other than 2^32-1, which chown reads
// as "unchanged"; names of at most MaxOwnerName bytes of UTF-8 without
// control characters), for files the size limit, the chunk count
// (ceil(Size/ChunkSize)), every CID (CIDv1 raw sha2-256 in canonical base32)
// and the chunk-list hash, for symlinks a non-empty target without NUL
// within the path length limit, and the entry count and total size limits. Every error is one line naming the entry and the
// reason, wrapping a sentinel of errors.go.
//
// # Import
//
// Import reads a package source: a directory (walked without following
// symlinks), a tar, tar.gz or tar.zst archive, a .deb (an ar archive whose
// data.tar, data.tar.gz, data.tar.xz or data.tar.zst member holds the tree),
// or a single file (a one-file tree). It refuses what the model refuses
// (absolute or ".." paths, devices, fifos, sockets, duplicate paths, hard
// links to anything but an earlier regular file of the archive, owners that
// cannot be owners) rather than dropping or rewriting it; the only rewrites
// are stripping a leading "./" and a directory's trailing "/", skipping the
// root entry, making up missing parent directories (mode 0755, root), and
// not repeating the name "root" of id 0. A tar entry keeps its mode, uid,
// gid, user and group names; a directory source its files' modes and
// numeric owners. A hard link becomes a file with the content, mode and
// owner of its target: the same content under the same mode and owner is
// one object in a store, so the two names are hard links to one inode
// again in a store's tree.
//
// Limits hold while streaming: a file or tree passing its size limit, or an
// archive passing the entry limit, is refused when the bytes that pass it
// arrive, so neither a lying header nor an endless stream can run memory
// away. One chunk buffer is reused for the whole import; each chunk is
// hashed once, in cache-sized pieces as it is read, pushed to the ChunkSink,
// and named in the manifest. Decompressors are bounded (zstd window and
// memory; xz blocks asking for an LZMA2 dictionary over 64 MiB, which the
// decoder would allocate at once, are refused; gzip is bounded by its
// format), and after a tar's end marker at
// most a small padding is read, through to the end of the compressed stream
// so that its checksum is checked. The returned manifest is sorted and
// passes Validate, and the same input always gives the same manifest: a
// directory and a tar of it with the same modes give the same bytes.
//
// # Versions and dependencies
//
// A package is published as the TUF target packages/NAME/VERSION with
// VERSION exactly as the publisher gave it: it is never rewritten. Its
// Scheme, recorded in the target's custom field (none means semver, as
// targets published before schemes existed are), orders it: semver
// (Masterminds), deb (dpkg's verrevcmp through pault.ag/go/debian) or rpm
// (rpmvercmp). Versions of every scheme are letters, digits and
// . + ~ ^ _ : - (checkVersionText), so a version is safe as the last path
// element of a target, in delegation globs and in store index keys, and
// never appears in a URL the client fetches (manifests and chunks are
// fetched by CID). One name uses one scheme, and the publisher refuses a
// version equal under the scheme to a published one with other content
// ("1.2" and "1.2.0", "1.0" and "0:1.0-0"), so that an exact reference
// (which matches the same string first, then an equal version) is never
// ambiguous.
//
// A Constraint is parsed once and read under the scheme of each version
// it is checked against, since a dependency does not know the scheme of
// the package it names. A dependency entry is one relation or
// alternatives "a | b". A package may provide other names (virtual
// packages, provides.go): its target lists them, and the provides index of
// a role that may sign each name lists the package, both signed. The
// resolver (resolve.go) builds a closure as a set, breadth first,
// dependency cycles and self-dependencies allowed: each name is satisfied
// by a package already in the closure, else by the newest version of the
// real package satisfying every gathered constraint, else by a provider
// (the newest version of the lexically first name); of alternatives the
// first already satisfied, else already required, else satisfiable. A
// .deb's control file (ReadDebControl) supplies its name, version,
// dependencies (Pre-Depends and Depends) and Provides.
//
// # Group policies
//
// A group policy says what the VMs of a group must have (Require: NAME,
// NAME@VERSION or NAME@CONSTRAINT, one entry per name) and must not have
// (Forbid: names). It is the custom field of the TUF target
// groups/GROUP/policy, whose length and hashes pin its one canonical
// encoding (GroupPolicy.Encode: sorted lists, strict JSON, bounded), so a
// policy is as signed as a package. Repo.Delegate with Groups hands
// "groups/<glob>/*" to a maintainer's key (`stork repo delegate --group G
// --publisher KEY` makes the role group-G); Repo.SetGroup signs the
// policy with the role that TUF's delegation walk reaches for its path
// (a delegated role, else top-level targets) plus snapshot and timestamp,
// exactly as a delegated publisher's Add does. A maintainer's key covers
// its groups' paths and nothing else: it cannot sign another group's
// policy, nor a package.
//
// Client.Group and Client.Groups read a policy the way TUF resolves a
// target: the walk follows only delegations whose paths cover
// groups/G/policy, a role is verified (threshold of the delegation's keys,
// version pinned by the snapshot, expiry) when first asked for after a
// refresh, and the custom field is checked against the signed hashes. A
// role whose every path is under groups/ is a group role and is loaded
// lazily, so that an expired, below-threshold or rolled-back group role
// costs its groups alone (the error says which and why) and the daemon
// keeps those groups' VMs on their last good state. Client.ResolveSet
// resolves a VM's requirements together into one closure (one version per
// name, the newest that satisfies every constraint on it).
//
// Client.CheckTimestamp checks an announced timestamp.json against the
// trusted root at the current time (signature threshold, expiry, newer
// than the trusted one, not naming an older snapshot) without fetching
// anything; Client.RefreshAnnounced refreshes from such a timestamp
// through a fetcher the caller chooses (the announcing peer first), every
// file checked as in Refresh, and keeps the trusted set when anything
// fails.
package metadata
