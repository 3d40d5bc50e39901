package swarm

import "errors"

// Sentinel errors callers act on. Errors returned by this package wrap one
// of these (or one of metadata's, such as ErrHashMismatch) with %w and add
// what failed and why.
var (
	// ErrNoSource: a download made no progress for NoProgressTimeout (no
	// peer served and the origin failed or is absent).
	ErrNoSource = errors.New("no source can serve the package")
	// ErrClosed: the Swarm was closed.
	ErrClosed = errors.New("swarm closed")
	// ErrDownloading: a download of the same package is already running.
	ErrDownloading = errors.New("package already downloading")
	// ErrOriginUnavailable: a download waited OriginDeadline for an
	// unreachable origin with no chunk arriving from anyone.
	ErrOriginUnavailable = errors.New("origin unavailable")
	// ErrProtocol: a peer sent a malformed, oversized or unexpected message.
	ErrProtocol = errors.New("swarm protocol violation")
)
