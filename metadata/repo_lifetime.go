package metadata

import (
	"fmt"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// SetLifetime sets how long the metadata of a top-level role (root,
// targets, snapshot, timestamp) that the repository signs from now on
// stays valid, and records it in the repository's settings; metadata
// already signed keeps its expiry until it is signed again (Refresh signs
// the timestamp at once). A long timestamp lifetime lets hosts go on from
// peers for that long while the origin is gone; hosts refuse a timestamp
// once it has expired, so it is also how long a frozen repository can
// hold them back.
func (r *Repo) SetLifetime(role string, d time.Duration) error {
	switch role {
	case tufmeta.ROOT, tufmeta.TARGETS, tufmeta.SNAPSHOT, tufmeta.TIMESTAMP:
	default:
		return fmt.Errorf("set lifetime of %q: %w: want root, targets, snapshot or timestamp", role, ErrNotFound)
	}
	if d <= 0 {
		return fmt.Errorf("set lifetime of %s: %w: %v is not positive", role, ErrMalformed, d)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(); err != nil {
		return fmt.Errorf("repository %s: %w", r.dir, err)
	}
	r.expires[role] = d
	return r.saveSettings()
}
