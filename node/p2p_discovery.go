package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/storkpm/stork/transfer/swarm"
)

// Discovery: how a host finds the others that hold a package.
//
// First the neighbours' have-lists (p2p_havelist.go): what each connected
// peer announces, pushed once and then as it grows, answered without a
// round trip. When fewer than enoughNeighbours list a package, two more
// sources run side by side:
//
//  1. The Kademlia DHT of the /stork overlay (kad-dht's classic provide:
//     IpfsDHT.Provide stores the record locally, then PUTs it on the k=20
//     closest peers a lookup finds; FindProvidersAsync asks the local
//     store, then walks towards the key). This is what scales.
//  2. /stork/have, a one-question protocol asked of every directly
//     connected peer: "who provides this multihash?" The peer answers
//     with itself if it announced it and with the provider records the
//     DHT stored on it.
//
// Why both: in a 2-3 host overlay the DHT alone is fragile. A Provide made
// before the routing table fills (the first host of a testbed, or a host
// whose identify exchange has not finished) fails with "failed to find any
// peer in table" and stores the record nowhere but locally; a lookup run
// from an empty routing table returns nothing; DHT clients (hosts AutoNAT
// finds unreachable) are never asked. So: Provide keeps every announced
// CID and treats that failure as "pending"; announcements are pushed again
// every ProvideInterval and, while the routing table holds fewer than k
// peers (the only case in which a newcomer may be among the k closest for
// every key), whenever a DHT peer joins, with retries while no peer is
// there yet; and /stork/have covers whatever the DHT misses among
// neighbours (past enoughNeighbours have-lists, only the neighbours that
// send none: askNeighbours). kad-dht v0.38's newer "provider" package
// (the sweeping reprovider) is not used: it schedules by keyspace region
// and needs a network-size estimate that a 3-host overlay cannot give.
//
// And neither is used where the have-lists say it all: in an overlay
// that is one neighbourhood (meshed: every routing-table peer a
// neighbour that sends its have-list, at least enoughNeighbours), a
// provide PUTs no record and FindProviders walks no DHT. A testbed, a
// cluster of a few dozen hosts, an upgrade's flash crowd among them pays
// no lookup per package; an overlay larger than one neighbourhood uses
// the DHT as above.
//
// Nothing learnt here is trusted: a provider is only a peer to ask, and
// every chunk it sends is checked against the manifest.

// HaveProtocol is the libp2p protocol ID of the neighbour provider query.
//
// Wire format, one question per stream: the asker writes a uvarint length
// and a binary CID (at most maxHaveRequest bytes); the answerer writes a
// uvarint length and a JSON array of peer.AddrInfo (at most maxHaveAnswer
// bytes, maxHaveProviders entries), then closes the stream.
const HaveProtocol = "/stork/have/1.0.0"

const (
	maxHaveRequest   = 256
	maxHaveAnswer    = 64 << 10
	maxHaveProviders = 32
	haveTimeout      = 5 * time.Second
	provideTimeout   = time.Minute
)

// Provide announces that this host holds (or is fetching) the package
// named by manifest: at once to the neighbours (have-lists), and to the
// DHT in the background (provideLoop), so that no caller waits on a DHT
// walk. The announcement is kept and repeated; when the DHT has no peer
// yet it is held (and answered on /stork/have and in have-lists) until
// one joins. Announcing a package again is a no-op: the re-provide loop
// repeats every announcement.
func (p *P2P) Provide(ctx context.Context, manifest cid.Cid) error {
	if !manifest.Defined() {
		return errors.New("provide: undefined CID")
	}
	if !p.announced(manifest) {
		return nil
	}
	select {
	case p.provideWake <- struct{}{}:
	default:
	}
	return nil
}

// provideBatchDelay: the provide loop waits this long after a wake-up so
// that the announcements of an upgrade's packages, made within moments of
// one another, go to the DHT as one batch.
const provideBatchDelay = 200 * time.Millisecond

// provideLoop tells the DHT of what Provide added, in batches (8 PUTs at
// a time); what finds no DHT peer is left to the re-provide loop's
// retries.
func (p *P2P) provideLoop() {
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.provideWake:
		}
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(provideBatchDelay):
		}
		p.mu.Lock()
		cids := make([]cid.Cid, 0, len(p.toProvide))
		for _, c := range p.toProvide {
			cids = append(cids, c)
		}
		clear(p.toProvide)
		p.mu.Unlock()
		if p.provideEach(cids) {
			p.log.Debug("no DHT peer yet; provide pending", "cids", len(cids))
			p.wakeReprovide()
		}
	}
}

