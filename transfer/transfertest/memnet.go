package transfertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
	"github.com/storkpm/stork/transfer/swarm"
)

// In-memory swarm plumbing: a Network of buffered streams with optional
// per-link latency and rate, a shared Discovery table, and a ChunkStore,
// so that multi-node swarm tests run in one process.

// ErrStreamReset is what a reset stream's reads and writes return.
var ErrStreamReset = errors.New("memnet: stream reset")

// LinkShape shapes one direction of a link: each write arrives Latency
// after it is made, and a direction carries at most Rate bytes/s (0:
// unlimited).
type LinkShape struct {
	Latency time.Duration
	Rate    int64
}

// StreamHandler receives an inbound stream (the swarm's HandleStream).
type StreamHandler func(from swarm.PeerID, st swarm.Stream)

// MemNet connects MemNodes. It is safe for concurrent use.
type MemNet struct {
	mu       sync.Mutex
	nodes    map[swarm.PeerID]*MemNode
	shape    LinkShape
	shapes   map[[2]swarm.PeerID]LinkShape
	handlers sync.WaitGroup
	opened   int
	bytes    map[[2]swarm.PeerID]*atomic.Int64 // written, by direction
}

// NewMemNet returns an empty network whose links have the default shape.
func NewMemNet(def LinkShape) *MemNet {
	return &MemNet{nodes: make(map[swarm.PeerID]*MemNode), shape: def, shapes: make(map[[2]swarm.PeerID]LinkShape), bytes: make(map[[2]swarm.PeerID]*atomic.Int64)}
}

// SetLink shapes the direction from -> to.
func (n *MemNet) SetLink(from, to swarm.PeerID, s LinkShape) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.shapes[[2]swarm.PeerID{from, to}] = s
}

func (n *MemNet) linkShape(from, to swarm.PeerID) LinkShape {
	if s, ok := n.shapes[[2]swarm.PeerID{from, to}]; ok {
		return s
	}
	return n.shape
}

// Node adds a node named id whose inbound streams go to h (set later with
// SetHandler if nil).
func (n *MemNet) Node(id swarm.PeerID, h StreamHandler) *MemNode {
	n.mu.Lock()
	defer n.mu.Unlock()
	nd := &MemNode{net: n, id: id, handler: h, streams: make(map[*memStream]swarm.PeerID)}
	n.nodes[id] = nd
	return nd
}

// Remove takes node id off the network: every stream it has is reset and
// nobody can reach it any more.
func (n *MemNet) Remove(id swarm.PeerID) {
	n.mu.Lock()
	nd := n.nodes[id]
	delete(n.nodes, id)
	n.mu.Unlock()
	if nd != nil {
		nd.mu.Lock()
		nd.removed = true
		nd.mu.Unlock()
		nd.resetAll(func(swarm.PeerID) bool { return true })
	}
}

// Wait waits for every inbound-stream handler to return.
func (n *MemNet) Wait() { n.handlers.Wait() }

// StreamsOpened returns how many streams were opened in all.
func (n *MemNet) StreamsOpened() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.opened
}

// Bytes returns the bytes written in all from -> to, on every stream
// (swarm sessions and pull-through requests alike), as a link's counter
// would count them.
func (n *MemNet) Bytes(from, to swarm.PeerID) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := n.bytes[[2]swarm.PeerID{from, to}]; c != nil {
		return c.Load()
	}
	return 0
}

// counter returns the byte counter of from -> to (n.mu held).
func (n *MemNet) counter(from, to swarm.PeerID) *atomic.Int64 {
	k := [2]swarm.PeerID{from, to}
	c := n.bytes[k]
	if c == nil {
		c = new(atomic.Int64)
		n.bytes[k] = c
	}
	return c
}

// MemNode is one node's swarm.Network.
type MemNode struct {
	net *MemNet
	id  swarm.PeerID

	mu      sync.Mutex
	handler StreamHandler
	pull    StreamHandler // PullProtocol streams; nil: not a member
	site    string
	removed bool
	streams map[*memStream]swarm.PeerID // our ends, by remote
}

var (
	_ swarm.Network     = (*MemNode)(nil)
	_ swarm.PullNetwork = (*MemNode)(nil)
)

// ID returns the node's peer ID.
func (nd *MemNode) ID() swarm.PeerID { return nd.id }

