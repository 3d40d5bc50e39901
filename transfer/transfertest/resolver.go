package transfertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/swarm"
)

// MemManifests is an in-memory swarm.ManifestResolver: the manifests a
// repository publishes (Publish), as a host's trusted metadata would pin
// them. It is safe for concurrent use.
type MemManifests struct {
	mu sync.Mutex
	m  map[cid.Cid]*metadata.Manifest
}

var _ swarm.ManifestResolver = (*MemManifests)(nil)

// NewMemManifests returns a resolver that knows no manifest.
func NewMemManifests() *MemManifests {
	return &MemManifests{m: make(map[cid.Cid]*metadata.Manifest)}
}

// Publish makes m, named c, resolvable.
func (r *MemManifests) Publish(c cid.Cid, m *metadata.Manifest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[c] = m
}

// ResolveManifest implements swarm.ManifestResolver.
func (r *MemManifests) ResolveManifest(ctx context.Context, c cid.Cid) (*metadata.Manifest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.m[c]; m != nil {
		return m, nil
	}
	return nil, fmt.Errorf("resolve manifest %s: %w", c, metadata.ErrNotFound)
}

// NewResolverFunc returns a ManifestResolver of a repository that
// published exactly m (named mc).
type NewResolverFunc func(t *testing.T, mc cid.Cid, m *metadata.Manifest) swarm.ManifestResolver

// TestManifestResolver is the conformance suite of swarm.ManifestResolver:
// a published manifest resolves to itself, anything else is not found.
func TestManifestResolver(t *testing.T, newResolver NewResolverFunc) {
	m, _ := BuildManifest(metadata.MinChunkSize, []Entry{{Path: "a", Data: []byte("resolve me")}})
	mc, err := m.CID()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := BuildManifest(metadata.MinChunkSize, []Entry{{Path: "b", Data: []byte("never published")}})
	oc, err := other.CID()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("Published", func(t *testing.T) {
		got, err := newResolver(t, mc, m).ResolveManifest(context.Background(), mc)
		if err != nil {
			t.Fatalf("ResolveManifest(%s) error: %v", mc, err)
		}
		if gc, err := got.CID(); err != nil || !gc.Equals(mc) {
			t.Fatalf("ResolveManifest(%s) = manifest %s (%v)", mc, gc, err)
		}
	})
	t.Run("Unpublished", func(t *testing.T) {
		_, err := newResolver(t, mc, m).ResolveManifest(context.Background(), oc)
		if !errors.Is(err, metadata.ErrNotFound) {
			t.Fatalf("ResolveManifest(unpublished) error = %v, want metadata.ErrNotFound", err)
		}
	})
}
