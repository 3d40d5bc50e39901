package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/share"
	httporigin "github.com/storkpm/stork/transfer/origin"
	"github.com/storkpm/stork/transfer/swarm"
)

// Daemon is the host daemon: one per physical host and data directory.
// NewDaemon builds it whole, Run serves it, Close releases it.
type Daemon struct {
	cfg    Config
	log    *slog.Logger
	unlock func() // releases the data directory's lock
	store  *share.Store
	origin *httporigin.Client
	source httporigin.ChunkSource
	meta   *metaClient
	vms    *vmRegistry
	conv   *converger // convergence to the VMs' groups (converge.go)
	// ann announces newer timestamps to peers (pubsub.go); nil until Run
	// starts it, and without a libp2p host.
	ann atomic.Pointer[announcer]
	// metaFetcher is where the metadata client's files come from.
	metaFetcher *sourcesFetcher
	p2p         *P2P // nil without peers (Config.P2P nil)
	swarm       *swarm.Swarm
	// stopSwarm ends the swarm's Run (its re-provide loop) and closes it.
	stopSwarm func()
	fl        flights
	quota     vmQuotas // bytes VMs' requests in flight reserved (quota.go)
	// repairKick wakes the repairer (repair.go).
	repairKick chan struct{}
	chk        checks     // package checks in progress (repair.go)
	views      viewStates // views that could not be restored, and why
	// setuidNoted holds the manifest CIDs whose dropped setuid bits were
	// logged: once per package, not per view.
	setuidNoted sync.Map

	metrics    *daemonMetrics
	unregister func() // takes the metrics off Config.Metrics

	// bg owns the downloads, which outlive the request that started them
	// and end at Close (background).
	bg       context.Context
	bgCancel context.CancelFunc
	bgMu     sync.Mutex
	bgWG     sync.WaitGroup

	// serveM serialises changes to views and to the VM sockets; serving
	// says whether Run serves (VM sockets start only then).
	serveM  sync.Mutex
	serving bool
	vmSrv   map[string]*vmServer

	// conns is the API sockets' share of the file descriptors; vmConns
	// counts the connections of every VM socket against conns.VMs.
	conns   connBudget
	vmConns *connSlots

	closeOnce sync.Once
	closeErr  error
}

// NewDaemon builds the daemon of cfg.DataDir whole: it takes the data
// directory (one daemon per directory), opens the store, starts the
// libp2p host if Config.P2P asks for one and the swarm on it, and makes
// the metadata client, the VM registry and the metrics. ctx bounds the
// libp2p start only. Its peers are served (the swarm, pull-through and
// file protocols) from the moment it joins the overlay, nothing else until
// Run; Close releases it.
func NewDaemon(ctx context.Context, cfg Config) (_ *Daemon, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	origin, err := httporigin.NewClient(httporigin.Config{URL: cfg.RepoURL, StallTimeout: cfg.StallTimeout, UserAgent: "stork-daemon"})
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger, origin: origin, source: cfg.Source, vmSrv: map[string]*vmServer{},
		metrics: newDaemonMetrics(), repairKick: make(chan struct{}, 1)}
	if d.source == nil {
		d.source = origin
	}
	d.bg, d.bgCancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()
	if err := d.openDataDir(); err != nil {
		return nil, err
	}
	if err := d.startSwarm(ctx); err != nil {
		return nil, err
	}
	var peers filePeers
	if d.p2p != nil {
		peers = d.p2p
	}
	d.metaFetcher = newSourcesFetcher(d.origin, d.cfg.RepoURL, peers, d.serveFile, d.log.With("component", "fetcher"))
	if d.meta, err = newMetaClient(d.cfg, d.metaFetcher); err != nil {
		return nil, err
	}
	d.meta.onRefresh = d.metrics.observeRefresh
	if d.p2p != nil && d.swarm != nil && !d.cfg.NoPullThrough {
		// Cooperative fetching of the files a download starts with.
		d.metaFetcher.coop = d.swarm.FileFetchers
		d.p2p.SetFilePuller(d.metaFetcher.forPeer)
	}
	if d.vms, err = loadVMRegistry(filepath.Join(d.cfg.DataDir, "vms.json")); err != nil {
		return nil, err
	}
	if d.conv, err = newConverger(d.cfg.DataDir, d.cfg.Poll); err != nil {
		return nil, err
	}
	if d.unregister, err = d.registerMetrics(d.cfg.Metrics); err != nil {
		return nil, err
	}
	d.budgetConns()
	return d, nil
}

