package simulations

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/storkpm/stork/transfer/policy"
)

// Scenario describes one experiment: the hosts and their links, the
// package, when hosts want it, and how the swarm policy is tuned. It is
// read from JSON (see ParseScenario); zero fields take the defaults of
// DefaultScenario. Sizes accept "1GiB", "512K" or a byte count; rates
// "1Gbps", "100Mbps", "125MB/s" or bytes/s; durations Go's "20ms", "1.5s".
type Scenario struct {
	Name string `json:"name,omitempty"`
	// Comment says where the scenario's figures come from; the
	// simulator does not read it.
	Comment []string `json:"comment,omitempty"`
	// Hosts is the number of physical hosts, each running one daemon.
	Hosts int `json:"hosts,omitempty"`
	// VMsPerHost: VMs on each host that want the package.
	VMsPerHost int `json:"vms_per_host,omitempty"`
	// Sites: hosts are spread round-robin over this many sites.
	Sites int `json:"sites,omitempty"`
	// PackageSize and ChunkSize: the package has ceil(PackageSize /
	// ChunkSize) unique chunks, the last one shorter.
	PackageSize Size `json:"package_size,omitempty"`
	ChunkSize   Size `json:"chunk_size,omitempty"`
	// HostUpload and HostDownload: each host draws its NIC capacities from
	// these distributions.
	HostUpload   Dist `json:"host_upload,omitempty"`
	HostDownload Dist `json:"host_download,omitempty"`
	// SiteUplink and SiteDownlink: each site's link to the rest of the
	// world, shared by every flow leaving (entering) the site; 0 is
	// unlimited. Origin flows enter the receiver's site downlink.
	SiteUplink   Rate `json:"site_uplink,omitempty"`
	SiteDownlink Rate `json:"site_downlink,omitempty"`
	// OriginUpload is the repository's upload capacity.
	OriginUpload Rate `json:"origin_upload,omitempty"`
	// PullUpload (swarm-coop, swarm-sites): a host's capacity for the chunks it sends
	// as a fetcher's answers to pull-through requests, apart from
	// HostUpload. 0: they share HostUpload with the swarm's uploads, as
	// the daemon's do: its --upload-rate paces a pull-through answer's
	// pieces like a session's, with fair turns between the peers
	// (transfer/swarm sendPulled, waitUpload), so a scenario of capped
	// daemons leaves this unset. Set, it models a host whose pull-through
	// answers leave by a link of their own.
	PullUpload Rate `json:"pull_upload,omitempty"`
	// UploadPiece: a host's upload (and its pull-through server) sends
	// one piece of this size at a time, the turns going to the peers
	// waiting in start-time fair order by bytes, as the daemon's upload
	// limiter does (transfer/swarm waitUpload, fairShare: 64 KiB
	// pieces): a host's one-piece answers end a turn apart (piece.go).
	// 0: fluid sharing, every flow at once, shared per peer.
	UploadPiece Size `json:"upload_piece,omitempty"`
	// Fetchers (swarm-coop, one package, flash arrival): the host that
	// ranks first for each chunk, in chunk order, in place of the
	// ranking of the simulated hosts' names (h0, h1, ...), which is the
	// same whatever the seed: `make validate-crowd` gives the daemons'
	// own draw (policy.Fetchers over their peer IDs and the chunks'
	// CIDs), so that one real run compares with the simulator on the
	// same fetchers. Empty: the simulator ranks.
	Fetchers []int `json:"fetchers,omitempty"`
	// Latency: one-way delays.
	Latency Latency `json:"latency,omitzero"`
	// Arrival: when hosts want the package.
	Arrival Arrival `json:"arrival,omitzero"`
	// NewVersion: hosts already hold an older version sharing chunks.
	NewVersion NewVersion `json:"new_version,omitzero"`
	// Packages: a workload of many packages instead of PackageSize.
	Packages Packages `json:"packages,omitzero"`
	// Churn: hosts leaving (and coming back) mid-transfer.
	Churn Churn `json:"churn,omitzero"`
	// Policy tunes the swarm (policy.PickerConfig and the daemon's
	// session rules).
	Policy Policy `json:"policy,omitzero"`
	// CPU: the cores of one machine that runs every host, and what moving
	// bytes and starting packages costs on them (cpu.go). Absent: each
	// host has CPU enough.
	CPU CPU `json:"cpu,omitzero"`
	// Metadata: the repository's metadata and manifest bytes each host
	// fetches besides chunks, counted in Result.MetadataBytes
	// (metadata.go). Absent: none.
	Metadata Metadata `json:"metadata,omitzero"`
	// HeadOfLine: a host's control messages to a peer (requests, cancels,
	// HaveUpdates, Fetching) wait for the end of the chunk it is sending
	// that peer, as on the daemon's one stream per session (see
	// headofline.go); off, they take one latency and no bandwidth.
	HeadOfLine bool `json:"head_of_line,omitempty"`
	// WriteAhead: a peer's upload is not paced (daemons without an upload
	// cap), so a chunk being sent is written ahead into the sender's
	// socket buffer, and a Cancel that reaches the sender does not stop
	// it: it crosses the links whole and the receiver discards it
	// (writeahead.go). Off, a Cancel stops it where it is.
	WriteAhead bool `json:"write_ahead,omitempty"`
	// Seed makes the run deterministic.
	Seed uint64 `json:"seed,omitempty"`
	// SampleInterval: the origin-bytes time series is sampled this often.
	// Default: about 500 samples over the expected run.
	SampleInterval Duration `json:"sample_interval,omitempty"`
}

