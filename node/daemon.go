package node

import (
	"context"
	"encoding/json"
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
	"github.com/storkpm/stork/transfer"
)

// Daemon is the host daemon: one per physical host and data directory.
type Daemon struct {
	cfg    Config
	log    *slog.Logger
	store  *share.Store
	origin *transfer.Origin
	source transfer.ChunkSource
	meta   *metaClient
	vms    *vmRegistry
	p2p    *P2P            // nil without a swarm
	swarm  *transfer.Swarm // nil without a swarm
	fl     flights
	quota  vmQuotas // bytes VMs' requests in flight reserved (quota.go)
	// repairKick wakes the repairer (repair.go).
	repairKick chan struct{}
	chk        checks     // package checks in progress (repair.go)
	views      viewStates // views that could not be restored, and why
	// setuidNoted holds the manifest CIDs whose dropped setuid bits were
	// logged: once per package, not per view.
	setuidNoted sync.Map

	bytesFromOrigin atomic.Int64
	bytesFromPeers  atomic.Int64
	bytesUploaded   atomic.Int64
	// Chunks downloads without the swarm verified and failed (the swarm
	// counts its own).
	chunksVerified, chunksFailed atomic.Int64
	metrics                      *daemonMetrics

	// bg owns downloads that outlive the request that started them.
	bg     context.Context
	bgWG   sync.WaitGroup
	serveM sync.Mutex
	vmSrv  map[string]*vmServer

	// conns is the API sockets' share of the file descriptors; vmConns
	// counts the connections of every VM socket against conns.VMs.
	conns   connBudget
	vmConns *connSlots
}

// New checks cfg; Run opens the store and serves.
func New(cfg Config) (*Daemon, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	origin, err := transfer.NewOrigin(transfer.OriginConfig{URL: cfg.RepoURL, StallTimeout: cfg.StallTimeout, UserAgent: "stork-daemon"})
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger, origin: origin, source: cfg.Source, vmSrv: map[string]*vmServer{}, metrics: newDaemonMetrics()}
	if d.source == nil {
		d.source = origin
	}
	return d, nil
}