// openDataDir creates and locks the data directory and opens its store.
func (d *Daemon) openDataDir() error {
	if err := os.MkdirAll(d.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data directory %s: %w", d.cfg.DataDir, err)
	}
	unlock, err := lockDataDir(d.cfg.DataDir)
	if err != nil {
		return err
	}
	d.unlock = unlock
	scfg := storeConfig(d.cfg.DataDir, d.log.With("component", "share"))
	scfg.ScrubFresh = max(d.cfg.ScrubFresh, 0)
	scfg.Checkpoint = max(d.cfg.StoreCheckpoint, 0)
	d.store, err = share.Open(scfg)
	return err
}

// Run serves until ctx ends: it restores the VMs' views, serves the swarm
// protocol and the repository files to peers, keeps the store sound
// (repair.go), and serves the admin socket and every VM socket. It
// returns when ctx ends, having stopped what it started; downloads
// running then go on until Close. Run is called at most once.
func (d *Daemon) Run(ctx context.Context) error {
	d.restoreViews()
	if d.p2p != nil { // served since startSwarm, until Run returns
		defer func() {
			d.p2p.SetStreamHandler(nil)
			d.p2p.SetFileServer(nil)
			d.p2p.SetPullHandler(nil)
		}()
	}
	careCtx, stopCare := context.WithCancel(ctx)
	careDone := d.startStoreCare(careCtx)
	careDone.Go(func() { d.convergeLoop(careCtx) })
	if err := d.startAnnouncer(careCtx, careDone); err != nil {
		d.log.Warn("timestamp announcements off", "err", err)
	}
	defer func() {
		stopCare()
		careDone.Wait()
	}()

	sock := SocketPath(d.cfg.DataDir)
	ln, err := listenUnix(sock, 0o600)
	if err != nil {
		return err
	}
	admin := newAPIServer(d.adminHandler(), d.cfg.API, d.log)
	errc := make(chan error, 1)
	go func() { errc <- admin.Serve(newLimitListener(ln, d.log, newConnSlots(d.conns.Admin))) }()
	d.startVMs()
	d.log.Info("daemon started", "data", d.cfg.DataDir, "socket", sock, "repo", d.cfg.RepoURL, "peer", d.peerID(), "addrs", d.addrs())

	select {
	case <-ctx.Done():
	case err = <-errc:
		d.log.Error("admin server stopped", "err", err)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if admin.Shutdown(shutdown) != nil {
		_ = admin.Close()
	}
	d.stopVMs(shutdown)
	_ = os.Remove(sock)
	d.log.Info("daemon stopped")
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close ends the downloads, stops the swarm and the libp2p host, takes
// the metrics off their registry, closes the store and releases the data
// directory. It is safe to call more than once, and after a failed
// NewDaemon released what it had built.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		d.stopVMs(context.Background())
		d.bgMu.Lock()
		d.bgCancel()
		d.bgMu.Unlock()
		d.bgWG.Wait()
		if d.unregister != nil {
			d.unregister()
		}
		if d.stopSwarm != nil {
			d.stopSwarm()
		}
		d.closeP2P()
		if d.store != nil {
			d.closeErr = d.store.Close()
		}
		if d.unlock != nil {
			d.unlock()
		}
	})
	return d.closeErr
}

// background runs f on the daemon's background context, as one of the
// goroutines Close waits for; false if the daemon is closing.
func (d *Daemon) background(f func(ctx context.Context)) bool {
	d.bgMu.Lock()
	defer d.bgMu.Unlock()
	if d.bg.Err() != nil {
		return false
	}
	d.bgWG.Add(1)
	go func() {
		defer d.bgWG.Done()
		f(d.bg)
	}()
	return true
}

// budgetConns raises RLIMIT_NOFILE to its hard limit and divides it
// between the store and the swarm, the admin socket and the VM sockets
// (newConnBudget), once per daemon.
func (d *Daemon) budgetConns() {
	nofile, err := raiseNoFile()
	if err != nil {
		nofile = 1024
		d.log.Warn("cannot read RLIMIT_NOFILE: budgeting for 1024 descriptors", "err", err)
	}
	d.conns = newConnBudget(nofile, d.cfg.API)
	d.vmConns = newConnSlots(d.conns.VMs)
	d.log.Info("api connection budget", "nofile", d.conns.NoFile, "reserve", d.conns.Reserve,
		"admin", d.conns.Admin, "vms", d.conns.VMs, "per_vm", d.conns.PerVM)
}

