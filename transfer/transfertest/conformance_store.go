package transfertest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/swarm"
)

// NewChunkStoreFunc returns the ChunkStore under test, knowing manifest m
// (whose CID is mc) and holding exactly held, verified chunks of m: all
// of them (a package downloaded whole) or some (a download under way).
type NewChunkStoreFunc func(t *testing.T, mc cid.Cid, m *metadata.Manifest, held map[cid.Cid][]byte) swarm.ChunkStore

// TestChunkStore is the conformance suite of swarm.ChunkStore and of its
// optional extensions (swarm.PackageStore, swarm.ChunkReaderInto): every
// implementation (MemStore, the daemon's store) must pass it.
func TestChunkStore(t *testing.T, newStore NewChunkStoreFunc) {
	m, chunks := BuildManifest(16<<10, []Entry{
		{Path: "a", Data: bytes.Repeat([]byte("stork "), 10000)},
		{Path: "b", Data: []byte("small")},
		{Path: "c", Data: []byte{}},
	})
	mc, err := m.CID()
	if err != nil {
		t.Fatal(err)
	}
	refs := m.UniqueChunks()
	missing := metadata.SumCID([]byte("nobody has this"))

	t.Run("Whole", func(t *testing.T) {
		st := newStore(t, mc, m, chunks)
		checkManifest(t, st, mc)
		for _, r := range refs {
			checkHeld(t, st, r.CID, chunks[r.CID])
		}
		checkNotHeld(t, st, missing)
		if ps, ok := st.(swarm.PackageStore); ok {
			if !ps.HasPackage(mc) {
				t.Errorf("HasPackage(%s) = false for a package held whole", mc)
			}
			if ps.HasPackage(missing) {
				t.Errorf("HasPackage(%s) = true for an unknown package", missing)
			}
		}
	})
	t.Run("Partial", func(t *testing.T) {
		held := map[cid.Cid][]byte{refs[0].CID: chunks[refs[0].CID]}
		st := newStore(t, mc, m, held)
		checkManifest(t, st, mc)
		checkHeld(t, st, refs[0].CID, chunks[refs[0].CID])
		for _, r := range refs[1:] {
			checkNotHeld(t, st, r.CID)
		}
		if ps, ok := st.(swarm.PackageStore); ok && ps.HasPackage(mc) {
			t.Errorf("HasPackage(%s) = true with %d of %d chunks held", mc, len(held), len(refs))
		}
	})
	t.Run("UnknownManifest", func(t *testing.T) {
		st := newStore(t, mc, m, chunks)
		if got, err := st.Manifest(missing); !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("Manifest(%s) = %v, %v; want an error wrapping metadata.ErrNotFound", missing, got, err)
		}
	})
	t.Run("ReadChunkInto", func(t *testing.T) {
		st := newStore(t, mc, m, chunks)
		ri, ok := st.(swarm.ChunkReaderInto)
		if !ok {
			t.Skip("the store does not implement swarm.ChunkReaderInto")
		}
		for _, r := range refs {
			want := chunks[r.CID]
			for _, buf := range [][]byte{nil, make([]byte, 0, len(want)/2), make([]byte, 0, len(want)+4096)} {
				got, err := ri.ReadChunkInto(r.CID, buf)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("ReadChunkInto(%s, cap %d) = %d bytes, %v; want the %d stored", r.CID, cap(buf), len(got), err, len(want))
				}
			}
		}
		if _, err := ri.ReadChunkInto(missing, make([]byte, 0, 64)); !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("ReadChunkInto(%s) error = %v, want metadata.ErrNotFound", missing, err)
		}
	})
}

// checkManifest fails unless st returns the manifest whose CID is mc.
func checkManifest(t *testing.T, st swarm.ChunkStore, mc cid.Cid) {
	t.Helper()
	got, err := st.Manifest(mc)
	if err != nil {
		t.Fatalf("Manifest(%s) error: %v", mc, err)
	}
	if c, err := got.CID(); err != nil || !c.Equals(mc) {
		t.Errorf("Manifest(%s) returned a manifest whose CID is %s (%v)", mc, c, err)
	}
}

// checkHeld fails unless st holds chunk c with exactly want.
func checkHeld(t *testing.T, st swarm.ChunkStore, c cid.Cid, want []byte) {
	t.Helper()
	if !st.HasChunk(c) {
		t.Errorf("HasChunk(%s) = false for a chunk held", c)
	}
	got, err := st.ReadChunk(c)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("ReadChunk(%s) = %d bytes, %v; want the %d stored", c, len(got), err, len(want))
	}
}

// checkNotHeld fails unless st says it lacks chunk c, both ways.
func checkNotHeld(t *testing.T, st swarm.ChunkStore, c cid.Cid) {
	t.Helper()
	if st.HasChunk(c) {
		t.Errorf("HasChunk(%s) = true for a chunk not held", c)
	}
	if _, err := st.ReadChunk(c); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("ReadChunk(%s) error = %v, want metadata.ErrNotFound", c, err)
	}
}