// Latency holds one-way delays.
type Latency struct {
	// Site: between hosts of one site. Default 0.1ms.
	Site Duration `json:"site,omitempty"`
	// WAN: between hosts of different sites. Default 10ms.
	WAN Duration `json:"wan,omitempty"`
	// Origin: between the origin and any host. Default 20ms.
	Origin Duration `json:"origin,omitempty"`
}

// Arrival patterns.
const (
	ArrivalFlash     = "flash"     // every host at time 0
	ArrivalStaggered = "staggered" // uniformly at random over Over
)

// Arrival says when hosts start wanting the package.
type Arrival struct {
	// Pattern is "flash" (default) or "staggered".
	Pattern string `json:"pattern,omitempty"`
	// Over: the staggered arrival window.
	Over Duration `json:"over,omitempty"`
}

// NewVersion models an upgrade: every host holds version 1, and the
// fraction Reuse of version 2's chunks (the same ones on every host) are
// identical to chunks of version 1. Zero Reuse: a fresh install.
type NewVersion struct {
	Reuse float64 `json:"reuse,omitempty"`
}

// Packages is a workload of Count packages whose sizes are drawn from
// the size table Sizes (a SizeDist file; a relative path is relative to
// the working directory). Every host fetches every package in the same
// order, Parallel at a time (0: all at once; the daemon downloads 16
// packages of a closure at once, node.MaxDownloads), in one run sharing
// the links: its first package at its
// arrival, package k Overhead after it started package k-1 (or after a
// download ended, when Parallel were running), Overhead standing for the
// daemon's start-up of each package's download (with CPU.PerPackage,
// the start-up is CPU work instead, Overhead a pause before it). Count 0:
// one package of PackageSize. See workload.go.
type Packages struct {
	Count    int      `json:"count,omitempty"`
	Sizes    string   `json:"sizes,omitempty"`
	Overhead Duration `json:"overhead,omitempty"`
	Parallel int      `json:"parallel,omitempty"`
	// MaxSize: a size drawn above it is cut to it (0: none), as the
	// daemon benchmarks cap theirs (STORK_UPGRADE_MAX).
	MaxSize Size `json:"max_size,omitempty"`
	// Seed draws the sizes (0: the scenario's Seed), so that runs of
	// several seeds can fetch the same packages.
	Seed uint64 `json:"seed,omitempty"`
}

// Churn: the fraction Fraction of hosts leaves at a uniformly random time
// in [From, To] (dropping their transfers; their store survives) and comes
// back RejoinAfter later (0: never).
type Churn struct {
	Fraction    float64  `json:"fraction,omitempty"`
	From        Duration `json:"from,omitempty"`
	To          Duration `json:"to,omitempty"`
	RejoinAfter Duration `json:"rejoin_after,omitempty"`
}

