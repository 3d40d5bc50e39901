package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
	tuffetcher "github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// remoteBase is the fake URL scheme the go-tuf updater is given: the adapter
// strips it to get a repository path ("metadata/N.root.json").
const remoteBase = "stork:"

// tufFetcher adapts a Fetcher to go-tuf's fetcher interface. go-tuf's
// interface carries no context, so the client sets ctx before each call
// into the updater (under the client's lock). With a CheckingFetcher, the
// copies of metadata files are checked against up's trusted set before one
// is chosen (client_sources.go); dir is the client's trusted directory.
type tufFetcher struct {
	f   Fetcher
	ctx context.Context
	up  *updater.Updater
	dir string
	// ts, if set, is returned for timestamp.json instead of fetching it
	// (Client.RefreshAnnounced).
	ts []byte
}

var _ tuffetcher.Fetcher = (*tufFetcher)(nil)

// DownloadFile implements go-tuf's fetcher.Fetcher. A missing file is
// reported as an HTTP 404 (which is how go-tuf learns that no newer root
// exists) that also wraps ErrNotFound.
func (a *tufFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	p, ok := strings.CutPrefix(urlPath, remoteBase)
	if !ok {
		return nil, fmt.Errorf("fetch %q: %w: not a repository path", urlPath, ErrInvalidPath)
	}
	if a.ts != nil && p == MetadataDir+"/"+tufmeta.TIMESTAMP+".json" {
		return slices.Clone(a.ts), nil
	}
	ctx := a.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	var data []byte
	var err error
	checked := false
	if cf, ok := a.f.(CheckingFetcher); ok && a.up != nil {
		data, checked, err = a.fetchChecked(ctx, cf, p, maxLength)
	}
	if !checked {
		data, err = a.f.Fetch(ctx, p, maxLength)
		if err == nil && a.up != nil {
			a.keepRoot(p, data)
		}
	}
	// A file no source has is a 404 to go-tuf, which ends the root chain
	// there; for other files an unreachable origin is kept as it is.
	if errors.Is(err, ErrNotFound) && (!errors.Is(err, ErrUnavailable) || strings.HasSuffix(p, ".root.json")) {
		return nil, fmt.Errorf("%w: %w", &tufmeta.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: p}, err)
	}
	return data, err
}

// mapTUFError wraps a go-tuf error with the matching sentinel of this
// package, keeping the original text.
func mapTUFError(what string, err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{ErrNotFound, ErrTooLarge, ErrInvalidPath, ErrMalformed, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, s) {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	var sentinel error
	var dl *tufmeta.ErrDownloadHTTP
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &dl) && dl.StatusCode == http.StatusNotFound:
		sentinel = ErrNotFound
	case errors.Is(err, &tufmeta.ErrExpiredMetadata{}):
		sentinel = ErrExpired
	case errors.Is(err, &tufmeta.ErrBadVersionNumber{}):
		sentinel = ErrRollback
	case errors.Is(err, &tufmeta.ErrUnsignedMetadata{}):
		sentinel = ErrSignature
	case errors.Is(err, &tufmeta.ErrLengthOrHashMismatch{}):
		sentinel = ErrHashMismatch
	case errors.Is(err, &tufmeta.ErrDownloadLengthMismatch{}):
		sentinel = ErrTooLarge
	case errors.Is(err, &tufmeta.ErrRepository{}), errors.Is(err, &tufmeta.ErrValue{}),
		errors.Is(err, &tufmeta.ErrType{}), errors.As(err, &syn), errors.As(err, &typ):
		sentinel = ErrMalformed
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, sentinel, err)
}
