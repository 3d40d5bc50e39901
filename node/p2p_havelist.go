package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"
)

// Have-lists: each host tells every connected peer, once, which packages
// it announces (the manifest multihashes it holds or is fetching), and
// then each new one as it announces it. A host thus knows which of its
// neighbours provide a package without asking anyone: FindProviders
// answers from the have-lists, and asks the DHT and /stork/have only when
// no neighbour lists the package (p2p_discovery.go). An upgrade of
// hundreds of packages costs one stream per pair of hosts and a few bytes
// per package, not a DHT walk and a question to every neighbour per
// package.
//
// Nothing learnt here is trusted: a listed peer is only a peer to ask.

// HaveListProtocol is the libp2p protocol ID of have-lists.
//
// Wire format: the host announcing (the sender) opens one stream to each
// peer and writes frames; the receiver never writes. A frame is a uvarint
// length (at most maxHaveListFrame) and a body: a uvarint count (1 to
// maxHaveListBatch) of entries, each a uvarint length (1 to
// maxHaveListKey) and a multihash. The first frames list everything the
// sender announces, later ones what it announces since. The list lasts as
// long as the stream; a new stream from the same peer starts a new list.
// A receiver resets a stream whose frame is malformed or whose list would
// exceed maxHaveListEntries.
const HaveListProtocol = "/stork/havelist/1.0.0"

const (
	maxHaveListFrame   = 64 << 10
	maxHaveListKey     = 128
	maxHaveListBatch   = 4096
	maxHaveListEntries = 1 << 16
	// haveListWait: how long FindProviders waits for a neighbour's
	// have-list to name a package before it asks the DHT and every
	// neighbour (hosts that start an upgrade together announce its
	// packages within moments of one another).
	haveListWait = 500 * time.Millisecond
	// haveListRetry, haveListRetryMax: the pause before a have-list
	// stream to a peer still connected is opened again, doubling up to
	// the most.
	haveListRetry    = time.Second
	haveListRetryMax = 30 * time.Second
)

// errHaveList marks a malformed or oversized have-list.
var errHaveList = errors.New("bad have-list")

// neighbourList is one connected peer's have-list.
type neighbourList struct {
	s    network.Stream
	keys map[string]struct{}
}

// encodeHaveList encodes keys (multihashes) as one frame body; keys must
// be 1 to maxHaveListBatch valid multihashes.
func encodeHaveList(keys []string) []byte {
	b := binary.AppendUvarint(nil, uint64(len(keys)))
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return b
}

// decodeHaveList decodes one frame body (untrusted bytes): every entry a
// multihash of at most maxHaveListKey bytes, nothing left over.
func decodeHaveList(b []byte) ([]string, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, fmt.Errorf("%w: bad entry count", errHaveList)
	}
	// Each entry takes at least two bytes: the count cannot exceed that.
	if n == 0 || n > maxHaveListBatch || n > uint64(len(b)/2) {
		return nil, fmt.Errorf("%w: %d entries in a %d-byte frame (at most %d)", errHaveList, n, len(b), maxHaveListBatch)
	}
	b = b[k:]
	keys := make([]string, 0, n)
	for i := range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l == 0 || l > maxHaveListKey || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: entry %d: bad length", errHaveList, i)
		}
		key := b[k : k+int(l)]
		if _, err := multihash.Cast(key); err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", errHaveList, i, err)
		}
		keys = append(keys, string(key))
		b = b[k+int(l):]
	}
	if len(b) > 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last entry", errHaveList, len(b))
	}
	return keys, nil
}

// announced records manifest as announced by this host, to be told to the
// DHT, and wakes the have-list senders; false if it was already.
func (p *P2P) announced(manifest cid.Cid) bool {
	key := string(manifest.Hash())
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.provided[key]; ok {
		return false
	}
	p.provided[key] = manifest
	p.toProvide[key] = manifest
	p.haveLog = append(p.haveLog, key)
	close(p.haveLogSig)
	p.haveLogSig = make(chan struct{})
	return true
}

// startHaveList starts sending our have-list to id unless a sender to it
// runs already; then that sender is followed by a new one when it ends
// (a peer that reconnects at once is identified again while the sender
// on its old connection has not yet seen that connection close, and the
// peer forgets our list with the old stream).
func (p *P2P) startHaveList(id peer.ID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.cfg.noHaveLists {
		return
	}
	if _, running := p.haveOut[id]; running {
		p.haveOut[id] = true
		return
	}
	p.haveOut[id] = false
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		backoff := haveListRetry
		for {
			start := time.Now()
			err := p.sendHaveList(id)
			if err != nil && p.ctx.Err() == nil {
				p.log.Debug("have-list stream ended", "peer", id.String(), "err", err)
			}
			// Still connected: the stream failed to open in time on a
			// loaded host, or was reset. Without another the pair would
			// go without a have-list until the next identify, and each
			// would walk the DHT and ask the other for every package.
			connected := p.host.Network().Connectedness(id) == network.Connected
			p.mu.Lock()
			again := p.haveOut[id] && !p.closed
			retry := !again && !p.closed && p.ctx.Err() == nil && connected
			if !again && !retry {
				delete(p.haveOut, id)
				p.mu.Unlock()
				return
			}
			p.haveOut[id] = false
			p.mu.Unlock()
			if !retry {
				continue
			}
			if time.Since(start) > haveListRetryMax {
				backoff = haveListRetry // it had lasted: start afresh
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
			}
			backoff = min(2*backoff, haveListRetryMax)
		}
	}()
}