func (p *P2P) provideDHT(ctx context.Context, c cid.Cid) error {
	ctx, cancel := context.WithTimeout(ctx, provideTimeout)
	defer cancel()
	return p.dht.Provide(ctx, c, true)
}

// wakeReprovide asks the re-provide loop for a round soon.
func (p *P2P) wakeReprovide() {
	select {
	case p.joined <- struct{}{}:
	default:
	}
}

// reprovideLoop announces everything again every ProvideInterval, and
// shortly after a wake-up; a round that found no DHT peer retries with
// backoff (1s … 1m).
func (p *P2P) reprovideLoop() {
	tick := time.NewTicker(p.cfg.ProvideInterval)
	defer tick.Stop()
	retry := time.NewTimer(0)
	if !retry.Stop() {
		<-retry.C
	}
	backoff := time.Second
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-tick.C:
		case <-retry.C:
		case <-p.joined:
			// Let the routing table settle: a peer that joins often
			// brings others with it.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
		if p.reprovideAll() {
			retry.Reset(backoff)
			backoff = min(2*backoff, time.Minute)
		} else {
			backoff = time.Second
		}
	}
}

// reprovideAll announces every held CID, 8 at a time, and reports whether
// some found no DHT peer.
func (p *P2P) reprovideAll() (noPeers bool) {
	p.mu.Lock()
	cids := make([]cid.Cid, 0, len(p.provided))
	for _, c := range p.provided {
		cids = append(cids, c)
	}
	p.mu.Unlock()
	return p.provideEach(cids)
}

// provideEach announces cids to the DHT, 8 at a time, and reports whether
// some found no DHT peer.
func (p *P2P) provideEach(cids []cid.Cid) (noPeers bool) {
	if len(cids) == 0 {
		return false
	}
	if p.meshed() {
		// Every DHT peer hears of these from our have-list: a record PUT
		// on them would be a lookup and k PUTs per package for nothing.
		// Re-provides ask again each ProvideInterval.
		p.counts.meshSkips.Add(int64(len(cids)))
		return false
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, 8)
		ok  int
	)
	for k, c := range cids {
		if k > 0 && p.meshed() {
			// All the overlay lacked was a recent lookup, and the first
			// provide does it: the rest of the batch would be a lookup
			// and k PUTs each for nothing (meshed).
			p.counts.meshSkips.Add(int64(len(cids) - k))
			break
		}
		select {
		case sem <- struct{}{}:
		case <-p.ctx.Done():
			wg.Wait()
			return false
		}
		p.counts.dhtProvides.Add(1)
		p.lookedUp.Store(time.Now().UnixNano())
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := p.provideDHT(p.ctx, c)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, kb.ErrLookupFailure):
				noPeers = true
			case p.ctx.Err() == nil:
				p.log.Warn("provide failed", "cid", c.String(), "err", err)
			}
		}()
	}
	wg.Wait()
	p.log.Debug("provided", "announced", ok, "of", len(cids))
	return noPeers && p.ctx.Err() == nil
}