// Run opens the data directory, serves the admin socket and every VM socket,
// and returns when ctx ends, having closed everything it opened.
func (d *Daemon) Run(ctx context.Context) error {
	if err := os.MkdirAll(d.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data directory %s: %w", d.cfg.DataDir, err)
	}
	unlock, err := lockDataDir(d.cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()

	store, err := share.Open(storeConfig(d.cfg.DataDir, d.log.With("component", "share")))
	if err != nil {
		return err
	}
	d.store = store
	defer store.Close()

	if d.cfg.P2P != nil {
		stopSwarm, err := d.startSwarm(ctx)
		if err != nil {
			return err
		}
		defer stopSwarm()
	}

	var peers filePeers
	if d.p2p != nil {
		peers = d.p2p
	}
	meta, err := newMetaClient(d.cfg, newSourcesFetcher(d.origin, d.cfg.RepoURL, peers, d.serveFile, d.log.With("component", "fetcher")))
	if err != nil {
		return err
	}
	d.meta = meta
	meta.onRefresh = d.metrics.observeRefresh
	if d.vms, err = loadVMRegistry(filepath.Join(d.cfg.DataDir, "vms.json")); err != nil {
		return err
	}
	d.restoreViews()
	unregister, err := d.registerMetrics(d.cfg.Metrics)
	if err != nil {
		return err
	}
	defer unregister()

	bg, cancelBG := context.WithCancel(context.Background())
	d.bg = bg
	defer func() {
		cancelBG()
		d.bgWG.Wait()
	}()
	d.startStoreCare(bg)

	d.budgetConns()
	sock := SocketPath(d.cfg.DataDir)
	ln, err := listenUnix(sock, 0o600)
	if err != nil {
		return err
	}
	admin := newAPIServer(d.adminHandler(), d.cfg.API, d.log)
	errc := make(chan error, 1)
	go func() { errc <- admin.Serve(newLimitListener(ln, d.log, newConnSlots(d.conns.Admin))) }()

	for _, vm := range d.vms.list() {
		if err := d.startVM(vm); err != nil {
			d.log.Warn("vm socket not started", "vm", vm.ID, "err", err)
		}
	}
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

// budgetConns raises RLIMIT_NOFILE to its hard limit and divides it
// between the store and the swarm, the admin socket and the VM sockets
// (newConnBudget), once per Run.
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

// startSwarm starts the libp2p host and the swarm on it, announces every
// complete package in the store, and returns the function that stops both.
func (d *Daemon) startSwarm(ctx context.Context) (func(), error) {
	pc := *d.cfg.P2P
	pc.DataDir = d.cfg.DataDir
	pc.Logger = d.log.With("component", "p2p")
	pc.lookupObserver = d.metrics.observeLookup
	p2p, err := NewP2P(ctx, pc)
	if err != nil {
		return nil, err
	}
	sw, err := transfer.NewSwarm(transfer.SwarmConfig{
		Self:                p2p.ID(),
		Network:             p2p,
		Discovery:           p2p,
		Store:               swarmStore{d.store},
		Origin:              d.source,
		Logger:              d.log.With("component", "swarm"),
		UploadRate:          d.cfg.UploadRate,
		DownloadRate:        d.cfg.DownloadRate,
		MaxPeersPerDownload: d.cfg.MaxPeersPerDownload,
		OriginDeadline:      d.cfg.OriginDeadline,
	})
	if err != nil {
		p2p.Close()
		return nil, err
	}
	p2p.SetStreamHandler(sw.HandleStream)
	p2p.SetFileServer(d.serveFile)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := sw.Run(runCtx); err != nil {
			d.log.Warn("swarm stopped", "err", err)
		}
	}()
	d.p2p, d.swarm = p2p, sw
	pkgs, err := d.store.Packages()
	if err != nil {
		cancel()
		<-done
		p2p.Close()
		return nil, err
	}
	for _, p := range pkgs {
		if p.State == share.StateComplete {
			sw.Announce(p.ManifestCID)
		}
	}
	return func() {
		p2p.SetStreamHandler(nil)
		p2p.SetFileServer(nil)
		cancel()
		<-done
		p2p.Close()
	}, nil
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

// metaClient serialises use of the TUF client and refreshes it at most once
// per RefreshInterval, and at once when a package is not found (it may have
// been published since), at most once per minForcedRefresh.
type metaClient struct {
	mu        sync.Mutex
	c         *metadata.Client
	dir       string // where the trusted metadata is kept
	interval  time.Duration
	now       func() time.Time
	refreshed time.Time
	version   int64 // the trusted timestamp's version after the last refresh
	// onRefresh, if set, is told of every successful refresh (metrics).
	onRefresh func(at time.Time, version int64)
}

// minForcedRefresh bounds how often requests for unknown packages make
// the daemon refresh its metadata ahead of RefreshInterval.
const minForcedRefresh = time.Second

func newMetaClient(cfg Config, f metadata.Fetcher) (*metaClient, error) {
	dir := filepath.Join(cfg.DataDir, "tuf")
	c, err := metadata.NewClient(metadata.ClientConfig{
		Dir: dir, Root: cfg.Root, Fetcher: f, Now: cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	return &metaClient{c: c, dir: dir, interval: cfg.RefreshInterval, now: cfg.Now}, nil
}

// refreshLocked refreshes when the metadata is older than the interval
// (or than minForcedRefresh when force), and says whether it did.
func (m *metaClient) refreshLocked(ctx context.Context, force bool) (bool, error) {
	limit := m.interval
	if force {
		limit = min(limit, minForcedRefresh)
	}
	if !m.refreshed.IsZero() && m.now().Sub(m.refreshed) < limit {
		return false, nil
	}
	if err := m.c.Refresh(ctx); err != nil {
		return false, fmt.Errorf("update repository metadata: %w", err)
	}
	m.refreshed = m.now()
	m.version = trustedTimestampVersion(m.dir)
	if m.onRefresh != nil {
		m.onRefresh(m.refreshed, m.version)
	}
	return true, nil
}

// closure resolves ref and its dependencies from fresh signed metadata. A
// package not found is looked for again in metadata refreshed at once; if
// it is still missing, the error says how old the metadata is.
func (m *metaClient) closure(ctx context.Context, ref string) ([]*metadata.Resolved, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fresh, err := m.refreshLocked(ctx, false)
	if err != nil {
		return nil, err
	}
	pkgs, err := m.c.ResolveClosure(ctx, ref)
	if errors.Is(err, metadata.ErrNotFound) && !fresh {
		if ok, rerr := m.refreshLocked(ctx, true); rerr != nil {
			return nil, fmt.Errorf("%w; looking again: %w", err, rerr)
		} else if ok {
			pkgs, err = m.c.ResolveClosure(ctx, ref)
		}
	}
	if errors.Is(err, metadata.ErrNotFound) {
		return nil, fmt.Errorf("%w (repository metadata version %d, refreshed %s ago)", err, m.version, m.now().Sub(m.refreshed).Round(time.Millisecond))
	}
	return pkgs, err
}

// state returns when the metadata was last refreshed and its timestamp's
// version (zero before the first refresh).
func (m *metaClient) state() (time.Time, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refreshed, m.version
}

// trustedTimestampVersion reads the version of the trusted timestamp kept
// in dir (0 if it cannot be read): the repository metadata version a host
// has applied.
func trustedTimestampVersion(dir string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, "timestamp.json"))
	if err != nil {
		return 0
	}
	var ts struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	if json.Unmarshal(b, &ts) != nil {
		return 0
	}
	return ts.Signed.Version
}

// packages lists what signed metadata publishes.
func (m *metaClient) packages(ctx context.Context) ([]metadata.PackageInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.refreshLocked(ctx, false); err != nil {
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