// sendHaveList opens a have-list stream to id and writes our list, then
// each new announcement, until the stream or the host closes.
func (p *P2P) sendHaveList(id peer.ID) error {
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	octx, ocancel := context.WithTimeout(ctx, haveTimeout)
	s, err := p.host.NewStream(network.WithNoDial(octx, "have-list"), id, HaveListProtocol)
	ocancel()
	if err != nil {
		return fmt.Errorf("open have-list stream to %s: %w", id, err)
	}
	defer s.Reset()
	// The receiver never writes: a read ends when the stream does (the
	// peer reset it, or the connection closed).
	go func() {
		_, _ = io.Copy(io.Discard, s)
		cancel()
	}()
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	sent := 0
	for {
		p.mu.Lock()
		keys := p.haveLog[sent:min(len(p.haveLog), maxHaveListEntries)]
		sig := p.haveLogSig
		p.mu.Unlock()
		for len(keys) > 0 {
			n := haveListBatch(keys)
			if err := writeFrame(s, encodeHaveList(keys[:n])); err != nil {
				return fmt.Errorf("write have-list to %s: %w", id, err)
			}
			keys, sent = keys[n:], sent+n
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sig:
		}
	}
}

// haveListBatch is how many of keys (at least one) fit in one frame.
func haveListBatch(keys []string) int {
	size := binary.MaxVarintLen64
	for i, k := range keys {
		size += binary.MaxVarintLen64 + len(k)
		if i == maxHaveListBatch || (i > 0 && size > maxHaveListFrame) {
			return i
		}
	}
	return len(keys)
}

// handleHaveList reads a peer's have-list until the stream ends; the list
// is forgotten then.
func (p *P2P) handleHaveList(s network.Stream) {
	id := s.Conn().RemotePeer()
	nl := &neighbourList{s: s, keys: map[string]struct{}{}}
	p.mu.Lock()
	old := p.nbHave[id]
	p.nbHave[id] = nl
	p.mu.Unlock()
	if old != nil {
		_ = old.s.Reset()
	}
	err := p.readHaveList(s, nl)
	p.mu.Lock()
	if p.nbHave[id] == nl {
		delete(p.nbHave, id)
	}
	p.mu.Unlock()
	_ = s.Reset()
	if err != nil && !errors.Is(err, io.EOF) && p.ctx.Err() == nil {
		p.log.Debug("have-list refused", "peer", id.String(), "err", err)
	}
}

// readHaveList adds the frames of s to nl until the stream ends or breaks
// a limit.
func (p *P2P) readHaveList(s network.Stream, nl *neighbourList) error {
	br := bufio.NewReader(s)
	id := s.Conn().RemotePeer()
	for {
		b, err := readFrame(br, maxHaveListFrame)
		if err != nil {
			return fmt.Errorf("have-list from %s: %w", id, err)
		}
		keys, err := decodeHaveList(b)
		if err != nil {
			return fmt.Errorf("have-list from %s: %w", id, err)
		}
		p.mu.Lock()
		for _, k := range keys {
			nl.keys[k] = struct{}{}
		}
		n := len(nl.keys)
		if n <= maxHaveListEntries {
			close(p.nbSig)
			p.nbSig = make(chan struct{})
		}
		p.mu.Unlock()
		if n > maxHaveListEntries {
			return fmt.Errorf("have-list from %s: %w: more than %d entries", id, errHaveList, maxHaveListEntries)
		}
	}
}

// listedBy returns the connected, unblocked neighbours whose have-lists
// name key, how many neighbours have a have-list, and a channel closed at
// the next change to any have-list.
func (p *P2P) listedBy(key string) (ids []peer.ID, lists int, changed <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, nl := range p.nbHave {
		lists++
		if _, ok := nl.keys[key]; ok && !p.gater.blocked(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, lists, p.nbSig
}

// hasHaveList reports whether this host receives id's have-list.
func (p *P2P) hasHaveList(id peer.ID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.nbHave[id]
	return ok
}

// neighboursListing returns the neighbours whose have-lists name key,
// waiting up to haveListWait for enoughNeighbours of them (or every
// neighbour with a have-list, when fewer).
func (p *P2P) neighboursListing(ctx context.Context, key string) []peer.ID {
	t := time.NewTimer(haveListWait)
	defer t.Stop()
	for {
		ids, lists, changed := p.listedBy(key)
		if len(ids) >= min(enoughNeighbours, lists) {
			return ids
		}
		select {
		case <-changed:
		case <-t.C:
			return ids
		case <-ctx.Done():
			return ids
		}
	}
}

// discoveryCounts counts the discovery work a host did.
type discoveryCounts struct {
	// dhtProvides: provider records PUT to the DHT (one lookup each).
	dhtProvides atomic.Int64
	// dhtLookups: DHT provider walks.
	dhtLookups atomic.Int64
	// haveQueries: /stork/have questions asked.
	haveQueries atomic.Int64
	// fromHaveLists: FindProviders answered from have-lists alone.
	fromHaveLists atomic.Int64
	// meshSkips: provider records not PUT and DHT walks not made, the
	// overlay being one neighbourhood of have-lists (meshed).
	meshSkips atomic.Int64
}
