package share

import "errors"

// Sentinel errors callers act on. Errors returned by this package wrap one of
// these with %w and name the chunk, file or package concerned.
var (
	// ErrChunkCorrupt: chunk bytes do not match their CID (or the length the
	// manifest gives them). Such a chunk is never written. The error also
	// wraps metadata.ErrHashMismatch.
	ErrChunkCorrupt = errors.New("chunk corrupt")
	// ErrObjectCorrupt: a stored file does not hash to its name.
	ErrObjectCorrupt = errors.New("object corrupt")
	// ErrBadManifest: manifest bytes do not decode, validate, or match their CID.
	ErrBadManifest = errors.New("bad manifest")
	// ErrNotFound: no such package, chunk, object or install.
	ErrNotFound = errors.New("not found")
	// ErrUnknownChunk: a chunk handed to a download is not in its manifest.
	ErrUnknownChunk = errors.New("chunk not in package")
	// ErrInUse: a package is still referenced by a VM install.
	ErrInUse = errors.New("in use")
	// ErrIncomplete: a package cannot be committed while files are missing.
	ErrIncomplete = errors.New("incomplete")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store closed")
	// ErrIndexLost: the index is not the store's own, or lacks packages
	// whose trees exist (it was lost or damaged). The store refuses to
	// open; Rebuild recovers the index from the files.
	ErrIndexLost = errors.New("index lost or damaged")
	// ErrInvalid: a malformed argument (empty VM id, bad view mode, ...).
	ErrInvalid = errors.New("invalid argument")
	// ErrViewReplaced: something other than the view (a symlink, a file,
	// another mount) is where a view is, or on the way to it: the VM put
	// it there. It is never followed.
	ErrViewReplaced = errors.New("view replaced")
	// ErrViewUnreachable: a directory on the way to a view is a symlink or
	// not a directory (it also wraps ErrViewReplaced): the view cannot be
	// reached without following what the VM put there.
	ErrViewUnreachable = errors.New("view unreachable")
)