// Policy tunes the swarm. Zero fields take the policy's defaults unless
// noted.
type Policy struct {
	// MaxPeers: peers a download trades with (the daemon's
	// MaxPeersPerDownload). Default 32.
	MaxPeers int `json:"max_peers,omitempty"`
	// OriginParallel, RequestTimeout, MaxInflightPerPeer,
	// MaxInflightBytes, EndgameThreshold: policy.PickerConfig.
	OriginParallel     int      `json:"origin_parallel,omitempty"`
	RequestTimeout     Duration `json:"request_timeout,omitempty"`
	MaxInflightPerPeer int      `json:"max_inflight_per_peer,omitempty"`
	MaxInflightBytes   Size     `json:"max_inflight_bytes,omitempty"`
	EndgameThreshold   int      `json:"endgame_threshold,omitempty"`
	// OriginSwarmWindow and OriginFallbackDelay: policy.PickerConfig's
	// member-aware origin policy.
	OriginSwarmWindow   int      `json:"origin_swarm_window,omitempty"`
	OriginFallbackDelay Duration `json:"origin_fallback_delay,omitempty"`
	// MaxStrikes: a peer with this many consecutive timeouts or failures
	// is dropped. Default 3.
	MaxStrikes int `json:"max_strikes,omitempty"`
	// Tick: how often a downloading host checks timeouts and asks
	// NextForOrigin again, besides after every chunk, HaveUpdate and new
	// peer (a full pass over its peers runs at most once a second unless
	// a request timed out). The daemon ticks every 20ms; default 250ms (events
	// call NextForOrigin far more often than that while a host downloads).
	Tick Duration `json:"tick,omitempty"`
	// FindInterval: how often a host with fewer than MaxPeers peers looks
	// for more. Default 5s.
	FindInterval Duration `json:"find_interval,omitempty"`
	// DiscoveryDelay: from arrival to knowing the first peers (DHT
	// lookup). Default 0.
	DiscoveryDelay Duration `json:"discovery_delay,omitempty"`
	// ProviderDelay: from a host's arrival to its provider record being
	// found by other hosts' lookups (the daemon's per-package overhead
	// plus publishing the record on the DHT), a configured duration. A
	// host's discovery (every FindInterval while it has fewer than
	// MaxPeers peers) sees as members and candidate peers only the
	// present hosts whose record is out; a host seeing none fetches from
	// the origin alone. Default 0: every present host is seen at once.
	// With swarm-coop and swarm-sites the fetcher ranking still uses
	// every present host: they are the hosts of the overlay a daemon is
	// connected to.
	ProviderDelay Duration `json:"provider_delay,omitempty"`
	// CrossSitePeers: in swarm-locality and swarm-sites, at most this
	// many peers are in other sites. Default MaxPeers/8, at least 2.
	CrossSitePeers int `json:"cross_site_peers,omitempty"`
}

// DefaultScenario returns the reference scenario: a flash crowd of hosts
// with 4 VMs each over 10 sites, a 1 GiB package in 1 MiB chunks, mixed
// 1 and 10 Gbit/s hosts, a 1 Gbit/s origin.
func DefaultScenario() Scenario {
	return Scenario{
		Name:         "default",
		Hosts:        100,
		VMsPerHost:   4,
		Sites:        10,
		PackageSize:  1 << 30,
		ChunkSize:    1 << 20,
		HostUpload:   Dist{{Rate: 125e6, Weight: 0.6}, {Rate: 1.25e9, Weight: 0.3}, {Rate: 12.5e6, Weight: 0.1}},
		HostDownload: Dist{{Rate: 1.25e9, Weight: 1}},
		SiteUplink:   12.5e9,
		SiteDownlink: 12.5e9,
		OriginUpload: 125e6,
		Seed:         1,
	}
}

