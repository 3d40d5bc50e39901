package transfertest_test

import (
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// The in-memory fakes pass the suites the real implementations (node's)
// pass.

func TestMemStoreConformance(t *testing.T) {
	transfertest.TestChunkStore(t, func(t *testing.T, mc cid.Cid, m *metadata.Manifest, held map[cid.Cid][]byte) swarm.ChunkStore {
		st := transfertest.NewMemStore()
		st.AddManifest(mc, m)
		st.AddChunks(held)
		return st
	})
}

func TestMemNetConformance(t *testing.T) {
	transfertest.TestNetwork(t, func(t *testing.T) transfertest.NetworkFixture {
		mn := transfertest.NewMemNet(transfertest.LinkShape{})
		t.Cleanup(mn.Wait)
		a, b := mn.Node("a", nil), mn.Node("b", nil)
		return transfertest.NetworkFixture{
			A:      transfertest.NetworkHost{ID: a.ID(), Net: a, Serve: func(h func(swarm.PeerID, swarm.Stream)) { a.SetHandler(h) }},
			B:      transfertest.NetworkHost{ID: b.ID(), Net: b, Serve: func(h func(swarm.PeerID, swarm.Stream)) { b.SetHandler(h) }},
			Absent: "absent",
		}
	})
}

func TestMemDiscoveryConformance(t *testing.T) {
	transfertest.TestDiscovery(t, func(t *testing.T) [3]transfertest.DiscoveryHost {
		d := transfertest.NewMemDiscovery()
		var hs [3]transfertest.DiscoveryHost
		for k, id := range []swarm.PeerID{"h0", "h1", "h2"} {
			hs[k] = transfertest.DiscoveryHost{ID: id, Disc: d.For(id)}
		}
		return hs
	})
}

func TestMemManifestsConformance(t *testing.T) {
	transfertest.TestManifestResolver(t, func(t *testing.T, mc cid.Cid, m *metadata.Manifest) swarm.ManifestResolver {
		r := transfertest.NewMemManifests()
		r.Publish(mc, m)
		return r
	})
}
