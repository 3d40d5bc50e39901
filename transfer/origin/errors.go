package origin

import (
	"errors"
	"fmt"
)

// Sentinel errors callers act on. Errors returned by this package wrap one of
// these (or one of metadata's: ErrNotFound, ErrTooLarge, ErrHashMismatch)
// with %w and add what failed and why.
var (
	// ErrStalled: a response delivered no byte for Config.StallTimeout.
	ErrStalled = errors.New("transfer stalled")
	// ErrSlow: a response delivered fewer than Config.MinRate bytes per
	// second over a whole StallTimeout window (slow-retrieval attack or a
	// hopeless link).
	ErrSlow = errors.New("transfer too slow")
	// ErrTruncated: a response ended before the expected number of bytes.
	ErrTruncated = errors.New("truncated response")
	// ErrUnsafePath: a path would leave its tree (absolute, "..", not clean,
	// or through a symlink).
	ErrUnsafePath = errors.New("unsafe path")
	// ErrOutDirExists: Get's output directory exists and is not empty.
	ErrOutDirExists = errors.New("output directory exists and is not empty")
)

// StatusError is an unexpected HTTP status from the origin (anything but 200,
// and 404 which is reported as metadata.ErrNotFound).
type StatusError struct {
	URL    string
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s: unexpected HTTP status %d", e.URL, e.Status)
}

// Temporary reports whether retrying may help (5xx, 408, 429).
func (e *StatusError) Temporary() bool {
	return e.Status >= 500 || e.Status == 408 || e.Status == 429
}
