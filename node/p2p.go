package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/sys/unix"

	"github.com/storkpm/stork/transfer/swarm"
)

// DHTProtocolPrefix makes Stork's Kademlia DHT a private overlay: its
// protocol is /stork/kad/1.0.0, so Stork hosts never join (or pollute) the
// public IPFS DHT and a testbed forms its own network through --bootstrap.
const DHTProtocolPrefix = "/stork"

// DHT modes accepted by P2PConfig.DHTMode.
const (
	DHTModeAuto   = "auto"
	DHTModeServer = "server"
	DHTModeClient = "client"
)

// ErrPeerBlocked: the peer was dropped by ClosePeer and is refused until its
// block ends.
var ErrPeerBlocked = errors.New("peer blocked")

// P2PConfig configures the daemon's libp2p host and DHT. Zero fields take
// the defaults filled in by withDefaults, except the Enable* switches, whose
// zero value is "off": start from DefaultP2PConfig to get them on.
type P2PConfig struct {
	// DataDir holds the identity key (DataDir/identity.key, mode 0600,
	// created on first start). Required.
	DataDir string
	// Listen are the multiaddrs to listen on (default: every IPv4 interface,
	// TCP and QUIC, on ports the system picks).
	Listen []string
	// Bootstrap are multiaddrs ending in /p2p/ID of hosts already in the
	// overlay; none for the first host of a testbed.
	Bootstrap []string
	// Announce are extra multiaddrs to announce (a host that knows its
	// public address).
	Announce []string
	// ConnLow and ConnHigh are the connection manager's watermarks (default
	// 64 and 256): above ConnHigh it trims back to ConnLow.
	ConnLow, ConnHigh int
	// MaxMemory bounds what libp2p may reserve (default 1 GiB); the resource
	// manager's other limits scale with it.
	MaxMemory int64
	// EnableRelay turns on the circuit relay v2 client (AutoRelay, with
	// connected peers as relay candidates) and the relay service, which
	// only runs while AutoNAT finds this host publicly reachable.
	EnableRelay bool
	// EnableHolePunching turns on DCUtR hole punching over relayed
	// connections (it implies the relay transport).
	EnableHolePunching bool
	// EnableAutoNAT turns on the AutoNAT service for peers (v1) and AutoNAT
	// v2 reachability checks of this host's own addresses.
	EnableAutoNAT bool
	// DHTMode is "auto" (default: a DHT server unless AutoNAT finds this
	// host unreachable), "server" or "client".
	DHTMode string
	// ProvideInterval is how often every announced package is announced
	// again (default 10m).
	ProvideInterval time.Duration
	// PingInterval is how often connected peers are pinged to keep their
	// latency current (default 30s).
	PingInterval time.Duration
	// BanDuration is how long ClosePeer refuses the closed peer's
	// connections (default 10m; negative: never refuse).
	BanDuration time.Duration
	// Site is this host's site (Config.Site), told to every peer at
	// connection in identify's agent version (agentVersion), so that a
	// download's members have their sites when it starts; "" none. A
	// peer takes it as a preference only (it is not proven).
	Site string
	// Logger receives the host's logs (default: discard).
	Logger *slog.Logger
	// lookupObserver, if set, is told of every DHT provider lookup
	// (metrics): the time to its first provider, or to its end.
	lookupObserver func(d time.Duration, found bool)
	// noHaveLists (tests): the host neither sends nor accepts have-lists,
	// as a peer that does not speak HaveListProtocol.
	noHaveLists bool
	// meetAfter replaces defaultMeetAfter (tests); empty: none.
	meetAfter []time.Duration
}

// DefaultP2PConfig is the configuration of a daemon on a real network:
// every default, with relay, hole punching and AutoNAT on.
func DefaultP2PConfig(dataDir string) P2PConfig {
	return P2PConfig{DataDir: dataDir, EnableRelay: true, EnableHolePunching: true, EnableAutoNAT: true}
}

