package node

import "errors"

// Sentinel errors callers act on.
var (
	// ErrForbidden: a VM asked for something its policy does not allow.
	ErrForbidden = errors.New("forbidden")
	// ErrUnknownVM: no VM is registered under that ID.
	ErrUnknownVM = errors.New("unknown vm")
	// ErrBadRequest: a request is malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrQuotaExceeded: a VM's request would take it over its quota (the
	// error wraps ErrForbidden too).
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrBusy: the daemon refused a connection because its socket has as
	// many open as it takes (APILimits); try again later.
	ErrBusy = errors.New("daemon busy")
	// ErrNotRunning: no daemon answers on the data directory's socket.
	ErrNotRunning = errors.New("daemon not running")
	// ErrRunning: a daemon holds the data directory, so it cannot be read
	// or changed directly; ask the daemon through its socket.
	ErrRunning = errors.New("a daemon runs on it")
	// ErrClosed: the daemon is closing and starts no more downloads.
	ErrClosed = errors.New("daemon closed")
	// ErrConverge: a convergence pass left some VM short of its groups'
	// policies; it keeps its last good state and the pass is retried.
	ErrConverge = errors.New("not converged")
)
