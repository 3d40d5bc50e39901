package metadata

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Dir holds the trusted metadata (created 0700). Trusted metadata is
	// persisted here so that rollback is refused after a restart too. Empty
	// means memory only: no rollback protection across restarts.
	Dir string
	// Root is the initial trusted root.json, used only when Dir holds no
	// trusted root yet.
	Root []byte
	// Fetcher reads repository files (untrusted).
	Fetcher Fetcher
	// Limits bound manifests; zero fields take defaults.
	Limits Limits
	// Now is the clock used for expiry; nil means time.Now.
	Now func() time.Time
	// MaxMetadataSize bounds a targets or delegated role file whose length
	// the snapshot does not state (every hash bin); 0 means 64 MiB.
	MaxMetadataSize int64
}

// Client is the verifying side: it follows the TUF client workflow (go-tuf's
// updater) to obtain trusted metadata, then resolves packages and fetches
// their manifests, checking every byte against signed targets. It is safe
// for concurrent use (calls are serialised).
type Client struct {
	mu    sync.Mutex
	cfg   ClientConfig
	lim   Limits
	now   func() time.Time
	up    *updater.Updater
	ad    *tufFetcher
	tm    trustedmetadata.TrustedMetadata // the updater's; its Targets map grows as roles load
	names map[string][]*pkgEntry          // visible versions by name, filled as names are looked up
	provs map[string][]string             // provider names by provided name, filled as names are looked up

	// manifests caches verified manifests by CID: content-addressed, so an
	// entry stays right; it is still checked against the signed target's
	// hashes on every use.
	manifests map[cid.Cid]cachedManifest

	// last is the time and timestamp version of the last successful
	// refresh, read without c.mu so that a refresh waiting for the
	// network delays no one who only asks how fresh the metadata is.
	last atomic.Pointer[Refreshed]
}

// Refreshed is when a Client last refreshed its metadata and the version
// of the timestamp it then trusted.
type Refreshed struct {
	At      time.Time
	Version int64
}

type cachedManifest struct {
	data []byte
	m    *Manifest
}

// maxCachedManifests bounds the manifest cache.
const maxCachedManifests = 64

// pkgEntry is one visible signed package target.
type pkgEntry struct {
	info   PackageInfo
	ver    Version // zero if the version does not parse under its scheme
	target *tufmeta.TargetFiles
	err    error // a malformed custom field: reported when resolved
	// provides is what the target says the package provides.
	provides []Provided
}

// provision returns what e provides that satisfies r, if anything.
func (e *pkgEntry) provision(r Relation) (Provided, bool) {
	for _, p := range e.provides {
		if p.Satisfies(r) {
			return p, true
		}
	}
	return Provided{}, false
}

// Resolved is a package version with its verified manifest.
type Resolved struct {
	Name, Version string
	Scheme        Scheme
	ManifestCID   cid.Cid
	ManifestBytes []byte
	Manifest      *Manifest
	Depends       []string
	Provides      []string // names it provides besides its own (see ParseProvides)
	Length        int64    // manifest bytes, as signed
	Size          int64    // file content bytes, as signed
	Role          string
}

// NewClient checks cfg and the trusted root; it does not touch the network.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Fetcher == nil {
		return nil, errors.New("new client: no fetcher")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxMetadataSize <= 0 {
		cfg.MaxMetadataSize = 64 << 20
	}
	c := &Client{cfg: cfg, lim: cfg.Limits.withDefaults(), now: cfg.Now}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("new client: %w", err)
		}
	}
	root, err := c.trustedRoot()
	if err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	m, err := new(tufmeta.Metadata[tufmeta.RootType]).FromBytes(root)
	if err != nil {
		return nil, fmt.Errorf("new client: trusted root: %w: %v", ErrMalformed, err)
	}
	if err := m.VerifyDelegate(tufmeta.ROOT, m); err != nil {
		return nil, mapTUFError("new client: trusted root", err)
	}
	return c, nil
}

// trustedRoot returns the newest trusted root: Dir/root.json, else cfg.Root.
func (c *Client) trustedRoot() ([]byte, error) {
	if c.cfg.Dir != "" {
		b, err := os.ReadFile(filepath.Join(c.cfg.Dir, "root.json"))
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("trusted root: %w", err)
		}
	}
	if len(c.cfg.Root) == 0 {
		return nil, fmt.Errorf("trusted root: %w: none in %q and none configured", ErrNotFound, c.cfg.Dir)
	}
	return c.cfg.Root, nil
}

// Refresh runs the TUF client workflow: newer roots one by one, then
// timestamp, snapshot and targets, then the standard delegated roles
// (publishers and the bins role), all checked for signatures, versions
// (rollback), expiry (freeze), lengths and hashes (mix-and-match, endless
// data). Hash bins are loaded, with the same checks, when a name in them
// is looked up, and kept in Dir while the snapshot names their version
// (client_roles.go), so refreshing costs the same however many packages
// the repository holds. Errors wrap ErrExpired, ErrRollback, ErrSignature,
// ErrHashMismatch, ErrTooLarge, ErrNotFound or ErrMalformed. On error the
// client holds no trusted view until a Refresh succeeds.
func (c *Client) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refreshLocked(ctx)
}