// SetHandler sets the inbound stream handler.
func (nd *MemNode) SetHandler(h StreamHandler) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	nd.handler = h
}

// SetPullHandler sets the handler of inbound pull-through streams (the
// swarm's HandlePull); a node with one is a member (Members) of every
// other node.
func (nd *MemNode) SetPullHandler(h StreamHandler) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	nd.pull = h
}

// SetSite sets the site the node's Members entry names.
func (nd *MemNode) SetSite(site string) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	nd.site = site
}

// Members implements swarm.PullNetwork: every other node on the network
// with a pull handler (a MemNet connects every node to every other).
func (nd *MemNode) Members() []policy.Member {
	nd.net.mu.Lock()
	nodes := make([]*MemNode, 0, len(nd.net.nodes))
	for id, x := range nd.net.nodes {
		if id != nd.id {
			nodes = append(nodes, x)
		}
	}
	nd.net.mu.Unlock()
	var out []policy.Member
	for _, x := range nodes {
		x.mu.Lock()
		if x.pull != nil && !x.removed {
			out = append(out, policy.Member{ID: x.id, Site: x.site})
		}
		x.mu.Unlock()
	}
	return out
}

// OpenPull implements swarm.PullNetwork: OpenStream to the remote's pull
// handler.
func (nd *MemNode) OpenPull(ctx context.Context, p swarm.PeerID) (swarm.Stream, error) {
	return nd.open(ctx, p, func(x *MemNode) StreamHandler { return x.pull })
}

// OpenStream implements swarm.Network: it runs the remote's handler in
// a new goroutine with the other end.
func (nd *MemNode) OpenStream(ctx context.Context, p swarm.PeerID) (swarm.Stream, error) {
	return nd.open(ctx, p, func(x *MemNode) StreamHandler { return x.handler })
}

// open opens a stream to p's handler that which picks.
func (nd *MemNode) open(ctx context.Context, p swarm.PeerID, which func(*MemNode) StreamHandler) (swarm.Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	nd.net.mu.Lock()
	remote := nd.net.nodes[p]
	self := nd.net.nodes[nd.id]
	out, in := nd.net.linkShape(nd.id, p), nd.net.linkShape(p, nd.id)
	outN, inN := nd.net.counter(nd.id, p), nd.net.counter(p, nd.id)
	if remote != nil && self == nd {
		nd.net.opened++
	}
	nd.net.mu.Unlock()
	if self != nd {
		return nil, fmt.Errorf("memnet: %s is not on the network", nd.id)
	}
	if remote == nil {
		return nil, fmt.Errorf("memnet: no route to %s", p)
	}
	remote.mu.Lock()
	h := which(remote)
	remote.mu.Unlock()
	if h == nil {
		return nil, fmt.Errorf("memnet: %s has no handler", p)
	}
	ab, ba := newPipe(out, outN), newPipe(in, inN)
	a := &memStream{r: ba, w: ab}
	b := &memStream{r: ab, w: ba}
	if !nd.track(a, p) || !remote.track(b, nd.id) {
		a.Reset()
		b.Reset()
		return nil, fmt.Errorf("memnet: no route to %s", p)
	}
	a.onEnd = func() { nd.untrack(a) }
	b.onEnd = func() { remote.untrack(b) }
	nd.net.handlers.Add(1)
	go func() {
		defer nd.net.handlers.Done()
		h(nd.id, b)
	}()
	return a, nil
}

func (nd *MemNode) track(s *memStream, p swarm.PeerID) bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.removed {
		return false
	}
	nd.streams[s] = p
	return true
}

func (nd *MemNode) untrack(s *memStream) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	delete(nd.streams, s)
}

func (nd *MemNode) resetAll(match func(swarm.PeerID) bool) {
	nd.mu.Lock()
	var ss []*memStream
	for s, p := range nd.streams {
		if match(p) {
			ss = append(ss, s)
		}
	}
	nd.mu.Unlock()
	for _, s := range ss {
		s.Reset()
	}
}

// ClosePeer implements swarm.Network: it resets every stream to p.
func (nd *MemNode) ClosePeer(p swarm.PeerID) error {
	nd.resetAll(func(q swarm.PeerID) bool { return q == p })
	return nil
}