// startSwarm starts the libp2p host when Config.P2P asks for one, and the
// swarm (on it, or without peers: the origin its only source), which
// announces every complete package in the store.
func (d *Daemon) startSwarm(ctx context.Context) error {
	if d.cfg.P2P != nil {
		pc := *d.cfg.P2P
		pc.DataDir = d.cfg.DataDir
		pc.Site = d.cfg.Site
		pc.Logger = d.log.With("component", "p2p")
		pc.lookupObserver = d.metrics.observeLookup
		p2p, err := openP2P(pc)
		if err != nil {
			return err
		}
		d.p2p = p2p
	}
	sw, err := d.newSwarm()
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := sw.Run(runCtx); err != nil {
			d.log.Warn("swarm stopped", "err", err)
		}
	}()
	d.swarm = sw
	d.stopSwarm = func() {
		cancel()
		<-done
	}
	if d.p2p != nil {
		// Every protocol is served before the first connection (see openP2P).
		d.p2p.SetStreamHandler(d.swarm.HandleStream)
		d.p2p.SetFileServer(d.serveFile)
		if !d.cfg.NoPullThrough {
			d.p2p.SetPullHandler(d.swarm.HandlePull)
		}
		d.p2p.join(ctx)
	}
	pkgs, err := d.store.Packages()
	if err != nil {
		return err
	}
	for _, p := range pkgs {
		if p.State == share.StateComplete {
			sw.Announce(p.ManifestCID)
		}
	}
	return nil
}

// The origin's client checks every chunk's CID, so the swarm does not
// hash its chunks again.
var _ swarm.CheckedSource = (*httporigin.Client)(nil)

// localPeer names this host in a swarm without peers.
const localPeer swarm.PeerID = "local"

// newSwarm makes the swarm: on the libp2p host if there is one, else
// without peers.
func (d *Daemon) newSwarm() (*swarm.Swarm, error) {
	sc := swarm.Config{
		Self:                localPeer,
		Store:               swarmStore{d.store},
		Origin:              d.source,
		Logger:              d.log.With("component", "swarm"),
		UploadRate:          d.cfg.UploadRate,
		DownloadRate:        d.cfg.DownloadRate,
		MaxPeersPerDownload: d.cfg.MaxPeersPerDownload,
		OriginParallel:      d.cfg.Parallel,
		OriginDeadline:      d.cfg.OriginDeadline,
		NoPullThrough:       d.cfg.NoPullThrough,
		Manifests:           &pullManifests{d: d},
		Site:                d.cfg.Site,
	}
	if d.p2p != nil {
		sc.Self, sc.Network, sc.Discovery = d.p2p.ID(), d.p2p, d.p2p
		if !d.cfg.NoSiteInference {
			sc.RTT = d.p2p.RTT
		}
	}
	return swarm.New(sc)
}

// closeP2P closes the libp2p host, if there is one.
func (d *Daemon) closeP2P() {
	if d.p2p != nil {
		d.p2p.Close()
	}
}

func (d *Daemon) peerID() string {
	if d.p2p == nil {
		return ""
	}
	return string(d.p2p.ID())
}

func (d *Daemon) addrs() []string {
	if d.p2p == nil {
		return []string{}
	}
	return d.p2p.Addrs()
}

// lockDataDir makes sure one daemon owns a data directory.
func lockDataDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s is in use by another daemon", dir)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// listenUnix listens on a Unix socket with the given mode, replacing a stale
// socket file left by a daemon that died.
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s: another daemon answers there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	// Create the socket with no permissions for others, then set the mode:
	// there is no window in which another user could connect.
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// serveFile is what this host serves on FilesProtocol: the TUF metadata
// it trusts (metadata.TrustedFile) and the manifests its store holds.
func (d *Daemon) serveFile(p string, maxLen int64) ([]byte, error) {
	name, ok := strings.CutPrefix(p, metadata.ManifestsDir+"/")
	if !ok {
		return metadata.TrustedFile(d.tufDir(), p, maxLen)
	}
	c, err := cid.Decode(name)
	if err != nil || c.String() != name {
		return nil, fmt.Errorf("serve %s: %w: not a manifest CID", p, metadata.ErrNotFound)
	}
	_, b, err := d.store.Manifest(c)
	if err != nil {
		return nil, fmt.Errorf("serve %s: %w", p, metadata.ErrNotFound)
	}
	if int64(len(b)) > maxLen {
		return nil, fmt.Errorf("serve %s: %w", p, metadata.ErrTooLarge)
	}
	return b, nil
}