// meshed reports whether the overlay, as this host sees it, is one
// neighbourhood of have-lists: at least enoughNeighbours peers in the DHT's
// routing table, and every one of them a connected neighbour whose
// have-list this host receives (and so that receives this host's). Then
// the DHT holds nothing the have-lists do not say sooner: provides PUT
// no record and FindProviders walks no DHT, which in an upgrade's flash
// crowd is a lookup and k PUTs per package and host saved. A routing
// table with a peer that is not such a neighbour (an overlay larger than
// one neighbourhood, a host still connecting, a peer without
// have-lists) turns both back on; so do tests of the DHT path (dhtOnly).
//
// A routing table holds only the hosts this one has heard of: early in an
// overlay's life, or for a host that joined first, the hosts it has not
// met are missing from it, and it would look meshed. A lookup is what
// meets them (its queries connect to the closest peers of a key), so the
// DHT is left out only within meshedLookupEvery of the host's last
// lookup: one provide or walk in that time does its lookup, the rest of
// an upgrade's packages do not. Hosts that meet the others only through
// such lookups (the first hosts of an overlay) keep meeting them.
func (p *P2P) meshed() bool {
	if p.dhtOnly {
		return false
	}
	if last := p.lookedUp.Load(); last == 0 || time.Since(time.Unix(0, last)) > meshedLookupEvery {
		return false
	}
	rt := p.dht.RoutingTable().ListPeers()
	if len(rt) < enoughNeighbours {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range rt {
		if _, ok := p.nbHave[id]; !ok {
			return false
		}
	}
	return true
}

// meshedLookupEvery: while meshed, the DHT is still used once in this
// long (meshed).
const meshedLookupEvery = 30 * time.Second

// enoughNeighbours: when this many neighbours' have-lists name a package,
// FindProviders answers with them and looks no further (its callers ask
// again later). With fewer (an overlay of two or three hosts, or a
// package few neighbours have) it also asks the DHT and /stork/have.
const enoughNeighbours = 4

// FindProviders streams the peers (never this host, never a blocked peer)
// that announced manifest, each once; their addresses go into the
// peerstore so that OpenStream can dial them. The neighbours whose
// have-lists name manifest answer first (after waiting up to haveListWait
// for one), and alone when there are enoughNeighbours of them: only
// otherwise does it walk the DHT and ask every neighbour on /stork/have
// (which also knows providers that are not neighbours). The channel
// closes when the searches end, ctx ends, or the host closes. Callers
// that need more peers later call it again.
func (p *P2P) FindProviders(ctx context.Context, manifest cid.Cid) <-chan swarm.PeerID {
	out := make(chan swarm.PeerID)
	if !manifest.Defined() || !p.track() {
		close(out)
		return out
	}
	go func() {
		defer p.wg.Done()
		defer close(out)
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(p.ctx, cancel)
		defer stop()

		found := make(chan peer.AddrInfo)
		go func() {
			defer close(found)
			if !p.dhtOnly {
				ids := p.neighboursListing(ctx, string(manifest.Hash()))
				for _, id := range ids {
					select {
					case found <- peer.AddrInfo{ID: id}:
					case <-ctx.Done():
						return
					}
				}
				if len(ids) >= enoughNeighbours {
					p.counts.fromHaveLists.Add(1)
					return
				}
			}
			p.searchWide(ctx, manifest, found)
		}()

		seen := map[peer.ID]bool{p.host.ID(): true}
		// Keep reading found until it closes, so that no sender is left
		// blocked; once ctx ends nothing more is sent on out.
		for ai := range found {
			if seen[ai.ID] || ctx.Err() != nil || p.gater.blocked(ai.ID) {
				continue
			}
			seen[ai.ID] = true
			if len(ai.Addrs) > 0 {
				p.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.RecentlyConnectedAddrTTL)
			}
			select {
			case out <- swarm.PeerID(ai.ID.String()):
			case <-ctx.Done():
			}
		}
	}()
	return out
}

// searchWide walks the DHT for manifest's providers and asks every
// neighbour on /stork/have, side by side, and sends what they find on
// found until both end.
func (p *P2P) searchWide(ctx context.Context, manifest cid.Cid, found chan<- peer.AddrInfo) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.awaitRoutingTable(ctx)
		if p.meshed() {
			// No DHT peer but our have-list neighbours: their lists
			// name whoever of them provides it, and none PUT a record.
			p.counts.meshSkips.Add(1)
			return
		}
		p.counts.dhtLookups.Add(1)
		p.lookedUp.Store(time.Now().UnixNano())
		start, any := time.Now(), false
		for ai := range p.dht.FindProvidersAsync(ctx, manifest, 0) {
			if !any {
				any = true
				p.observeLookup(time.Since(start), true)
			}
			select {
			case found <- ai:
			case <-ctx.Done():
			}
		}
		if !any && ctx.Err() == nil {
			p.observeLookup(time.Since(start), false)
		}
	}()
	go func() {
		defer wg.Done()
		if !p.dhtOnly {
			p.askNeighbours(ctx, manifest, found)
		}
	}()
	wg.Wait()
}

// observeLookup reports a DHT provider lookup: the time to its first
// provider, or to its end when it found none.
func (p *P2P) observeLookup(d time.Duration, found bool) {
	if p.cfg.lookupObserver != nil {
		p.cfg.lookupObserver(d, found)
	}
}