// memStream is one end of a stream: it reads one pipe and writes the
// other.
type memStream struct {
	r, w  *pipe
	once  sync.Once
	onEnd func()
}

func (s *memStream) Read(p []byte) (int, error)  { return s.r.read(p) }
func (s *memStream) Write(p []byte) (int, error) { return s.w.write(p) }

// Close ends our writing (the remote reads EOF) and our reading.
func (s *memStream) Close() error {
	s.w.closeWrite()
	s.r.fail(io.ErrClosedPipe)
	s.end()
	return nil
}

// Reset aborts both directions at both ends.
func (s *memStream) Reset() error {
	s.w.fail(ErrStreamReset)
	s.r.fail(ErrStreamReset)
	s.end()
	return nil
}

func (s *memStream) end() {
	s.once.Do(func() {
		if s.onEnd != nil {
			s.onEnd()
		}
	})
}

// pipe is one direction: writes are queued as segments that become
// readable at their arrival time. A writer blocks while more than
// pipeWindow bytes are queued, and is paced to the link's rate.
type pipe struct {
	shape LinkShape
	count *atomic.Int64 // bytes written

	mu      sync.Mutex
	cond    *sync.Cond
	segs    []segment
	queued  int
	nextOut time.Time // when the link is free for the next write (rate)
	eof     bool
	err     error
	timer   *time.Timer
}

type segment struct {
	data   []byte
	arrive time.Time
}

const pipeWindow = 4 << 20

func newPipe(shape LinkShape, count *atomic.Int64) *pipe {
	p := &pipe{shape: shape, count: count}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *pipe) write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		piece := b
		if len(piece) > 64<<10 {
			piece = piece[:64<<10]
		}
		p.mu.Lock()
		for p.err == nil && !p.eof && p.queued >= pipeWindow {
			p.cond.Wait()
		}
		if p.err != nil || p.eof {
			err := p.err
			p.mu.Unlock()
			if err == nil {
				err = io.ErrClosedPipe
			}
			return written, err
		}
		now := time.Now()
		var wait time.Duration
		if p.shape.Rate > 0 {
			start := now
			if p.nextOut.After(start) {
				start = p.nextOut
			}
			p.nextOut = start.Add(time.Duration(float64(len(piece)) / float64(p.shape.Rate) * float64(time.Second)))
			wait = p.nextOut.Sub(now)
		}
		arrive := now.Add(wait + p.shape.Latency)
		p.segs = append(p.segs, segment{data: append([]byte(nil), piece...), arrive: arrive})
		p.queued += len(piece)
		p.cond.Broadcast()
		p.mu.Unlock()
		if wait > 0 {
			// The sender's link is busy for wait: pace it.
			time.Sleep(wait)
		}
		p.count.Add(int64(len(piece)))
		written += len(piece)
		b = b[len(piece):]
	}
	return written, nil
}

func (p *pipe) read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.err != nil {
			return 0, p.err
		}
		if len(p.segs) > 0 {
			s := &p.segs[0]
			if d := time.Until(s.arrive); d > 0 {
				if p.timer == nil {
					p.timer = time.AfterFunc(d, func() {
						p.mu.Lock()
						p.timer = nil
						p.cond.Broadcast()
						p.mu.Unlock()
					})
				}
				p.cond.Wait()
				continue
			}
			n := copy(b, s.data)
			s.data = s.data[n:]
			if len(s.data) == 0 {
				p.segs = p.segs[1:]
			}
			p.queued -= n
			p.cond.Broadcast()
			return n, nil
		}
		if p.eof {
			return 0, io.EOF
		}
		p.cond.Wait()
	}
}

func (p *pipe) closeWrite() {
	p.mu.Lock()
	p.eof = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *pipe) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.segs = nil
	p.queued = 0
	p.cond.Broadcast()
	p.mu.Unlock()
}

// MemDiscovery is a provider table shared by every node. It is safe for
// concurrent use.
type MemDiscovery struct {
	mu        sync.Mutex
	providers map[cid.Cid][]swarm.PeerID
	provides  int
	// Delay, if set, delays every FindProviders answer (a slow DHT).
	Delay time.Duration
}

// NewMemDiscovery returns an empty table.
func NewMemDiscovery() *MemDiscovery {
	return &MemDiscovery{providers: make(map[cid.Cid][]swarm.PeerID)}
}

