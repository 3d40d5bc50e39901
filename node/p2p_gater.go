package node

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// blockGater refuses connections to and from peers blocked until some time
// (a peer the swarm banned). Expired entries are dropped lazily.
type blockGater struct {
	now func() time.Time
	mu  sync.Mutex
	// until maps a blocked peer to the end of its block.
	until map[peer.ID]time.Time
}

var _ connmgr.ConnectionGater = (*blockGater)(nil)

func newBlockGater(now func() time.Time) *blockGater {
	return &blockGater{now: now, until: map[peer.ID]time.Time{}}
}

// block refuses p's connections for d (extending, never shortening, a
// block already in place).
func (g *blockGater) block(p peer.ID, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	end := g.now().Add(d)
	if cur, ok := g.until[p]; !ok || cur.Before(end) {
		g.until[p] = end
	}
}

// unblock lifts p's block.
func (g *blockGater) unblock(p peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.until, p)
}

func (g *blockGater) blocked(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	end, ok := g.until[p]
	if !ok {
		return false
	}
	if !g.now().Before(end) {
		delete(g.until, p)
		return false
	}
	return true
}

func (g *blockGater) InterceptPeerDial(p peer.ID) bool { return !g.blocked(p) }

func (g *blockGater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return !g.blocked(p) }

func (g *blockGater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

func (g *blockGater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.blocked(p)
}

func (g *blockGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}