// awaitRoutingTable waits, up to 2s, for a first peer in the DHT routing
// table when the host is connected (or bootstrapping) but identify has not
// yet put anyone there: a lookup from an empty table ends at once, empty.
func (p *P2P) awaitRoutingTable(ctx context.Context) {
	if len(p.host.Network().Peers()) == 0 && len(p.cfg.Bootstrap) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for p.dht.RoutingTable().Size() == 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// askNeighbours asks every connected peer that speaks HaveProtocol, 16 at
// a time, and sends what they answer on found. With enoughNeighbours
// have-lists or more (an overlay past the few hosts where the DHT is
// fragile), a neighbour whose have-list this host receives is not asked:
// its list names it as soon as it announces the package, and the records
// the DHT stored on it are the DHT walk's to find (searchWide runs it
// beside this). In an upgrade's flash crowd that is a question to every
// neighbour per package and host saved, most of the streams the hosts
// would otherwise open.
func (p *P2P) askNeighbours(ctx context.Context, c cid.Cid, found chan<- peer.AddrInfo) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	p.mu.Lock()
	listing := len(p.nbHave) >= enoughNeighbours
	p.mu.Unlock()
	for _, id := range p.host.Network().Peers() {
		// Skip a peer identify showed not to speak the protocol; one not
		// yet identified is asked anyway (NewStream negotiates).
		if protos, err := p.host.Peerstore().GetProtocols(id); err != nil || (len(protos) > 0 && !slices.Contains(protos, HaveProtocol)) {
			continue
		}
		if listing && p.hasHaveList(id) {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p.counts.haveQueries.Add(1)
			infos, err := p.askHave(ctx, id, c)
			if err != nil {
				p.log.Debug("have query failed", "peer", id.String(), "cid", c.String(), "err", err)
				return
			}
			for _, ai := range infos {
				select {
				case found <- ai:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	wg.Wait()
}

// askHave asks one connected peer who provides c.
func (p *P2P) askHave(ctx context.Context, id peer.ID, c cid.Cid) ([]peer.AddrInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, haveTimeout)
	defer cancel()
	s, err := p.host.NewStream(network.WithNoDial(ctx, "have"), id, HaveProtocol)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if err := writeFrame(s, c.Bytes()); err != nil {
		s.Reset()
		return nil, err
	}
	// The peer answers once it has read the request and may close its
	// side first (on QUIC its STOP_SENDING can beat our FIN, and
	// CloseWrite then fails): the answer decides, not CloseWrite.
	_ = s.CloseWrite()
	b, err := readFrame(bufio.NewReader(s), maxHaveAnswer)
	if err != nil {
		s.Reset()
		return nil, err
	}
	var infos []peer.AddrInfo
	if err := json.Unmarshal(b, &infos); err != nil {
		s.Reset()
		return nil, fmt.Errorf("have answer from %s: %w", id, err)
	}
	if len(infos) > maxHaveProviders {
		infos = infos[:maxHaveProviders]
	}
	return infos, nil
}

// handleHave answers one HaveProtocol question.
func (p *P2P) handleHave(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(haveTimeout))
	b, err := readFrame(bufio.NewReader(s), maxHaveRequest)
	if err != nil {
		s.Reset()
		return
	}
	c, err := cid.Cast(b)
	if err != nil {
		s.Reset()
		return
	}
	key := c.Hash()
	var infos []peer.AddrInfo
	p.mu.Lock()
	_, mine := p.provided[string(key)]
	p.mu.Unlock()
	self := p.host.ID()
	if mine {
		infos = append(infos, peer.AddrInfo{ID: self, Addrs: p.host.Addrs()})
	}
	ctx, cancel := context.WithTimeout(p.ctx, haveTimeout)
	defer cancel()
	if recs, err := p.dht.ProviderStore().GetProviders(ctx, key); err == nil {
		for _, ai := range recs {
			if len(infos) == maxHaveProviders {
				break
			}
			if ai.ID == self || ai.ID == s.Conn().RemotePeer() {
				continue
			}
			infos = append(infos, ai)
		}
	}
	if infos == nil {
		infos = []peer.AddrInfo{}
	}
	out, err := json.Marshal(infos)
	if err != nil || len(out) > maxHaveAnswer {
		s.Reset()
		return
	}
	if err := writeFrame(s, out); err != nil {
		s.Reset()
	}
}

func writeFrame(w io.Writer, b []byte) error {
	buf := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(b)), uint64(len(b)))
	_, err := w.Write(append(buf, b...))
	return err
}

func readFrame(r *bufio.Reader, limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("frame of %d bytes exceeds %d", n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}