// RefreshIfOlder refreshes (see Refresh) unless the last successful
// refresh is younger than maxAge, and says whether it did. Callers that
// arrive during a refresh wait for it and then find the metadata fresh.
func (c *Client) RefreshIfOlder(ctx context.Context, maxAge time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.last.Load(); l != nil && c.now().Sub(l.At) < maxAge {
		return false, nil
	}
	if err := c.refreshLocked(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// LastRefresh reports the last successful refresh (zero before the
// first). It does not wait for a refresh under way.
func (c *Client) LastRefresh() Refreshed {
	if l := c.last.Load(); l != nil {
		return *l
	}
	return Refreshed{}
}

func (c *Client) refreshLocked(ctx context.Context) error {
	return c.refreshVia(ctx, c.cfg.Fetcher, nil)
}

// refreshVia refreshes through fetcher f, which also serves the roles
// loaded later until the next refresh; a non-nil ts is the
// timestamp.json to use instead of fetching one (an announced one,
// checked by the updater as a fetched one is).
func (c *Client) refreshVia(ctx context.Context, f Fetcher, ts []byte) error {
	c.up, c.names, c.provs = nil, nil, nil
	if err := ctx.Err(); err != nil {
		return err
	}
	root, err := c.trustedRoot()
	if err != nil {
		return fmt.Errorf("refresh metadata: %w", err)
	}
	ucfg, err := config.New(remoteBase+MetadataDir, root)
	if err != nil {
		return fmt.Errorf("refresh metadata: %w", err)
	}
	ad := &tufFetcher{f: f, ctx: ctx, dir: c.cfg.Dir, ts: ts}
	ucfg.Fetcher = ad
	ucfg.RemoteTargetsURL = remoteBase + "targets"
	ucfg.TargetsMaxLength = c.cfg.MaxMetadataSize
	ucfg.SnapshotMaxLength = c.cfg.MaxMetadataSize
	if c.cfg.Dir == "" {
		ucfg.DisableLocalCache = true
	} else {
		ucfg.LocalMetadataDir = c.cfg.Dir
		ucfg.LocalTargetsDir = c.cfg.Dir
	}
	up, err := updater.New(ucfg)
	if err != nil {
		return mapTUFError("refresh metadata: trusted root", err)
	}
	ad.up = up
	up.UnsafeSetRefTime(c.now().UTC())
	if err := up.Refresh(); err != nil {
		return mapTUFError("refresh metadata", err)
	}
	c.tm, c.ad = up.GetTrustedMetadataSet(), ad
	if err := c.loadDelegations(ctx); err != nil {
		return err
	}
	c.up = up
	c.last.Store(&Refreshed{At: c.now(), Version: c.tm.Timestamp.Signed.Version})
	return nil
}

// roleFetcher is the fetcher roles are loaded through: the one of the
// last refresh.
func (c *Client) roleFetcher() Fetcher {
	if c.ad != nil {
		return c.ad.f
	}
	return c.cfg.Fetcher
}

// ensure refreshes once if the client holds no trusted view.
func (c *Client) ensure(ctx context.Context) error {
	if c.up == nil {
		return c.refreshLocked(ctx)
	}
	c.ad.ctx = ctx
	return nil
}

// Packages lists every signed package version visible to the client,
// sorted by name then version. It refreshes first if needed, and loads
// every role the snapshot lists, hash bins included (each downloaded only
// if the client does not keep its current version).
func (c *Client) Packages(ctx context.Context) ([]PackageInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	var out []PackageInfo
	err := c.retryStale(ctx, func() error {
		out = nil
		if err := c.loadAllRoles(ctx); err != nil {
			return err
		}
		names := map[string]bool{}
		for _, m := range c.tm.Targets {
			for p := range m.Signed.Targets {
				if n, _, ok := ParseTargetPath(p); ok {
					names[n] = true
				}
			}
		}
		for _, name := range sortedKeys(names) {
			es, err := c.entries(ctx, name)
			if err != nil {
				return err
			}
			for _, e := range es {
				if e.err == nil {
					out = append(out, e.info)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list packages: %w", err)
	}
	sortPackages(out)
	return out, nil
}

// Resolve finds ref (NAME, NAME@VERSION or NAME@CONSTRAINT, see
// ParseRef) in the signed metadata, fetches its manifest and verifies it
// against the signed target (length, hashes, and the manifest CID in the
// target's custom field), then decodes it within the client's limits.
// Without a version it picks the newest version the constraint allows,
// under the package's version scheme (for semver, a pre-release only if
// no release is allowed). An unknown name or version wraps ErrNotFound.
func (c *Client) Resolve(ctx context.Context, ref string) (*Resolved, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	r, err := ParseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}
	var e *pkgEntry
	if err := c.retryStale(ctx, func() (err error) {
		e, err = c.pickRef(ctx, r)
		return err
	}); err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ref, err)
	}
	return c.fetchManifest(ctx, e)
}

// fetchManifest fetches and verifies the manifest of a signed target.
func (c *Client) fetchManifest(ctx context.Context, e *pkgEntry) (*Resolved, error) {
	if r, ok := c.cachedManifest(e); ok {
		return r, nil
	}
	r, err := c.downloadManifest(ctx, e)
	if err != nil {
		return nil, err
	}
	c.cacheManifest(r)
	return r, nil
}

// cachedManifest returns e resolved from the manifest cache, if there
// (c.mu held).
func (c *Client) cachedManifest(e *pkgEntry) (*Resolved, bool) {
	if e.err != nil {
		return nil, false
	}
	hit, ok := c.manifests[e.info.ManifestCID]
	if !ok || e.target.VerifyLengthHashes(hit.data) != nil {
		return nil, false
	}
	return e.resolved(hit.data, hit.m), true
}

// cacheManifest keeps r's manifest (c.mu held).
func (c *Client) cacheManifest(r *Resolved) {
	if c.manifests == nil || len(c.manifests) >= maxCachedManifests {
		c.manifests = make(map[cid.Cid]cachedManifest)
	}
	c.manifests[r.ManifestCID] = cachedManifest{data: r.ManifestBytes, m: r.Manifest}
}

// downloadManifest fetches e's manifest and checks it against its signed
// target. It reads only e and c's immutable fields: calls may run at once.
func (c *Client) downloadManifest(ctx context.Context, e *pkgEntry) (*Resolved, error) {
	ref := e.info.Name + "@" + e.info.Version
	if e.err != nil {
		return nil, fmt.Errorf("package %s: %w", ref, e.err)
	}
	n := e.target.Length
	if n <= 0 || n > c.lim.MaxManifestSize {
		return nil, fmt.Errorf("package %s: manifest: %w: signed length %d, limit %d", ref, ErrTooLarge, n, c.lim.MaxManifestSize)
	}
	mc := e.info.ManifestCID
	data, err := c.cfg.Fetcher.Fetch(ctx, ManifestsDir+"/"+mc.String(), n)
	if err != nil {
		return nil, fmt.Errorf("package %s: manifest %s: %w", ref, mc, err)
	}
	if err := e.target.VerifyLengthHashes(data); err != nil {
		return nil, fmt.Errorf("package %s: manifest %s: %w: %v", ref, mc, ErrHashMismatch, err)
	}
	if err := VerifyCID(mc, data); err != nil {
		return nil, fmt.Errorf("package %s: manifest: %w", ref, err)
	}
	m, err := DecodeManifest(data, c.lim)
	if err != nil {
		return nil, fmt.Errorf("package %s: manifest %s: %w", ref, mc, err)
	}
	return e.resolved(data, m), nil
}

// manifestParallel bounds the manifests a closure fetches at once: a
// closure of hundreds of packages costs a few round trips, not one per
// package.
const manifestParallel = 16

// fetchManifests resolves the manifests of order, fetching those not
// cached up to manifestParallel at once (c.mu held). The first error, in
// order, wins. If each is set, it is handed every member in order as soon
// as the member's manifest and those of every member before it are in
// (see ResolveClosureEach); its calls do not overlap.
func (c *Client) fetchManifests(ctx context.Context, order []*pkgEntry, each func(*Resolved)) ([]*Resolved, error) {
	out := make([]*Resolved, len(order))
	errs := make([]error, len(order))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu   sync.Mutex // out's entries once set, and next
		next int        // the first member not yet handed to each
	)
	set := func(i int, r *Resolved) {
		mu.Lock()
		defer mu.Unlock()
		out[i] = r
		for ; each != nil && next < len(out) && out[next] != nil; next++ {
			each(out[next])
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, manifestParallel)
	for i, e := range order {
		if r, ok := c.cachedManifest(e); ok {
			set(i, r)
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
		}
		if errs[i] != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := c.downloadManifest(ctx, e)
			if err != nil {
				errs[i] = err
				cancel()
				return
			}
			set(i, r)
		}()
	}
	wg.Wait()
	// A failure cancels the fetches after it: the first failure that is
	// not such a cancellation wins, else the first (ctx ended).
	if i := slices.IndexFunc(errs, func(err error) bool { return err != nil && !errors.Is(err, context.Canceled) }); i >= 0 {
		return nil, errs[i]
	}
	if i := slices.IndexFunc(errs, func(err error) bool { return err != nil }); i >= 0 {
		return nil, errs[i]
	}
	for _, r := range out {
		c.cacheManifest(r)
	}
	return out, nil
}

// resolved is e with its verified manifest (data, decoded as m).
func (e *pkgEntry) resolved(data []byte, m *Manifest) *Resolved {
	return &Resolved{
		Name: e.info.Name, Version: e.info.Version, Scheme: e.info.Scheme, ManifestCID: e.info.ManifestCID,
		ManifestBytes: data, Manifest: m, Depends: e.info.Depends, Provides: e.info.Provides,
		Length: e.target.Length, Size: e.info.Size, Role: e.info.Role,
	}
}
