package node

import (
	"crypto/rand"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/share"
	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// The daemon's implementations of the swarm's interfaces pass the
// conformance suites the in-memory fakes pass: swarmStore over a real
// store, P2P as Network and as Discovery on loopback.

func TestSwarmStoreConformance(t *testing.T) {
	transfertest.TestChunkStore(t, func(t *testing.T, mc cid.Cid, m *metadata.Manifest, held map[cid.Cid][]byte) swarm.ChunkStore {
		st, err := share.Open(share.Config{Dir: t.TempDir(), UnsafeNoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		mb, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		dl, err := st.BeginPackage("conformance", "1.0.0", mc, mb)
		if err != nil {
			t.Fatal(err)
		}
		for c, data := range held {
			if err := dl.PutChunk(c, data); err != nil {
				t.Fatal(err)
			}
		}
		if len(held) == len(m.UniqueChunks()) {
			if err := dl.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		return swarmStore{st}
	})
}

func TestP2PNetworkConformance(t *testing.T) {
	transfertest.TestNetwork(t, func(t *testing.T) transfertest.NetworkFixture {
		b := testP2P(t, nil)
		a := testP2P(t, nil, b)
		host := func(p *P2P) transfertest.NetworkHost {
			return transfertest.NetworkHost{ID: p.ID(), Net: p, Serve: func(h func(swarm.PeerID, swarm.Stream)) { p.SetStreamHandler(h) }}
		}
		return transfertest.NetworkFixture{A: host(a), B: host(b), Absent: absentPeer(t)}
	})
}

func TestP2PDiscoveryConformance(t *testing.T) {
	transfertest.TestDiscovery(t, func(t *testing.T) [3]transfertest.DiscoveryHost {
		first := testP2P(t, nil)
		ps := []*P2P{first, testP2P(t, nil, first), testP2P(t, nil, first)}
		var hs [3]transfertest.DiscoveryHost
		for k, p := range ps {
			hs[k] = transfertest.DiscoveryHost{ID: p.ID(), Disc: p}
		}
		return hs
	})
}

// absentPeer returns the ID of a host that is on no network.
func absentPeer(t *testing.T) swarm.PeerID {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return swarm.PeerID(id.String())
}
