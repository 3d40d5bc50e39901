package share

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/dgraph-io/badger/v4"
)

// OpenReadOnly opens an existing store for reading only, for tools that
// look at a host's store while its daemon is stopped (stork list, status).
// It writes nothing: no directory is created, tmp/ is left alone, nothing
// is recovered and the index is not checked (Open does all that when the
// daemon starts). The index is opened with badger's read-only mode, which
// shares badger's directory lock with other readers and fails while a
// writer holds it. An index left by a killed process that needs its log
// truncated cannot be opened read-only: Open (the daemon) repairs it.
func OpenReadOnly(cfg Config) (*Store, error) {
	s, err := newStore(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.path(indexDir)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open store %s read-only: %w: no index (no daemon has used this directory)", cfg.Dir, ErrNotFound)
		}
		return nil, fmt.Errorf("open store %s read-only: %w", cfg.Dir, err)
	}
	opts := s.indexOptions().WithReadOnly(true)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open store %s read-only: index: %w", cfg.Dir, err)
	}
	s.db = db
	s.start()
	return s, nil
}
