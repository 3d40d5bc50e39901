package metadata

import "errors"

// Sentinel errors callers act on. Errors returned by this package wrap one of
// these with %w and add what failed and why.
var (
	// ErrInvalidPath: an entry path is absolute, not clean, contains "..",
	// or is otherwise not a relative path inside the tree.
	ErrInvalidPath = errors.New("invalid path")
	// ErrUnsupportedEntry: a device, fifo, socket or hard link leaving the tree.
	ErrUnsupportedEntry = errors.New("unsupported entry")
	// ErrDuplicatePath: two entries share one path.
	ErrDuplicatePath = errors.New("duplicate path")
	// ErrTooLarge: a size, count or length passes a configured limit.
	ErrTooLarge = errors.New("too large")
	// ErrMalformed: bytes do not decode as the expected structure.
	ErrMalformed = errors.New("malformed")
	// ErrHashMismatch: bytes do not match the hash or CID that names them.
	ErrHashMismatch = errors.New("hash mismatch")
	// ErrNotFound: a name, version, target or file does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: NAME@VERSION is already published with other content.
	ErrExists = errors.New("already exists")
	// ErrExpired: signed metadata is past its expiry.
	ErrExpired = errors.New("expired")
	// ErrRollback: signed metadata is older than what is already trusted.
	ErrRollback = errors.New("rollback")
	// ErrSignature: a signature is missing, wrong, or below threshold.
	ErrSignature = errors.New("bad signature")
	// ErrDependency: a dependency no published package satisfies, or
	// constraints on one name that no version meets together.
	ErrDependency = errors.New("dependency error")
	// ErrLocked: another publisher holds the repository lock for longer
	// than the caller was willing to wait.
	ErrLocked = errors.New("repository locked")
	// ErrUnavailable: no source answered with a copy of a file that
	// verifies, and the origin could not be reached to say whether it
	// exists (see CheckingFetcher).
	ErrUnavailable = errors.New("no source available")
)
