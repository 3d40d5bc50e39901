// Package share is the per-host store: every distinct file once, package
// trees built from hard links to those files, a badger index, atomic
// commit, garbage collection, and the read-only views through which VMs
// see trees.
//
// # Layout
//
// Under the data directory:
//
//	objects/<xx>/<hash>[.<perm>[.<uid>.<gid>]]
//	                              finished files, named by Entry.Hash (the
//	                              chunk-list hash, metadata.FileHash); <xx> is
//	                              the hash's last two characters. Each carries
//	                              the entry's permission bits and owner (an
//	                              ObjectVariant: a hard link shares its inode's
//	                              mode and owner), so the name says them: the
//	                              hash alone for 0444 root, ".<perm>" for
//	                              other modes owned by root, and the owner
//	                              when it is not root. Never setuid, setgid
//	                              or sticky. Never written in place. 0700.
//	trees/<manifest CID>/         a committed package: real directories (the
//	                              manifest's mode and owner), hard links to
//	                              objects, symlinks (targets as written,
//	                              owners). 0700.
//	setuid/<manifest CID>/        the setuid variant of a tree, built when a
//	                              view that applies setuid first needs it
//	                              (setuid.go). 0700.
//	partial/<xx>/<hash>-<size>    files being filled (chunk by chunk, at
//	                              their offsets), shared by every Partial that
//	                              needs them; <xx> as in objects/
//	index/                        badger: packages and their state, manifests,
//	                              name@version lookup, objects, chunk presence
//	                              in partial files, chunk locations, VM
//	                              installs and their reverse references
//	tmp/                          trees and object copies being built,
//	                              trees being removed; emptied by Open.
//	                              Trees and manifest files are written
//	                              in tmp/<xx>/ (<xx> the fanout of their
//	                              name), spread over the file system, and
//	                              renamed into place
//	manifests/<manifest CID>      every package's manifest bytes, and
//	manifests/<CID>.names         the NAME@VERSIONs it was registered
//	                              under (strict JSON): written before the
//	                              index records the package, so that a
//	                              lost index can be rebuilt (Rebuild)
//	store-id                      the store's random id, also in the index
//	quarantine/                   object files that failed verification,
//	                              kept for forensics (bounded)
//	lost+found/<CID>              trees Rebuild could not attribute
//	index.lost/                   the index Rebuild replaced
//
// Trees are the archive's trees: every entry with its mode and owner, so
// a view shows the package as it was built; what keeps the store safe is
// not rewritten modes but where the trees can be reached. objects/,
// trees/ and setuid/ are private to root (0700): no user of the host
// reaches an object or tree directory that the archive made writable for
// some user or group. A VM reaches them only through a view: a read-only
// bind mount, an overlay whose upper layer takes every write, or a link
// farm, which is refused for a file anyone but root may write. Objects
// never carry setuid, setgid or sticky; a file's setuid and setgid reach
// only the setuid variant of its tree (a private copy), and take effect
// only in views mounted without nosuid for VMs whose policy allows it.
// Identical files (same hash, same permission bits and owner) are stored
// once whatever package or version they come from, so every tree and
// every VM that uses them shares one inode, on disk and in the page cache;
// two names of one content in one package are hard links to one inode, as
// they were in the archive.
//
// A package record says its tree's layout: trees built before modes and
// owners were carried (stores written by earlier versions) have objects
// and directories without write bits, owned by root, and keep them
// (layoutReadOnly); new trees get the full layout. Rebuild tells the two
// apart by the tree's root directory (0555 before, 0755 now). The daemon
// never follows a symlink of a tree: trees are built from validated
// manifests, whose parents are all directories, and Verify looks at each
// entry through descriptors below the tree's root.
//
// # Partials and the commit protocol
//
// A package being downloaded is a Partial (state partial). BeginPackage
// checks the manifest bytes against their CID and decodes them with
// metadata.DecodeManifest, records the package and returns its Partial,
// the sink a download writes chunks into. The Partial needs no chunk of a
// file whose object exists; for the others it opens (or creates, sized)
// the partial file. PutChunk checks the chunk against its CID and length
// before anything else (PutVerifiedChunk is for a caller that checked
// it), then pwrites it at every offset of every partial file that uses
// it, fdatasyncs, and only then records the chunk present in badger
// (synced). A chunk write that would leave less than indexReserve free on
// the file system fails with ENOSPC instead (space.go): badger writes its
// log through a memory map, and a full file system would kill the process
// at its next write rather than fail it. When a file has all its chunks, the
// whole-file hash (metadata.FileHash) is checked; the file is read back and
// every chunk checked unless this process verified and wrote every chunk
// of it and the file is unchanged since (same inode, size, change and
// modification times as after our last write, which is checked before each
// write too); then it is fsynced, made read-only and renamed into objects/ with
// RENAME_NOREPLACE (an existing object is never replaced, only an
// unindexed one that fails verification); then the object is indexed and
// the presence records dropped. Concurrent PutChunks share these syncs and
// transactions (group commit, see groupcommit.go); a file that one group
// completes (a small file) is renamed into objects/ before that group's
// sync and indexed in its transaction, without presence records. Chunks of
// 64 KiB or more at aligned offsets are written and read with O_DIRECT
// (see direct_linux.go): written once and synced at once, they gain
// nothing from the page cache. Commit needs every object, builds the tree
// in tmp/, syncs the file system, renames the tree into trees/ and marks
// the package complete.
//
// Crash safety follows from the order: data is durable before any record
// says it exists, and a record is dropped before the data it names. After a
// crash at any point, Open empties tmp/ and drops presence records of
// partial files that are gone; a download resumes from the presence records
// (fetching only what was not recorded); an object renamed into place but
// not yet indexed is verified and adopted by the next BeginPackage or GC; a
// partial file whose recorded chunks no longer verify loses those records
// and fetches them again.
//
// With Config.Checkpoint (the daemon's default, every second) the steps of
// a download do not wait for syncs: the files and the index's records are
// made durable together by a checkpoint, and what was recorded after the
// last one carries a w/ key that Open checks after a power cut
// (checkpoint.go). The order above still holds for a process that is
// killed: its writes are all in the page cache.
//
// # Garbage collection and installs
//
// An install (RecordInstall) pins a package; so does a mount that uses its
// tree (a view: a bind mount of it, an overlay with it as a lower layer,
// read from /proc/self/mountinfo); so does the Keep flag that
// BeginPackage sets and SetKeep or RemovePackage clear, unless GC is asked
// to drop unfinished downloads (GCOptions.Partial); so does an open
// download (Partial.Close ends one that failed). GC removes the other
// packages, then objects no live package uses, partial files no unfinished
// live package needs, index records that lead nowhere, and any stray file;
// it never removes a tree a mount uses, even one the index does not know.
// RemovePackage refuses an installed or mounted package (ErrInUse). A
// package's tree is moved into tmp/ before its records are dropped, so a
// tree is never left without its record. Reference counts are the r/
// records written in the same transaction as the installs they mirror, so
// they cannot drift.
//
// # A lost or damaged index
//
// Open refuses (ErrIndexLost) an index that does not hold the store's id,
// an empty index beside trees or objects, and an index lacking the package
// of any tree: an index silently empty would let GC delete every object
// and tree. Rebuild (daemon stopped) recreates it from manifests/, the
// trees and the objects, re-hashing every object; see integrity.go and
// rebuild.go.
//
// # Damaged objects
//
// An object record keeps the inode and modification time of the file when
// it was verified. CheckPackage compares each object of a package with
// them before its tree is exposed (a full re-hash only where they differ);
// Scrub re-hashes every object in turn; Repair does both with no daemon
// running. A damaged object is quarantined and its packages become
// partial, with a q/ record, until a download fetches it again and relinks
// their trees in place, where views bound to them see the good file. See
// damage.go.
//
// # Views
//
// MountView shows a tree to a VM: a read-only, nodev bind mount; an
// overlayfs whose only lower layer is the tree, with a VM-private upper
// directory taking every change; or a hard-link farm for file systems
// without mounts, which is safe only for unprivileged VMs (see ViewLink).
// Bind and overlay views are nosuid unless View.Setuid, which shows the
// setuid variant of the tree (SetuidTree).
//
// A view lives below a VM's root, a directory the VM controls and may
// change at any moment. The root is opened once; every path below it is
// opened one component at a time with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) and every create, chmod,
// link, unlink and mount acts on descriptors (beneath_linux.go), so a
// symlink the VM plants is never followed: the operation fails, or
// removes the symlink itself. Mounts are made detached and moved onto the
// mount point's descriptor, and UnmountView checks that the mount there
// is the view before it detaches it. CheckView says whether a view is
// still in place.
//
// An install record (RecordInstall) names the VM, the package name it was
// installed as, its version and content, the root and the view's path; a
// VM has one per package name. A package record lists every name@version
// its content was published under.
//
// OpenReadOnly opens a store no process is writing (a stopped daemon's)
// for reading only: badger's read-only mode, nothing created, recovered or
// removed on disk.
//
// share imports metadata only; it never imports transfer or node.
package share
