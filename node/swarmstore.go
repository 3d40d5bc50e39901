package node

import (
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/share"
	"github.com/storkpm/stork/transfer/swarm"
)

// swarmStore lets the swarm upload what the host store holds: verified
// chunks only, of packages whose manifests the store knows.
type swarmStore struct{ s *share.Store }

var (
	_ swarm.ChunkStore      = swarmStore{}
	_ swarm.PackageStore    = swarmStore{}
	_ swarm.ChunkReaderInto = swarmStore{}
)

func (a swarmStore) Manifest(c cid.Cid) (*metadata.Manifest, error) {
	m, _, err := a.s.Manifest(c)
	if errors.Is(err, share.ErrNotFound) {
		return nil, fmt.Errorf("manifest %s: %w", c, metadata.ErrNotFound)
	}
	return m, err
}

func (a swarmStore) ReadChunk(c cid.Cid) ([]byte, error) {
	b, err := a.s.ReadChunk(c)
	if errors.Is(err, share.ErrNotFound) {
		return nil, fmt.Errorf("chunk %s: %w", c, metadata.ErrNotFound)
	}
	return b, err
}

func (a swarmStore) HasChunk(c cid.Cid) bool { return a.s.HasChunk(c) }

// HasPackage: a committed package has every object, so every chunk.
func (a swarmStore) HasPackage(c cid.Cid) bool {
	info, err := a.s.Package(c)
	return err == nil && info.State == share.StateComplete
}

func (a swarmStore) ReadChunkInto(c cid.Cid, buf []byte) ([]byte, error) {
	b, err := a.s.ReadChunkInto(c, buf)
	if errors.Is(err, share.ErrNotFound) {
		return nil, fmt.Errorf("chunk %s: %w", c, metadata.ErrNotFound)
	}
	return b, err
}
