package node

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/storkpm/stork/metadata"
)

// maxAnnounceSize bounds an announced timestamp.json (a few signatures
// and one snapshot reference: far less).
const maxAnnounceSize = 16 << 10

// Announced takes a timestamp.json that someone says is newer than the
// trusted one (a peer's announcement, or `stork group set --notify`): it
// is checked against the trusted root before anything is fetched (a
// forged, replayed, expired or rolled-back one changes nothing and is the
// error), then the metadata it names is fetched through f and checked as
// a refresh checks it, and a convergence pass is asked for. f nil is the
// daemon's own fetcher.
func (d *Daemon) Announced(ctx context.Context, ts []byte, f metadata.Fetcher) error {
	if f == nil {
		f = d.metaFetcher
	}
	if err := d.meta.c.RefreshAnnounced(ctx, ts, f); err != nil {
		return err
	}
	last := d.meta.c.LastRefresh()
	if d.meta.onRefresh != nil {
		d.meta.onRefresh(last.At, last.Version)
	}
	d.log.Info("applied announced metadata", "version", last.Version)
	d.conv.kick()
	return nil
}

// serveAnnounce is POST /v1/announce: the body is a timestamp.json.
func (d *Daemon) serveAnnounce(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxAnnounceSize+1))
	if err == nil && len(b) > maxAnnounceSize {
		err = fmt.Errorf("announcement: %w: over %d bytes", ErrBadRequest, maxAnnounceSize)
	}
	if err == nil {
		err = d.Announced(r.Context(), b, nil)
	}
	answer(w, map[string]any{"version": d.meta.c.LastRefresh().Version}, err)
}

// Announce hands the daemon a newer timestamp.json (see Daemon.Announced).
func (c *Client) Announce(ctx context.Context, ts []byte) error {
	return c.call(ctx, http.MethodPost, "/v1/announce", ts, nil)
}