func (c P2PConfig) withDefaults() (P2PConfig, error) {
	if c.DataDir == "" {
		return c, errors.New("p2p config: data directory is required")
	}
	if len(c.Listen) == 0 {
		c.Listen = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}
	}
	if c.ConnLow <= 0 {
		c.ConnLow = 64
	}
	if c.ConnHigh <= 0 {
		c.ConnHigh = 256
	}
	if c.ConnHigh < c.ConnLow {
		return c, fmt.Errorf("p2p config: connection high watermark %d is below low watermark %d", c.ConnHigh, c.ConnLow)
	}
	if c.MaxMemory <= 0 {
		c.MaxMemory = 1 << 30
	}
	if c.DHTMode == "" {
		c.DHTMode = DHTModeAuto
	}
	if c.ProvideInterval <= 0 {
		c.ProvideInterval = 10 * time.Minute
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.BanDuration == 0 {
		c.BanDuration = 10 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func (c P2PConfig) dhtMode() (dht.ModeOpt, error) {
	switch c.DHTMode {
	case DHTModeAuto:
		// ModeAutoServer, not ModeAuto: on a private testbed (RFC 1918
		// addresses, no NAT) AutoNAT never reaches a verdict, and ModeAuto
		// would then leave every host a client: a DHT with no servers.
		return dht.ModeAutoServer, nil
	case DHTModeServer:
		return dht.ModeServer, nil
	case DHTModeClient:
		return dht.ModeClient, nil
	}
	return 0, fmt.Errorf("p2p config: DHT mode %q: want %q, %q or %q", c.DHTMode, DHTModeAuto, DHTModeServer, DHTModeClient)
}

// PeerInfo describes one connected peer.
type PeerInfo struct {
	ID string `json:"id"`
	// Addrs are the remote addresses of the open connections.
	Addrs []string `json:"addrs"`
	// Latency is the peerstore's moving average of ping round trips (zero
	// until the first ping answers).
	Latency time.Duration `json:"latency_ns"`
}

// P2P is the daemon's libp2p side: host (TCP and QUIC, Noise and TLS,
// yamux), resource and connection managers, a connection gater for banned
// peers, the Kademlia DHT of the private /stork overlay, and the small
// /stork/have protocol that makes discovery work in overlays too small for
// the DHT, and /stork/files, through which hosts serve each other the
// repository metadata and manifests they hold. It implements
// swarm.Network and swarm.Discovery.
type P2P struct {
	cfg   P2PConfig
	log   *slog.Logger
	host  host.Host
	dht   *dht.IpfsDHT
	gater *blockGater
	sub   event.Subscription
	// members caches Members (p2p_pull.go).
	members membersCache
	// lookedUp: when this host last made a DHT lookup (a provide or a
	// walk), Unix nanoseconds; 0 never (meshed).
	lookedUp atomic.Int64
	// bootstrap are the peers join connects to.
	bootstrap []peer.AddrInfo

	// ctx ends at Close; it owns every goroutine started here (counted
	// in wg).
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	// pinging holds the peers a background ping is under way to: libp2p
	// lets a peer have only two inbound ping streams from us at once.
	pinging map[peer.ID]bool
	// rtts: each peer's smallest round trip, for site inference (RTT).
	rtts rttMins
	// provided holds what this host announces, by multihash (the DHT's
	// key): re-announced every ProvideInterval and when peers join, and
	// answered on /stork/have.
	provided map[string]cid.Cid
	// haveLog lists the keys of provided in the order they were first
	// announced, for the have-list senders (p2p_havelist.go); haveLogSig
	// is closed (and replaced) when it grows. haveOut holds the peers a
	// sender runs to, true if a new sender is to follow it.
	haveLog    []string
	haveLogSig chan struct{}
	haveOut    map[peer.ID]bool
	// nbHave holds the neighbours' have-lists; nbSig is closed (and
	// replaced) when one changes.
	nbHave map[peer.ID]*neighbourList
	nbSig  chan struct{}
	// toProvide holds what Provide added and the DHT has not been told
	// yet; provideWake wakes the loop that tells it (provideLoop).
	toProvide   map[string]cid.Cid
	provideWake chan struct{}
	// counts of discovery work, for tests and metrics.
	counts discoveryCounts

	// joined wakes the re-provide loop: a DHT peer joined, or a provide
	// found no peer.
	joined chan struct{}
	// files serves FilesProtocol (p2p_files.go).
	files filesServer
	// dhtOnly skips have-lists and /stork/have in FindProviders (tests
	// of the DHT path).
	dhtOnly   bool
	closeOnce sync.Once
	closeErr  error
}

var (
	_ swarm.Network   = (*P2P)(nil)
	_ swarm.Discovery = (*P2P)(nil)
)

// NewP2P starts the host and joins the overlay (see openP2P and join).
// ctx bounds the start only; the host runs until Close.
func NewP2P(ctx context.Context, cfg P2PConfig) (*P2P, error) {
	p, err := openP2P(cfg)
	if err != nil {
		return nil, err
	}
	p.join(ctx)
	return p, nil
}

// openP2P starts the host: it loads or creates the identity and listens,
// but connects to no one: a caller that serves more protocols registers
// them before join, so that the peers' first identify of this host lists
// them (a later identify push does not always reach the peerstore before
// an older answer, and a peer missing one of our protocols never asks us
// for it).
func openP2P(cfg P2PConfig) (*P2P, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	mode, err := cfg.dhtMode()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	bootstrap, err := parseBootstrap(cfg.Bootstrap)
	if err != nil {
		return nil, err
	}
	announce, err := parseAddrs("announce", cfg.Announce)
	if err != nil {
		return nil, err
	}
	sk, err := loadOrCreateIdentity(cfg.DataDir, log)
	if err != nil {
		return nil, err
	}
	h, gater, err := newHost(cfg, sk, announce)
	if err != nil {
		return nil, err
	}

	d, err := dht.New(context.Background(), h,
		dht.ProtocolPrefix(DHTProtocolPrefix),
		dht.Mode(mode),
		dht.BootstrapPeers(bootstrap...),
	)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("start DHT: %w", err)
	}
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		d.Close()
		h.Close()
		return nil, fmt.Errorf("subscribe to peer events: %w", err)
	}

	p := &P2P{
		cfg: cfg, log: log, host: h, dht: d, gater: gater, sub: sub, bootstrap: bootstrap,
		provided:    map[string]cid.Cid{},
		pinging:     map[peer.ID]bool{},
		joined:      make(chan struct{}, 1),
		haveLogSig:  make(chan struct{}),
		haveOut:     map[peer.ID]bool{},
		nbHave:      map[peer.ID]*neighbourList{},
		nbSig:       make(chan struct{}),
		toProvide:   map[string]cid.Cid{},
		provideWake: make(chan struct{}, 1),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	changed := func(network.Network, network.Conn) { p.members.changed() }
	h.Network().Notify(&network.NotifyBundle{ConnectedF: changed, DisconnectedF: changed})
	h.SetStreamHandler(HaveProtocol, p.handleHave)
	if !cfg.noHaveLists {
		h.SetStreamHandler(HaveListProtocol, p.handleHaveList)
	}
	p.goRun(p.eventLoop)
	p.goRun(p.pingLoop)
	p.goRun(p.reprovideLoop)
	p.goRun(p.provideLoop)
	return p, nil
}

// join connects to the bootstrap peers (an unreachable bootstrap peer is
// logged, and the DHT keeps trying it while its routing table is empty)
// and bootstraps the DHT.
func (p *P2P) join(ctx context.Context) {
	p.connectBootstrap(ctx, p.bootstrap)
	if err := p.dht.Bootstrap(ctx); err != nil {
		p.log.Warn("dht bootstrap", "err", err)
	}
	if p.track() {
		go func() {
			defer p.wg.Done()
			p.meetLoop()
		}()
	}
	p.log.Info("p2p host started", "peer_id", p.host.ID().String(), "addrs", p.Addrs(), "dht_mode", p.cfg.DHTMode)
}

// newHost starts the libp2p host: TCP and QUIC, TLS then Noise, yamux,
// the resource and connection managers and the gater of banned peers.
func newHost(cfg P2PConfig, sk crypto.PrivKey, announce []ma.Multiaddr) (host.Host, *blockGater, error) {
	rm, err := newResourceManager(cfg.MaxMemory)
	if err != nil {
		return nil, nil, err
	}
	cm, err := connmgr.NewConnManager(cfg.ConnLow, cfg.ConnHigh, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		rm.Close()
		return nil, nil, fmt.Errorf("connection manager: %w", err)
	}
	gater := newBlockGater(time.Now)

	// AutoRelay asks for relay candidates before the host exists.
	var hostRef atomic.Pointer[host.Host]
	opts := []libp2p.Option{
		libp2p.Identity(sk),
		libp2p.ListenAddrStrings(cfg.Listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		// TLS 1.3 first: its AES-GCM runs on the CPU's AES instructions,
		// several times cheaper per byte than Noise's ChaCha20-Poly1305
		// (the swarm's data path is CPU-bound). Noise stays for peers that
		// only speak it.
		libp2p.Security(tls.ID, tls.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.ConnectionGater(gater),
		libp2p.Ping(true),
		libp2p.UserAgent(agentVersion(cfg.Site)),
		// Metrics belong on the registry cmd passes in, not the global one.
		libp2p.DisableMetrics(),
	}
	opts = append(opts, announceOptions(announce)...)
	opts = append(opts, natOptions(cfg, &hostRef)...)
	h, err := libp2p.New(opts...)
	if err != nil {
		// libp2p closes what it was given only once the host exists.
		cm.Close()
		rm.Close()
		return nil, nil, fmt.Errorf("start libp2p host on %v: %w", cfg.Listen, err)
	}
	hostRef.Store(&h)
	return h, gater, nil
}

// announceOptions adds the announce addresses to those the host
// advertises.
func announceOptions(announce []ma.Multiaddr) []libp2p.Option {
	if len(announce) == 0 {
		return nil
	}
	return []libp2p.Option{libp2p.AddrsFactory(func(addrs []ma.Multiaddr) []ma.Multiaddr {
		out := slices.Clone(addrs)
		for _, a := range announce {
			if !slices.ContainsFunc(out, a.Equal) {
				out = append(out, a)
			}
		}
		return out
	})}
}

// natOptions are the relay, hole punching and AutoNAT options cfg asks
// for. AutoRelay asks hostRef's host for relay candidates: the host does
// not exist yet when the options are made.
func natOptions(cfg P2PConfig, hostRef *atomic.Pointer[host.Host]) []libp2p.Option {
	var opts []libp2p.Option
	switch {
	case cfg.EnableRelay:
		opts = append(opts,
			libp2p.EnableRelay(),
			libp2p.EnableRelayService(),
			libp2p.EnableAutoRelayWithPeerSource(func(ctx context.Context, n int) <-chan peer.AddrInfo {
				return relayCandidates(ctx, hostRef.Load(), n)
			}),
		)
	case cfg.EnableHolePunching:
		opts = append(opts, libp2p.EnableRelay())
	default:
		opts = append(opts, libp2p.DisableRelay())
	}
	if cfg.EnableHolePunching {
		opts = append(opts, libp2p.EnableHolePunching())
	}
	if cfg.EnableAutoNAT {
		opts = append(opts, libp2p.EnableNATService(), libp2p.EnableAutoNATv2())
	}
	return opts
}

// goRun runs f in a goroutine owned by p.
func (p *P2P) goRun(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// track counts a goroutine that may start after NewP2P; it reports false
// once Close has begun.
func (p *P2P) track() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

// ID is this host's peer ID.
func (p *P2P) ID() swarm.PeerID { return swarm.PeerID(p.host.ID().String()) }

// Addrs are the host's addresses, each ending in /p2p/ID: what another host
// passes as a bootstrap address.
func (p *P2P) Addrs() []string {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: p.host.ID(), Addrs: p.host.Addrs()})
	if err != nil {
		return nil
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// Peers lists the connected peers, sorted by ID.
func (p *P2P) Peers() []PeerInfo {
	var out []PeerInfo
	for _, id := range p.host.Network().Peers() {
		info := PeerInfo{ID: id.String(), Latency: p.host.Peerstore().LatencyEWMA(id)}
		for _, c := range p.host.Network().ConnsToPeer(id) {
			if a := c.RemoteMultiaddr().String(); !slices.Contains(info.Addrs, a) {
				info.Addrs = append(info.Addrs, a)
			}
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b PeerInfo) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Ping measures one round trip to peer (dialling it if needed) and records
// it in the latency average Peers reports. A ping the peer refuses (it
// allows two at a time from one peer, and a background ping may be under
// way) is tried again twice.
func (p *P2P) Ping(ctx context.Context, to swarm.PeerID) (time.Duration, error) {
	id, err := peer.Decode(string(to))
	if err != nil {
		return 0, fmt.Errorf("ping %q: %w", to, err)
	}
	for attempt := 0; ; attempt++ {
		rtt, err := pingRTT(ctx, p.host, id)
		if err == nil {
			p.rtts.add(id, rtt)
		}
		var se *network.StreamError
		if err == nil || attempt == 2 || !errors.As(err, &se) || ctx.Err() != nil {
			return rtt, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("ping %s: %w", id, ctx.Err())
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		}
	}
}

// pingRTT measures one round trip to id.
func pingRTT(ctx context.Context, h host.Host, id peer.ID) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res, ok := <-ping.Ping(ctx, h, id)
	if !ok {
		return 0, fmt.Errorf("ping %s: %w", id, ctx.Err())
	}
	if res.Error != nil {
		return 0, fmt.Errorf("ping %s: %w", id, res.Error)
	}
	return res.RTT, nil
}

// SetStreamHandler serves swarm.Protocol with h, which owns the
// stream: it must Close or Reset it. A nil h stops serving the protocol.
func (p *P2P) SetStreamHandler(h func(peer swarm.PeerID, s swarm.Stream)) {
	if h == nil {
		p.host.RemoveStreamHandler(swarm.Protocol)
		return
	}
	p.host.SetStreamHandler(swarm.Protocol, func(s network.Stream) {
		h(swarm.PeerID(s.Conn().RemotePeer().String()), s)
	})
}

// OpenStream opens a swarm-protocol stream to peer, dialling it through the
// addresses the peerstore holds or, when it holds none, the DHT finds.
func (p *P2P) OpenStream(ctx context.Context, to swarm.PeerID) (swarm.Stream, error) {
	id, err := peer.Decode(string(to))
	if err != nil {
		return nil, fmt.Errorf("open stream to %q: %w", to, err)
	}
	if id == p.host.ID() {
		return nil, fmt.Errorf("open stream to %s: that is this host", id)
	}
	if p.gater.blocked(id) {
		return nil, fmt.Errorf("open stream to %s: %w", id, ErrPeerBlocked)
	}
	if p.host.Network().Connectedness(id) != network.Connected && len(p.host.Peerstore().Addrs(id)) == 0 {
		ai, err := p.dht.FindPeer(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("open stream to %s: find its addresses: %w", id, err)
		}
		p.host.Peerstore().AddAddrs(id, ai.Addrs, peerstore.TempAddrTTL)
	}
	s, err := p.host.NewStream(ctx, id, swarm.Protocol)
	if err != nil {
		return nil, fmt.Errorf("open stream to %s: %w", id, err)
	}
	return s, nil
}

// ClosePeer closes every connection to peer and refuses new ones, either
// way, for BanDuration.
func (p *P2P) ClosePeer(to swarm.PeerID) error {
	id, err := peer.Decode(string(to))
	if err != nil {
		return fmt.Errorf("close peer %q: %w", to, err)
	}
	if p.cfg.BanDuration > 0 {
		p.gater.block(id, p.cfg.BanDuration)
		p.members.changed()
	}
	if err := p.host.Network().ClosePeer(id); err != nil {
		return fmt.Errorf("close peer %s: %w", id, err)
	}
	p.log.Debug("closed peer", "peer", id.String(), "blocked_for", max(p.cfg.BanDuration, 0))
	return nil
}

// Close stops the background work, the DHT and the host. It is safe to
// call more than once.
func (p *P2P) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.cancel()
		p.wg.Wait()
		p.host.RemoveStreamHandler(HaveProtocol)
		p.host.RemoveStreamHandler(HaveListProtocol)
		p.host.RemoveStreamHandler(FilesProtocol)
		p.host.RemoveStreamHandler(FilesPullProtocol)
		p.host.RemoveStreamHandler(swarm.Protocol)
		p.host.RemoveStreamHandler(swarm.PullProtocol)
		errs := []error{p.sub.Close(), p.dht.Close(), p.host.Close()}
		p.closeErr = errors.Join(errs...)
		p.log.Info("p2p host stopped", "peer_id", p.host.ID().String())
	})
	return p.closeErr
}

// connectBootstrap dials the bootstrap peers at once, each for at most 15s.
func (p *P2P) connectBootstrap(ctx context.Context, peers []peer.AddrInfo) {
	var wg sync.WaitGroup
	for _, ai := range peers {
		if ai.ID == p.host.ID() {
			continue
		}
		p.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			if err := p.host.Connect(cctx, ai); err != nil {
				p.log.Warn("bootstrap peer unreachable", "peer", ai.ID.String(), "err", err)
				return
			}
			p.log.Debug("connected to bootstrap peer", "peer", ai.ID.String())
		}()
	}
	wg.Wait()
}

// defaultMeetAfter are the times after joining at which meetLoop looks
// for the overlay's hosts again (P2PConfig.meetAfter in tests).
var defaultMeetAfter = []time.Duration{2 * time.Second, 8 * time.Second, 30 * time.Second}

// meetLoop looks up this host's own key in the DHT a few times in its
// first half minute, which connects it to the hosts closest to it (in a
// small overlay, all of them). Hosts that join at the same moment through
// one bootstrap host miss one another: each asked it before it knew the
// others, and kad-dht's own refresh comes ten minutes later; hosts whose
// members differ rank different fetchers for a chunk.
func (p *P2P) meetLoop() {
	start := time.Now()
	after := p.cfg.meetAfter
	if after == nil {
		after = defaultMeetAfter
	}
	for _, d := range after {
		t := time.NewTimer(d - time.Since(start))
		select {
		case <-p.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if p.dht.RoutingTable().Size() == 0 {
			continue // no one to ask yet
		}
		select {
		case err := <-p.dht.RefreshRoutingTable():
			if err != nil {
				p.log.Debug("routing table refresh", "err", err)
			}
		case <-p.ctx.Done():
			return
		}
	}
}

// eventLoop reacts to newly identified peers: it pings them (so Peers has
// a latency soon) and, while the DHT is small, re-announces everything to
// a peer that joins the DHT.
func (p *P2P) eventLoop() {
	for {
		select {
		case <-p.ctx.Done():
			return
		case e, ok := <-p.sub.Out():
			if !ok {
				return
			}
			ev, ok := e.(event.EvtPeerIdentificationCompleted)
			if !ok {
				continue
			}
			p.members.changed() // its protocols and agent are known now
			// Identify completes once per connection (TCP and QUIC
			// may both connect): ping only a peer with no latency yet.
			if p.host.Peerstore().LatencyEWMA(ev.Peer) == 0 && p.track() {
				go func() {
					defer p.wg.Done()
					p.pingOnce(ev.Peer)
				}()
			}
			if slices.Contains(ev.Protocols, HaveListProtocol) {
				p.startHaveList(ev.Peer)
			}
			if slices.Contains(ev.Protocols, dhtProtocol) && p.dht.RoutingTable().Size() < dhtBucketSize {
				p.wakeReprovide()
			}
		}
	}
}

// pingLoop refreshes every connected peer's latency each PingInterval.
func (p *P2P) pingLoop() {
	t := time.NewTicker(p.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		sem := make(chan struct{}, 16)
		var wg sync.WaitGroup
		for _, id := range p.host.Network().Peers() {
			select {
			case sem <- struct{}{}:
			case <-p.ctx.Done():
			}
			if p.ctx.Err() != nil {
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				p.pingOnce(id)
			}()
		}
		wg.Wait()
	}
}

// pingOnce pings id unless a background ping to it is under way.
func (p *P2P) pingOnce(id peer.ID) {
	p.mu.Lock()
	busy := p.pinging[id]
	p.pinging[id] = true
	p.mu.Unlock()
	if busy {
		return
	}
	defer func() {
		p.mu.Lock()
		delete(p.pinging, id)
		p.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	if _, err := p.Ping(network.WithNoDial(ctx, "ping"), swarm.PeerID(id.String())); err != nil {
		p.log.Debug("ping failed", "peer", id.String(), "err", err)
	}
}

// relayCandidates offers AutoRelay up to n connected peers; it checks
// itself which of them run a relay service.
func relayCandidates(ctx context.Context, hp *host.Host, n int) <-chan peer.AddrInfo {
	out := make(chan peer.AddrInfo, n)
	defer close(out)
	if hp == nil {
		return out
	}
	h := *hp
	for _, id := range h.Network().Peers() {
		if len(out) == n || ctx.Err() != nil {
			break
		}
		out <- peer.AddrInfo{ID: id, Addrs: h.Peerstore().Addrs(id)}
	}
	return out
}

// newResourceManager scales libp2p's default limits to maxMemory bytes and
// half the process's file descriptors.
func newResourceManager(maxMemory int64) (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	// /stork/have answers one question per stream: a few at a time per
	// peer is plenty.
	limits.AddProtocolPeerLimit(HaveProtocol,
		rcmgr.BaseLimit{StreamsInbound: 8, StreamsOutbound: 8, Streams: 16, Memory: 1 << 20},
		rcmgr.BaseLimitIncrease{})
	// /stork/files carries one file per stream, metadata or a manifest;
	// each side also rate-limits and bounds its serving (p2p_files.go).
	limits.AddProtocolPeerLimit(FilesProtocol,
		rcmgr.BaseLimit{StreamsInbound: 8, StreamsOutbound: 16, Streams: 24, Memory: 16 << 20},
		rcmgr.BaseLimitIncrease{})
	// /stork/files-pull: a host resolving many packages at once asks each
	// member for the files it ranks first, a few at a time.
	limits.AddProtocolPeerLimit(FilesPullProtocol,
		rcmgr.BaseLimit{StreamsInbound: 16, StreamsOutbound: 16, Streams: 32, Memory: 16 << 20},
		rcmgr.BaseLimitIncrease{})
	fds := 4096
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && rl.Cur > 0 && rl.Cur < 1<<20 {
		fds = int(rl.Cur / 2)
	}
	// Without WithMetricsDisabled the manager feeds every stream's and
	// connection's events to a Prometheus reporter on the global registry,
	// which `stork daemon` does not serve (its /metrics is the daemon's own
	// registry): a formatted timestamp and labelled counters per event,
	// for nothing.
	limiter := rcmgr.NewFixedLimiter(limits.Scale(maxMemory, fds))
	rm, err := rcmgr.NewResourceManager(limiter, rcmgr.WithMetricsDisabled())
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	return rm, nil
}

func parseAddrs(what string, ss []string) ([]ma.Multiaddr, error) {
	var out []ma.Multiaddr
	for _, s := range ss {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("p2p config: %s address %q: %w", what, s, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// parseBootstrap turns multiaddrs with /p2p/ID into peers, merging the
// addresses of one peer.
func parseBootstrap(ss []string) ([]peer.AddrInfo, error) {
	addrs, err := parseAddrs("bootstrap", ss)
	if err != nil {
		return nil, err
	}
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil {
		return nil, fmt.Errorf("p2p config: bootstrap addresses %v (each needs /p2p/ID): %w", ss, err)
	}
	return infos, nil
}

var dhtProtocol = protocol.ID(DHTProtocolPrefix + "/kad/1.0.0")

// dhtBucketSize is kad-dht's default k: once the routing table holds this
// many peers a new peer rarely changes who is closest to a key, and the
// periodic re-provide suffices.
const dhtBucketSize = 20