// For returns node self's view: Provide records self; FindProviders
// never returns self.
func (d *MemDiscovery) For(self swarm.PeerID) swarm.Discovery {
	return memDiscoveryView{d: d, self: self}
}

// Provides returns how many Provide calls were made.
func (d *MemDiscovery) Provides() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.provides
}

// Forget removes p from every provider list.
func (d *MemDiscovery) Forget(p swarm.PeerID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c, ps := range d.providers {
		out := ps[:0]
		for _, q := range ps {
			if q != p {
				out = append(out, q)
			}
		}
		d.providers[c] = out
	}
}

type memDiscoveryView struct {
	d    *MemDiscovery
	self swarm.PeerID
}

func (v memDiscoveryView) Provide(ctx context.Context, c cid.Cid) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v.d.mu.Lock()
	defer v.d.mu.Unlock()
	v.d.provides++
	for _, p := range v.d.providers[c] {
		if p == v.self {
			return nil
		}
	}
	v.d.providers[c] = append(v.d.providers[c], v.self)
	return nil
}

func (v memDiscoveryView) FindProviders(ctx context.Context, c cid.Cid) <-chan swarm.PeerID {
	v.d.mu.Lock()
	ps := append([]swarm.PeerID(nil), v.d.providers[c]...)
	delay := v.d.Delay
	v.d.mu.Unlock()
	ch := make(chan swarm.PeerID, len(ps))
	if delay <= 0 {
		for _, p := range ps {
			if p != v.self {
				ch <- p
			}
		}
		close(ch)
		return ch
	}
	go func() {
		defer close(ch)
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range ps {
			if p != v.self {
				ch <- p
			}
		}
	}()
	return ch
}

// MemStore is an in-memory ChunkStore and ChunkSink: PutChunk verifies
// each chunk against its CID, counts any that fails (Corrupt) and keeps
// the rest. It is safe for concurrent use.
type MemStore struct {
	mu        sync.Mutex
	manifests map[cid.Cid]*metadata.Manifest
	chunks    map[cid.Cid][]byte
	puts      int
	corrupt   int
}

var (
	_ swarm.ChunkStore   = (*MemStore)(nil)
	_ metadata.ChunkSink = (*MemStore)(nil)
)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{manifests: make(map[cid.Cid]*metadata.Manifest), chunks: make(map[cid.Cid][]byte)}
}

// AddManifest records a manifest under its CID.
func (s *MemStore) AddManifest(c cid.Cid, m *metadata.Manifest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.manifests[c] = m
}

// AddChunks stores chunks as they are (no verification: a test seeding a
// store knows them good, or wants them bad).
func (s *MemStore) AddChunks(chunks map[cid.Cid][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, b := range chunks {
		s.chunks[c] = append([]byte(nil), b...)
	}
}

// Manifest implements swarm.ChunkStore.
func (s *MemStore) Manifest(c cid.Cid) (*metadata.Manifest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.manifests[c]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("memstore: manifest %s: %w", c, metadata.ErrNotFound)
}

// ReadChunk implements swarm.ChunkStore.
func (s *MemStore) ReadChunk(c cid.Cid) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.chunks[c]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("memstore: chunk %s: %w", c, metadata.ErrNotFound)
}

// HasChunk implements swarm.ChunkStore.
func (s *MemStore) HasChunk(c cid.Cid) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.chunks[c]
	return ok
}

// PutChunk implements metadata.ChunkSink: a chunk that does not match c is
// counted (Corrupt) and refused with metadata.ErrHashMismatch.
func (s *MemStore) PutChunk(c cid.Cid, data []byte) error {
	if err := metadata.VerifyCID(c, data); err != nil {
		s.mu.Lock()
		s.corrupt++
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.puts++
	if _, ok := s.chunks[c]; !ok {
		s.chunks[c] = append([]byte(nil), data...)
	}
	return nil
}

// Corrupt returns how many chunks PutChunk refused.
func (s *MemStore) Corrupt() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.corrupt
}

// Puts returns how many chunks PutChunk accepted (duplicates included).
func (s *MemStore) Puts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts
}

// Has reports whether the store holds chunk c (a DownloadRequest.Have).
func (s *MemStore) Has(c cid.Cid) bool { return s.HasChunk(c) }