// withDefaults fills zero fields.
func (s Scenario) withDefaults() Scenario {
	d := DefaultScenario()
	if s.Name == "" {
		s.Name = "scenario"
	}
	if s.Hosts == 0 {
		s.Hosts = d.Hosts
	}
	if s.VMsPerHost == 0 {
		s.VMsPerHost = 1
	}
	if s.Sites == 0 {
		s.Sites = 1
	}
	if s.PackageSize == 0 {
		s.PackageSize = d.PackageSize
	}
	if s.ChunkSize == 0 {
		s.ChunkSize = d.ChunkSize
	}
	if len(s.HostUpload) == 0 {
		s.HostUpload = d.HostUpload
	}
	if len(s.HostDownload) == 0 {
		s.HostDownload = d.HostDownload
	}
	if s.OriginUpload == 0 {
		s.OriginUpload = d.OriginUpload
	}
	if s.Latency.Site == 0 {
		s.Latency.Site = Duration(100 * time.Microsecond)
	}
	if s.Latency.WAN == 0 {
		s.Latency.WAN = Duration(10 * time.Millisecond)
	}
	if s.Latency.Origin == 0 {
		s.Latency.Origin = Duration(20 * time.Millisecond)
	}
	if s.Arrival.Pattern == "" {
		s.Arrival.Pattern = ArrivalFlash
	}
	p := &s.Policy
	if p.MaxPeers == 0 {
		p.MaxPeers = 32
	}
	if p.MaxStrikes == 0 {
		p.MaxStrikes = 3
	}
	if p.Tick == 0 {
		p.Tick = Duration(250 * time.Millisecond)
	}
	if p.FindInterval == 0 {
		p.FindInterval = Duration(5 * time.Second)
	}
	if p.CrossSitePeers == 0 {
		p.CrossSitePeers = policy.DefaultCrossSitePeers(p.MaxPeers)
	}
	return s
}

// Validate reports the first thing wrong with s (after defaults).
func (s Scenario) Validate() error {
	s = s.withDefaults()
	switch {
	case s.Hosts < 1:
		return fmt.Errorf("scenario %s: hosts %d: want at least 1", s.Name, s.Hosts)
	case s.VMsPerHost < 1:
		return fmt.Errorf("scenario %s: vms_per_host %d: want at least 1", s.Name, s.VMsPerHost)
	case s.Sites < 1:
		return fmt.Errorf("scenario %s: sites %d: want at least 1", s.Name, s.Sites)
	case s.PackageSize <= 0 || s.ChunkSize <= 0:
		return fmt.Errorf("scenario %s: package_size and chunk_size must be positive", s.Name)
	case int64(s.PackageSize)/int64(s.ChunkSize) > 1<<24:
		return fmt.Errorf("scenario %s: %d chunks: at most 16M", s.Name, int64(s.PackageSize)/int64(s.ChunkSize))
	case s.OriginUpload <= 0:
		return fmt.Errorf("scenario %s: origin_upload must be positive", s.Name)
	case s.PullUpload < 0:
		return fmt.Errorf("scenario %s: pull_upload must not be negative", s.Name)
	case s.UploadPiece < 0:
		return fmt.Errorf("scenario %s: upload_piece must not be negative", s.Name)
	case s.SiteUplink < 0 || s.SiteDownlink < 0:
		return fmt.Errorf("scenario %s: site links must not be negative", s.Name)
	case s.Arrival.Pattern != ArrivalFlash && s.Arrival.Pattern != ArrivalStaggered:
		return fmt.Errorf("scenario %s: arrival pattern %q: want %q or %q", s.Name, s.Arrival.Pattern, ArrivalFlash, ArrivalStaggered)
	case s.NewVersion.Reuse < 0 || s.NewVersion.Reuse > 1:
		return fmt.Errorf("scenario %s: new_version.reuse %v: want 0..1", s.Name, s.NewVersion.Reuse)
	case s.Churn.Fraction < 0 || s.Churn.Fraction > 1:
		return fmt.Errorf("scenario %s: churn.fraction %v: want 0..1", s.Name, s.Churn.Fraction)
	case s.Churn.To < s.Churn.From:
		return fmt.Errorf("scenario %s: churn window ends before it starts", s.Name)
	case s.Policy.DiscoveryDelay < 0 || s.Policy.ProviderDelay < 0:
		return fmt.Errorf("scenario %s: policy.discovery_delay and provider_delay must not be negative", s.Name)
	case s.Packages.Count < 0 || s.Packages.Overhead < 0 || s.Packages.Parallel < 0 || s.Packages.MaxSize < 0:
		return fmt.Errorf("scenario %s: packages.count, overhead, parallel and max_size must not be negative", s.Name)
	case s.Packages.Count > 0 && s.Packages.Sizes == "":
		return fmt.Errorf("scenario %s: packages.count %d without packages.sizes", s.Name, s.Packages.Count)
	case s.Packages.Count > 0 && s.Churn.Fraction > 0:
		return fmt.Errorf("scenario %s: packages: churn is not simulated with many packages", s.Name)
	case s.Policy.MaxPeers < 1:
		return fmt.Errorf("scenario %s: policy.max_peers %d: want at least 1", s.Name, s.Policy.MaxPeers)
	case len(s.Fetchers) > 0 && (len(s.Fetchers) != s.NumChunks() || s.Packages.Count > 0 || s.Arrival.Pattern != ArrivalFlash):
		return fmt.Errorf("scenario %s: fetchers: want one host per chunk (%d), one package, flash arrival", s.Name, s.NumChunks())
	}
	for _, f := range s.Fetchers {
		if f < 0 || f >= s.Hosts {
			return fmt.Errorf("scenario %s: fetchers: host %d of %d", s.Name, f, s.Hosts)
		}
	}
	if err := s.CPU.validate(); err != nil {
		return fmt.Errorf("scenario %s: %w", s.Name, err)
	}
	if err := s.Metadata.validate(); err != nil {
		return fmt.Errorf("scenario %s: %w", s.Name, err)
	}
	for _, d := range []struct {
		name string
		d    Dist
	}{{"host_upload", s.HostUpload}, {"host_download", s.HostDownload}} {
		if err := d.d.validate(); err != nil {
			return fmt.Errorf("scenario %s: %s: %w", s.Name, d.name, err)
		}
	}
	return nil
}

