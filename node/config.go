package node

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	httporigin "github.com/storkpm/stork/transfer/origin"
	"github.com/storkpm/stork/transfer/swarm"
)

// Config configures a Daemon. Zero fields take the defaults filled in by
// withDefaults.
type Config struct {
	// DataDir holds the store, the trusted metadata, the sockets and the
	// identity. Required.
	DataDir string
	// RepoURL is the repository (origin) base URL. Required.
	RepoURL string
	// Root is the initial trusted root.json, used only until DataDir holds
	// trusted metadata of its own. Required on first start.
	Root []byte
	// Parallel is how many origin requests one download keeps open
	// (default 8; more for packages of small chunks, see
	// swarm.Config.OriginParallel).
	Parallel int
	// RefreshInterval is how long fetched repository metadata is used before
	// the next request refreshes it (default 30s).
	RefreshInterval time.Duration
	// Poll is how often the daemon reads the repository and converges its
	// VMs to their groups' policies when nothing tells it of a change
	// sooner (default DefaultPoll).
	Poll time.Duration
	// StallTimeout abandons an origin response that sends nothing this long.
	StallTimeout time.Duration
	// OriginDeadline is how long a download waits for an unreachable
	// origin, with no chunk arriving from anyone, before it fails
	// (default 10m; see swarm.Config.OriginDeadline). Chunks
	// that peers hold keep coming meanwhile.
	OriginDeadline time.Duration
	// Source overrides the chunk source (tests); default: the HTTP origin.
	Source httporigin.ChunkSource
	// P2P configures the libp2p host and the /stork DHT the swarm runs
	// on; nil runs the swarm without peers (every chunk from the origin).
	// Its DataDir and Logger are filled in from this Config.
	P2P *P2PConfig
	// UploadRate and DownloadRate cap swarm traffic in bytes/s (0: none).
	UploadRate, DownloadRate int64
	// NoPullThrough turns cooperative origin fetching off (see
	// swarm.Config.NoPullThrough): each download asks the origin itself
	// for what its peers lack (chunks, and the manifests and metadata a
	// download starts with), and the host serves no pull-through
	// requests.
	NoPullThrough bool
	// MaxPeersPerDownload caps the peers one download trades with (default 32).
	MaxPeersPerDownload int
	// Site is this host's site (policy.CheckSiteName), announced to peers;
	// "": inferred from round-trip times (see swarm.Config.Site) unless
	// NoSiteInference.
	Site            string
	NoSiteInference bool
	// ScrubRate is how many bytes per second the background scrub
	// re-hashes (see repair.go): 0 takes DefaultScrubRate, a negative
	// value turns the scrub off.
	ScrubRate int64
	// ScrubFresh: the scrub does not re-hash an object verified less
	// than this long ago (as it was fetched, or by the scrub's previous
	// pass) whose file is unchanged since (share.Config.ScrubFresh): 0
	// takes DefaultScrubFresh, a negative value re-hashes every object.
	ScrubFresh time.Duration
	// StoreCheckpoint is how often the store makes the files it wrote
	// durable (share.Config.Checkpoint): 0 takes DefaultStoreCheckpoint, a
	// negative value syncs at each step of each download.
	StoreCheckpoint time.Duration
	// RepairInterval is how often packages whose objects were damaged are
	// fetched again while that fails (default 1m).
	RepairInterval time.Duration
	// API bounds what the clients of the admin and VM sockets may hold
	// (timeouts, connections); zero fields take the defaults.
	API APILimits
	// Metrics is where the daemon, its store and its swarm register their
	// metrics (see metrics.go); nil: none. One daemon per registry.
	Metrics prometheus.Registerer
	// Logger receives the daemon's logs (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	if c.DataDir == "" {
		return c, fmt.Errorf("daemon config: data directory is required")
	}
	if c.RepoURL == "" {
		return c, fmt.Errorf("daemon config: repository URL is required")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return c, fmt.Errorf("daemon config: data directory %q: %w", c.DataDir, err)
	}
	c.DataDir = abs
	if c.Parallel <= 0 {
		c.Parallel = 8
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = 30 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = DefaultPoll
	}
	if c.ScrubRate == 0 {
		c.ScrubRate = DefaultScrubRate
	}
	if c.ScrubFresh == 0 {
		c.ScrubFresh = DefaultScrubFresh
	}
	if c.StoreCheckpoint == 0 {
		c.StoreCheckpoint = DefaultStoreCheckpoint
	}
	if c.RepairInterval <= 0 {
		c.RepairInterval = time.Minute
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = 15 * time.Second
	}
	if c.OriginDeadline <= 0 {
		c.OriginDeadline = swarm.DefaultOriginDeadline
	}
	c.API = c.API.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// SocketPath is the admin API socket of a data directory.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "stork.sock") }

// VMSocketPath is the socket through which VM id talks to the daemon.
func VMSocketPath(dataDir, id string) string { return filepath.Join(dataDir, "vms", id+".sock") }