// tufDir holds the trusted repository metadata.
func (d *Daemon) tufDir() string { return filepath.Join(d.cfg.DataDir, "tuf") }

// metaClient refreshes the TUF client at most once per RefreshInterval,
// and at once when a package is not found (it may have been published
// since), at most once per minForcedRefresh. The client serialises its
// own calls; metaClient holds no lock.
type metaClient struct {
	c        *metadata.Client
	interval time.Duration
	now      func() time.Time
	// onRefresh, if set, is told of every successful refresh (metrics).
	onRefresh func(at time.Time, version int64)
}

// minForcedRefresh bounds how often requests for unknown packages make
// the daemon refresh its metadata ahead of RefreshInterval.
const minForcedRefresh = time.Second

func newMetaClient(cfg Config, f metadata.Fetcher) (*metaClient, error) {
	c, err := metadata.NewClient(metadata.ClientConfig{
		Dir: filepath.Join(cfg.DataDir, "tuf"), Root: cfg.Root, Fetcher: f, Now: cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	return &metaClient{c: c, interval: cfg.RefreshInterval, now: cfg.Now}, nil
}

// refresh refreshes when the metadata is older than the interval (or
// than minForcedRefresh when force), and says whether it did.
func (m *metaClient) refresh(ctx context.Context, force bool) (bool, error) {
	limit := m.interval
	if force {
		limit = min(limit, minForcedRefresh)
	}
	did, err := m.c.RefreshIfOlder(ctx, limit)
	if err != nil {
		return false, fmt.Errorf("update repository metadata: %w", err)
	}
	if did && m.onRefresh != nil {
		last := m.c.LastRefresh()
		m.onRefresh(last.At, last.Version)
	}
	return did, nil
}

// resolve resolves one ref from fresh signed metadata.
func (m *metaClient) resolve(ctx context.Context, ref string) (*metadata.Resolved, error) {
	if _, err := m.refresh(ctx, false); err != nil {
		return nil, err
	}
	return m.c.Resolve(ctx, ref)
}

// closure resolves ref and its dependencies from fresh signed metadata,
// handing each member to each (if set) as soon as it is resolved (see
// metadata.Client.ResolveClosureEach; a member may be handed twice). A
// package not found is looked for again in metadata refreshed at once; if
// it is still missing, the error says how old the metadata is.
func (m *metaClient) closure(ctx context.Context, ref string, each func(*metadata.Resolved)) ([]*metadata.Resolved, error) {
	fresh, err := m.refresh(ctx, false)
	if err != nil {
		return nil, err
	}
	pkgs, err := m.c.ResolveClosureEach(ctx, ref, each)
	if errors.Is(err, metadata.ErrNotFound) && !fresh {
		if ok, rerr := m.refresh(ctx, true); rerr != nil {
			return nil, fmt.Errorf("%w; looking again: %w", err, rerr)
		} else if ok {
			pkgs, err = m.c.ResolveClosureEach(ctx, ref, each)
		}
	}
	if errors.Is(err, metadata.ErrNotFound) {
		last := m.c.LastRefresh()
		return nil, fmt.Errorf("%w (repository metadata version %d, refreshed %s ago)", err, last.Version, m.now().Sub(last.At).Round(time.Millisecond))
	}
	return pkgs, err
}

// state returns when the metadata was last refreshed and its timestamp's
// version (zero before the first refresh), without waiting for a refresh
// under way.
func (m *metaClient) state() (time.Time, int64) {
	last := m.c.LastRefresh()
	return last.At, last.Version
}

// packages lists what signed metadata publishes.
func (m *metaClient) packages(ctx context.Context) ([]metadata.PackageInfo, error) {
	if _, err := m.refresh(ctx, false); err != nil {
		return nil, err
	}
	return m.c.Packages(ctx)
}

// VerifyStore re-hashes every object and tree of a data directory's store
// while no daemon runs on it, and returns the problems found.
func VerifyStore(ctx context.Context, dataDir string) ([]string, error) {
	unlock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	store, err := share.Open(storeConfig(dataDir, nil))
	if err != nil {
		return nil, err
	}
	defer store.Close()
	return store.Verify(ctx)
}