// NumChunks returns the package's chunk count.
func (s Scenario) NumChunks() int {
	s = s.withDefaults()
	return int((int64(s.PackageSize) + int64(s.ChunkSize) - 1) / int64(s.ChunkSize))
}

// LoadScenario reads a JSON scenario file.
func LoadScenario(path string) (Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Scenario{}, fmt.Errorf("read scenario: %w", err)
	}
	s, err := ParseScenario(data)
	if err != nil {
		return Scenario{}, fmt.Errorf("scenario %s: %w", path, err)
	}
	return s, nil
}

// ParseScenario decodes a JSON scenario; unknown fields are errors.
func ParseScenario(data []byte) (Scenario, error) {
	var s Scenario
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Scenario{}, err
	}
	return s, s.Validate()
}

// Size is a byte count; JSON "1GiB", "512K", "1M" or a number.
type Size int64

// UnmarshalJSON accepts a number or a string with a K, M, G, T suffix
// (binary multiples; "B", "iB" optional).
func (z *Size) UnmarshalJSON(b []byte) error {
	var n float64
	if err := json.Unmarshal(b, &n); err == nil {
		*z = Size(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("size: want a number or a string like \"1GiB\"")
	}
	v, err := ParseSize(s)
	*z = v
	return err
}

// ParseSize parses "1GiB", "512K", "1048576".
func ParseSize(s string) (Size, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := 1.0
	for _, u := range []struct {
		suf string
		m   float64
	}{{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}} {
		if x, ok := strings.CutSuffix(t, u.suf); ok {
			t, mult = x, u.m
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || !(v >= 0) || math.IsInf(v*mult, 0) {
		return 0, fmt.Errorf("size %q: want e.g. 1GiB, 512K, 1048576", s)
	}
	return Size(v * mult), nil
}

// Rate is bytes per second; JSON "1Gbps", "100Mbps", "125MB/s" or a
// number of bytes/s.
type Rate float64

// UnmarshalJSON accepts a number (bytes/s) or a string.
func (r *Rate) UnmarshalJSON(b []byte) error {
	var n float64
	if err := json.Unmarshal(b, &n); err == nil {
		*r = Rate(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("rate: want a number or a string like \"1Gbps\"")
	}
	v, err := ParseRate(s)
	*r = v
	return err
}

// MarshalJSON writes bytes/s.
func (r Rate) MarshalJSON() ([]byte, error) { return json.Marshal(float64(r)) }

// ParseRate parses "10Gbps", "100Mbit/s", "125MB/s", "1e9" (bytes/s).
// Decimal multiples: k=1e3, M=1e6, G=1e9; "bps"/"bit/s" divide by 8.
func ParseRate(s string) (Rate, error) {
	t := strings.TrimSpace(s)
	bad := fmt.Errorf("rate %q: want e.g. 10Gbps, 100Mbps, 125MB/s or bytes/s", s)
	div := 1.0
	low := strings.ToLower(t)
	switch {
	case strings.HasSuffix(low, "bps"):
		t, div = t[:len(t)-3], 8
	case strings.HasSuffix(low, "bit/s"):
		t, div = t[:len(t)-5], 8
	case strings.HasSuffix(t, "B/s"):
		t = t[:len(t)-3]
	}
	mult := 1.0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult, t = 1e3, t[:n-1]
		case 'M':
			mult, t = 1e6, t[:n-1]
		case 'G':
			mult, t = 1e9, t[:n-1]
		case 'T':
			mult, t = 1e12, t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || !(v >= 0) || math.IsInf(v*mult, 0) {
		return 0, bad
	}
	return Rate(v * mult / div), nil
}

// String formats r in bit/s.
func (r Rate) String() string {
	b := float64(r) * 8
	switch {
	case b >= 1e9:
		return strconv.FormatFloat(b/1e9, 'g', 4, 64) + "Gbps"
	case b >= 1e6:
		return strconv.FormatFloat(b/1e6, 'g', 4, 64) + "Mbps"
	}
	return strconv.FormatFloat(b/1e3, 'g', 4, 64) + "kbps"
}

// Duration is a time.Duration; JSON "20ms" or a number of seconds.
type Duration time.Duration

// UnmarshalJSON accepts a Go duration string or seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var n float64
	if err := json.Unmarshal(b, &n); err == nil {
		*d = Duration(n * float64(time.Second))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"20ms\" or seconds")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want e.g. 20ms, 1.5s", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Seconds returns d in seconds.
func (d Duration) Seconds() float64 { return time.Duration(d).Seconds() }

// Dist is a discrete distribution of rates: each host draws one entry with
// probability proportional to Weight. JSON: a single rate, or a list of
// {"rate": R, "weight": W}.
type Dist []DistEntry

// DistEntry is one value of a Dist.
type DistEntry struct {
	Rate   Rate    `json:"rate"`
	Weight float64 `json:"weight"`
}

// UnmarshalJSON accepts a rate or a list of entries.
func (d *Dist) UnmarshalJSON(b []byte) error {
	var r Rate
	if err := r.UnmarshalJSON(b); err == nil {
		*d = Dist{{Rate: r, Weight: 1}}
		return nil
	}
	var es []DistEntry
	if err := json.Unmarshal(b, &es); err != nil {
		return fmt.Errorf("distribution: want a rate or a list of {\"rate\", \"weight\"}: %w", err)
	}
	*d = es
	return nil
}

func (d Dist) validate() error {
	var w float64
	for _, e := range d {
		if e.Rate <= 0 || e.Weight < 0 {
			return errors.New("rates must be positive and weights not negative")
		}
		w += e.Weight
	}
	if w <= 0 {
		return errors.New("weights sum to zero")
	}
	return nil
}

// draw maps u in [0,1) to a rate.
func (d Dist) draw(u float64) float64 {
	var w float64
	for _, e := range d {
		w += e.Weight
	}
	x := u * w
	for _, e := range d {
		if x < e.Weight {
			return float64(e.Rate)
		}
		x -= e.Weight
	}
	return float64(d[len(d)-1].Rate)
}

// Mean returns the distribution's mean rate.
func (d Dist) Mean() float64 {
	var w, s float64
	for _, e := range d {
		w += e.Weight
		s += e.Weight * float64(e.Rate)
	}
	if w == 0 {
		return 0
	}
	return s / w
}
