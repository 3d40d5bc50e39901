package metadata

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// ErrMissingKey: the caller does not hold the threshold of signing keys a
// role needs, or holds no key allowed to publish a name.
var ErrMissingKey = errors.New("missing signing key")

// Default metadata lifetimes.
const (
	DefaultRootExpires      = 365 * 24 * time.Hour
	DefaultTargetsExpires   = 90 * 24 * time.Hour
	DefaultSnapshotExpires  = 7 * 24 * time.Hour
	DefaultTimestampExpires = 24 * time.Hour
)

// RepoConfig configures a new repository (InitRepo).
type RepoConfig struct {
	// Signing keys per role; the CLI passes one key for all by default.
	// Every role needs at least its threshold of keys.
	RootKeys, TargetsKeys, SnapshotKeys, TimestampKeys []*PrivateKey
	// Signature thresholds; 0 means 1.
	RootThreshold, TargetsThreshold, SnapshotThreshold, TimestampThreshold int
	// Lifetimes of each role's metadata; 0 means 365d, 90d, 7d, 1d.
	RootExpires, TargetsExpires, SnapshotExpires, TimestampExpires time.Duration
	// Bins is the number of hash bins package targets are spread over, a
	// power of two from 2 to MaxBins (see bins.go); 0 means none: every
	// package target in top-level targets, re-signed whole on each add.
	Bins int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Repo is a repository directory on disk, the publisher's side:
//
//	DIR/metadata/N.root.json       every root version (consistent snapshots)
//	DIR/metadata/root.json         copy of the newest root, for convenience
//	DIR/metadata/timestamp.json    the only unversioned role file
//	DIR/metadata/N.snapshot.json
//	DIR/metadata/N.targets.json
//	DIR/metadata/N.<role>.json     delegated (publisher) roles
//	DIR/metadata/N.bins.json       with hash bins (bins.go): the bins role
//	DIR/metadata/N.bin-XYZ.json    and the bins, compact JSON
//	DIR/manifests/<CID>            canonical manifest bytes
//	DIR/chunks/<CID>               chunk bytes
//	DIR/stork-repo.json            unsigned local settings (lifetimes)
//	DIR/.lock                      held (flock) by every writing operation
//
// Every file is written atomically (temporary file and rename), in the
// order chunks, manifest, role metadata, snapshot, timestamp: a reader that
// starts from timestamp.json never finds a file it points at missing. Each
// writing operation takes the repository lock and re-reads the metadata
// from disk first, so several Repo values (or processes) take turns. Old
// versions stay until Prune removes those no client can still need.
type Repo struct {
	mu      sync.Mutex
	dir     string
	now     func() time.Time
	keys    map[string]*PrivateKey
	expires map[string]time.Duration // role -> lifetime

	root      *tufmeta.Metadata[tufmeta.RootType]
	targets   map[string]*tufmeta.Metadata[tufmeta.TargetsType] // "targets" and delegated roles
	snapshot  *tufmeta.Metadata[tufmeta.SnapshotType]
	timestamp *tufmeta.Metadata[tufmeta.TimestampType]
}

type repoSettings struct {
	Format  int               `json:"stork_repo"`
	Expires map[string]string `json:"expires"`
}

// targetCustom is the custom field of a package target. Scheme is the
// version scheme; targets published before schemes existed have none and
// are semver.
type targetCustom struct {
	Manifest string   `json:"manifest"`
	Size     int64    `json:"size"`
	Depends  []string `json:"depends,omitempty"`
	Scheme   string   `json:"scheme,omitempty"`
	// Provides lists the names the package provides besides its own
	// (see provides.go): "NAME" or "NAME=VERSION".
	Provides []string `json:"provides,omitempty"`
}

// PackageInfo describes one signed package version.
type PackageInfo struct {
	Name, Version string
	Scheme        Scheme // how Version is ordered
	ManifestCID   cid.Cid
	Size          int64 // bytes of file content in the tree
	ManifestSize  int64 // bytes of the manifest (the signed target length)
	Depends       []string
	// Provides lists the names it provides besides its own, canonical
	// (see ParseProvides).
	Provides []string
	Role     string // the targets role that signs it
}

func keyMap(keys ...[]*PrivateKey) map[string]*PrivateKey {
	m := map[string]*PrivateKey{}
	for _, ks := range keys {
		for _, k := range ks {
			if k != nil {
				m[k.ID()] = k
			}
		}
	}
	return m
}

// InitRepo creates a repository in dir (created if missing) with version 1
// of root, targets (empty), snapshot and timestamp. It refuses a directory
// that already holds repository metadata (ErrExists).
func InitRepo(dir string, cfg RepoConfig) (*Repo, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	mdDir := filepath.Join(dir, MetadataDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	unlock, err := lockRepo(context.Background(), dir)
	if err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	defer unlock()
	if ents, err := os.ReadDir(mdDir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("init repository %s: %w: %s is not empty", dir, ErrExists, mdDir)
	}
	exp := map[string]time.Duration{
		tufmeta.ROOT:      orDur(cfg.RootExpires, DefaultRootExpires),
		tufmeta.TARGETS:   orDur(cfg.TargetsExpires, DefaultTargetsExpires),
		tufmeta.SNAPSHOT:  orDur(cfg.SnapshotExpires, DefaultSnapshotExpires),
		tufmeta.TIMESTAMP: orDur(cfg.TimestampExpires, DefaultTimestampExpires),
	}
	now := cfg.Now()
	root := tufmeta.Root(expiry(now, exp[tufmeta.ROOT]))
	roleKeys := []struct {
		role      string
		keys      []*PrivateKey
		threshold int
	}{
		{tufmeta.ROOT, cfg.RootKeys, cfg.RootThreshold},
		{tufmeta.TARGETS, cfg.TargetsKeys, cfg.TargetsThreshold},
		{tufmeta.SNAPSHOT, cfg.SnapshotKeys, cfg.SnapshotThreshold},
		{tufmeta.TIMESTAMP, cfg.TimestampKeys, cfg.TimestampThreshold},
	}
	for _, rk := range roleKeys {
		th := rk.threshold
		if th == 0 {
			th = 1
		}
		ids := map[string]bool{}
		for _, k := range rk.keys {
			if k == nil {
				continue
			}
			ids[k.ID()] = true
			if err := root.Signed.AddKey(k.Public(), rk.role); err != nil {
				return nil, fmt.Errorf("init repository: role %s: %w", rk.role, err)
			}
		}
		if th < 1 || len(ids) < th {
			return nil, fmt.Errorf("init repository: role %s: %w: %d distinct keys for threshold %d", rk.role, ErrMissingKey, len(ids), th)
		}
		root.Signed.Roles[rk.role].Threshold = th
	}
	r := &Repo{
		dir:     dir,
		now:     cfg.Now,
		keys:    keyMap(cfg.RootKeys, cfg.TargetsKeys, cfg.SnapshotKeys, cfg.TimestampKeys),
		expires: exp,
		targets: map[string]*tufmeta.Metadata[tufmeta.TargetsType]{},
	}
	rootSigners, err := r.signers(tufmeta.ROOT, root.Signed.Roles[tufmeta.ROOT])
	if err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	if err := signMeta(root, rootSigners); err != nil {
		return nil, fmt.Errorf("init repository: sign root: %w", err)
	}
	r.root = root
	// Version 0 placeholders: commit bumps each to version 1.
	tg := tufmeta.Targets(expiry(now, exp[tufmeta.TARGETS]))
	tg.Signed.Version = 0
	r.targets[tufmeta.TARGETS] = tg
	r.snapshot = tufmeta.Snapshot(expiry(now, exp[tufmeta.SNAPSHOT]))
	r.snapshot.Signed.Version = 0
	r.snapshot.Signed.Meta = map[string]*tufmeta.MetaFiles{}
	r.timestamp = tufmeta.Timestamp(expiry(now, exp[tufmeta.TIMESTAMP]))
	r.timestamp.Signed.Version = 0
	roles := map[string]*tufmeta.Metadata[tufmeta.TargetsType]{tufmeta.TARGETS: tg}
	if cfg.Bins != 0 {
		k, err := binsBitLength(cfg.Bins)
		if err != nil {
			return nil, fmt.Errorf("init repository: %w", err)
		}
		roles[BinsRole] = addBins(tg, root, k, expiry(now, exp[tufmeta.TARGETS]))
	}

	for _, d := range []string{mdDir, filepath.Join(dir, ManifestsDir), filepath.Join(dir, ChunksDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("init repository: %w", err)
		}
	}
	if err := r.saveSettings(); err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	if err := r.commit(commitSpec{root: root, roles: roles}); err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	return r, nil
}

func orDur(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// OpenRepo opens the repository in dir. keys are whatever signing keys the
// caller holds; each operation needs the threshold of keys of every role it
// re-signs and fails with ErrMissingKey naming the role otherwise. now nil
// means time.Now.
func OpenRepo(dir string, keys []*PrivateKey, now func() time.Time) (*Repo, error) {
	if now == nil {
		now = time.Now
	}
	r := &Repo{dir: dir, now: now, keys: keyMap(keys)}
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	return r, nil
}

// Dir returns the repository directory.
func (r *Repo) Dir() string { return r.dir }

func (r *Repo) saveSettings() error {
	s := repoSettings{Format: 1, Expires: map[string]string{}}
	for role, d := range r.expires {
		s.Expires[role] = d.String()
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(r.dir, repoConfigFile), append(b, '\n'), 0o644)
}

func (r *Repo) load() error {
	r.expires = map[string]time.Duration{
		tufmeta.ROOT:      DefaultRootExpires,
		tufmeta.TARGETS:   DefaultTargetsExpires,
		tufmeta.SNAPSHOT:  DefaultSnapshotExpires,
		tufmeta.TIMESTAMP: DefaultTimestampExpires,
	}
	if b, err := os.ReadFile(filepath.Join(r.dir, repoConfigFile)); err == nil {
		var s repoSettings
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%s: %w: %v", repoConfigFile, ErrMalformed, err)
		}
		for role, v := range s.Expires {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("%s: %w: expires %s=%q", repoConfigFile, ErrMalformed, role, v)
			}
			r.expires[role] = d
		}
	}
	mdDir := filepath.Join(r.dir, MetadataDir)
	ents, err := os.ReadDir(mdDir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: no repository here (missing %s)", ErrNotFound, mdDir)
	}
	if err != nil {
		return err
	}
	var rootVer int64
	for _, e := range ents {
		v, ok := strings.CutSuffix(e.Name(), ".root.json")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > rootVer {
			rootVer = n
		}
	}
	if rootVer == 0 {
		return fmt.Errorf("%w: no repository here (no N.root.json in %s)", ErrNotFound, mdDir)
	}
	if r.root, err = loadRole[tufmeta.RootType](rolePath(r.dir, rootVer, tufmeta.ROOT)); err != nil {
		return err
	}
	if r.timestamp, err = loadRole[tufmeta.TimestampType](filepath.Join(mdDir, "timestamp.json")); err != nil {
		return err
	}
	sm, ok := r.timestamp.Signed.Meta["snapshot.json"]
	if !ok {
		return fmt.Errorf("timestamp.json: %w: no snapshot.json entry", ErrMalformed)
	}
	if r.snapshot, err = loadRole[tufmeta.SnapshotType](rolePath(r.dir, sm.Version, tufmeta.SNAPSHOT)); err != nil {
		return err
	}
	// Every role but the bins is read now; a bin is read when an
	// operation needs it (role), so that publishing one package into a
	// repository of thousands reads one bin.
	r.targets = map[string]*tufmeta.Metadata[tufmeta.TargetsType]{}
	if _, ok := r.snapshot.Signed.Meta[tufmeta.TARGETS+".json"]; !ok {
		return fmt.Errorf("snapshot: %w: no targets.json entry", ErrMalformed)
	}
	for _, role := range r.snapshotRoles() {
		if strings.HasPrefix(role, binNamePrefix+"-") {
			continue
		}
		if _, err := r.role(role); err != nil {
			return err
		}
	}
	sr := r.succinct(nil)
	for _, role := range r.snapshotRoles() {
		if strings.HasPrefix(role, binNamePrefix+"-") && (sr == nil || !sr.IsDelegatedRole(role)) {
			if _, err := r.role(role); err != nil {
				return err
			}
		}
	}
	return nil
}

// snapshotRoles lists the targets roles the snapshot names, sorted.
func (r *Repo) snapshotRoles() []string {
	var out []string
	for name := range r.snapshot.Signed.Meta {
		if role, ok := strings.CutSuffix(name, ".json"); ok {
			out = append(out, role)
		}
	}
	sort.Strings(out)
	return out
}

// role returns the current metadata of a targets role, reading it from
// disk the first time; nil (no error) if the snapshot does not list it.
func (r *Repo) role(role string) (*tufmeta.Metadata[tufmeta.TargetsType], error) {
	if m, ok := r.targets[role]; ok {
		return m, nil
	}
	mf, ok := r.snapshot.Signed.Meta[role+".json"]
	if !ok {
		return nil, nil
	}
	m, err := loadRole[tufmeta.TargetsType](rolePath(r.dir, mf.Version, role))
	if err != nil {
		return nil, err
	}
	r.targets[role] = m
	return m, nil
}

// loadAllRoles reads every role the snapshot names, bins included.
func (r *Repo) loadAllRoles() error {
	for _, role := range r.snapshotRoles() {
		if _, err := r.role(role); err != nil {
			return err
		}
	}
	return nil
}

// succinct returns the bins' succinct delegation, from the pending roles
// of a commit if they change it, else from the repository; nil if the
// repository has no bins.
func (r *Repo) succinct(pending map[string]*tufmeta.Metadata[tufmeta.TargetsType]) *tufmeta.SuccinctRoles {
	if m, ok := pending[BinsRole]; ok {
		return succinctOf(m)
	}
	return succinctOf(r.targets[BinsRole])
}

// isBin reports whether role is one of the repository's bins.
func (r *Repo) isBin(role string, pending map[string]*tufmeta.Metadata[tufmeta.TargetsType]) bool {
	sr := r.succinct(pending)
	return sr != nil && sr.IsDelegatedRole(role)
}

// Bins returns the number of hash bins the repository has, 0 if none.
func (r *Repo) Bins() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sr := r.succinct(nil); sr != nil {
		_, n := sr.GetSuffixLen()
		return n
	}
	return 0
}

func loadRole[T tufmeta.Roles](path string) (*tufmeta.Metadata[T], error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	m, err := new(tufmeta.Metadata[T]).FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", filepath.Base(path), ErrMalformed, err)
	}
	return m, nil
}

// signers returns the held keys among role's key IDs, or ErrMissingKey
// naming the role if they are fewer than its threshold.
func (r *Repo) signers(role string, spec *tufmeta.Role) ([]*PrivateKey, error) {
	if spec == nil {
		return nil, fmt.Errorf("role %s: %w: role not defined", role, ErrNotFound)
	}
	return r.signersFor(role, spec.KeyIDs, spec.Threshold)
}

// canCommit checks that the snapshot and timestamp keys every commit
// signs with are held, so that a change fails before doing any work.
func (r *Repo) canCommit() error {
	for _, rl := range []string{tufmeta.SNAPSHOT, tufmeta.TIMESTAMP} {
		if _, err := r.signers(rl, r.root.Signed.Roles[rl]); err != nil {
			return err
		}
	}
	return nil
}

func (r *Repo) signersFor(role string, keyIDs []string, threshold int) ([]*PrivateKey, error) {
	var out []*PrivateKey
	for _, id := range keyIDs {
		if k, ok := r.keys[id]; ok {
			out = append(out, k)
		}
	}
	if threshold < 1 {
		threshold = 1
	}
	if len(out) < threshold {
		return nil, fmt.Errorf("role %s: %w: have %d of the %d keys needed to sign it", role, ErrMissingKey, len(out), threshold)
	}
	return out, nil
}

// delegationKeys finds who may sign a delegated role: the key IDs and
// threshold of its delegation, looked up in the pending roles of a commit
// first, then in the repository's. A bin is delegated by the succinct
// delegation of the bins role.
func (r *Repo) delegationKeys(role string, pending map[string]*tufmeta.Metadata[tufmeta.TargetsType]) ([]string, int, bool) {
	if r.isBin(role, pending) {
		sr := r.succinct(pending)
		return sr.KeyIDs, sr.Threshold, true
	}
	for _, set := range []map[string]*tufmeta.Metadata[tufmeta.TargetsType]{pending, r.targets} {
		for _, parent := range sortedKeys(set) {
			d := set[parent].Signed.Delegations
			if d == nil {
				continue
			}
			for _, dr := range d.Roles {
				if dr.Name == role {
					return dr.KeyIDs, dr.Threshold, true
				}
			}
		}
	}
	return nil, 0, false
}

// roleSigners returns the keys to sign targets role role with.
func (r *Repo) roleSigners(role string, roles map[string]*tufmeta.Metadata[tufmeta.TargetsType], root *tufmeta.Metadata[tufmeta.RootType]) ([]*PrivateKey, error) {
	if role == tufmeta.TARGETS {
		return r.signers(role, root.Signed.Roles[role])
	}
	ids, th, ok := r.delegationKeys(role, roles)
	if !ok {
		return nil, fmt.Errorf("role %s: %w: not delegated", role, ErrNotFound)
	}
	return r.signersFor(role, ids, th)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// commitSpec says what a commit changes. Changed roles get version+1 and a
// new expiry and are re-signed; snapshot and timestamp always are.
type commitSpec struct {
	root  *tufmeta.Metadata[tufmeta.RootType] // new root (already signed), or nil
	roles map[string]*tufmeta.Metadata[tufmeta.TargetsType]
}

// commit signs everything first (so a missing key fails before any write),
// then writes roles, snapshot and timestamp in that order and updates r.
func (r *Repo) commit(spec commitSpec) error {
	now := r.now()
	root := r.root
	var files []metaFile
	if spec.root != nil {
		root = spec.root
		b, err := spec.root.ToBytes(true)
		if err != nil {
			return err
		}
		files = append(files,
			metaFile{rolePath(r.dir, spec.root.Signed.Version, tufmeta.ROOT), b},
			metaFile{filepath.Join(r.dir, MetadataDir, "root.json"), b})
	}
	snap, err := cloneMeta(r.snapshot)
	if err != nil {
		return err
	}
	if snap.Signed.Meta == nil {
		snap.Signed.Meta = map[string]*tufmeta.MetaFiles{}
	}
	roleFiles, err := r.signRoles(spec.roles, root, snap, now)
	if err != nil {
		return err
	}
	files = append(files, roleFiles...)
	ts, topFiles, err := r.signSnapshotTimestamp(snap, root, now)
	if err != nil {
		return err
	}
	files = append(files, topFiles...)
	for _, f := range files {
		if err := writeFileAtomic(f.path, f.data, 0o644); err != nil {
			return err
		}
	}
	syncDir(filepath.Join(r.dir, MetadataDir))
	if spec.root != nil {
		r.root = spec.root
	}
	for role, m := range spec.roles {
		r.targets[role] = m
	}
	r.snapshot = snap
	r.timestamp = ts
	return nil
}

// metaFile is a metadata file commit writes.
type metaFile struct {
	path string
	data []byte
}

// signRoles gives each changed role its next version and expiry, signs it
// with the keys root (or a delegating role among roles) names, lists it
// in snap, and returns its file.
func (r *Repo) signRoles(roles map[string]*tufmeta.Metadata[tufmeta.TargetsType], root *tufmeta.Metadata[tufmeta.RootType],
	snap *tufmeta.Metadata[tufmeta.SnapshotType], now time.Time) ([]metaFile, error) {
	var files []metaFile
	for _, role := range sortedKeys(roles) {
		m := roles[role]
		m.Signed.Version++
		m.Signed.Expires = expiry(now, r.roleExpires(role))
		keys, err := r.roleSigners(role, roles, root)
		if err != nil {
			return nil, err
		}
		if err := signMeta(m, keys); err != nil {
			return nil, fmt.Errorf("sign %s: %w", role, err)
		}
		// A bin is written compact and listed in the snapshot by version
		// only: both keep what an up-to-date client reads small (bins.go).
		bin := r.isBin(role, roles)
		b, err := m.ToBytes(!bin)
		if err != nil {
			return nil, err
		}
		files = append(files, metaFile{rolePath(r.dir, m.Signed.Version, role), b})
		if bin {
			snap.Signed.Meta[role+".json"] = &tufmeta.MetaFiles{Version: m.Signed.Version}
		} else {
			snap.Signed.Meta[role+".json"] = metaFileFor(m.Signed.Version, b)
		}
	}
	return files, nil
}

// signSnapshotTimestamp gives snap and a new timestamp naming it their
// next versions and expiries, signs both, and returns the timestamp and
// both files.
func (r *Repo) signSnapshotTimestamp(snap *tufmeta.Metadata[tufmeta.SnapshotType], root *tufmeta.Metadata[tufmeta.RootType],
	now time.Time) (*tufmeta.Metadata[tufmeta.TimestampType], []metaFile, error) {
	snap.Signed.Version++
	snap.Signed.Expires = expiry(now, r.expires[tufmeta.SNAPSHOT])
	keys, err := r.signers(tufmeta.SNAPSHOT, root.Signed.Roles[tufmeta.SNAPSHOT])
	if err != nil {
		return nil, nil, err
	}
	if err := signMeta(snap, keys); err != nil {
		return nil, nil, fmt.Errorf("sign snapshot: %w", err)
	}
	snapBytes, err := snap.ToBytes(false)
	if err != nil {
		return nil, nil, err
	}
	ts, err := cloneMeta(r.timestamp)
	if err != nil {
		return nil, nil, err
	}
	ts.Signed.Version++
	ts.Signed.Expires = expiry(now, r.expires[tufmeta.TIMESTAMP])
	ts.Signed.Meta = map[string]*tufmeta.MetaFiles{"snapshot.json": metaFileFor(snap.Signed.Version, snapBytes)}
	if keys, err = r.signers(tufmeta.TIMESTAMP, root.Signed.Roles[tufmeta.TIMESTAMP]); err != nil {
		return nil, nil, err
	}
	if err := signMeta(ts, keys); err != nil {
		return nil, nil, fmt.Errorf("sign timestamp: %w", err)
	}
	tsBytes, err := ts.ToBytes(true)
	if err != nil {
		return nil, nil, err
	}
	return ts, []metaFile{
		{rolePath(r.dir, snap.Signed.Version, tufmeta.SNAPSHOT), snapBytes},
		{filepath.Join(r.dir, MetadataDir, "timestamp.json"), tsBytes},
	}, nil
}

func (r *Repo) roleExpires(role string) time.Duration {
	if role == BinsRole || strings.HasPrefix(role, binNamePrefix+"-") {
		role = tufmeta.TARGETS // bins live as long as top-level targets
	}
	if d, ok := r.expires[role]; ok {
		return d
	}
	return DefaultTargetsExpires
}

// roleForUpdate returns a copy of a targets role to modify, or a new empty
// one (version 0) for a delegated role not published yet.
func (r *Repo) roleForUpdate(role string) (*tufmeta.Metadata[tufmeta.TargetsType], error) {
	m, err := r.role(role)
	if err != nil {
		return nil, err
	}
	if m != nil {
		return cloneMeta(m)
	}
	m = tufmeta.Targets(r.now().UTC())
	m.Signed.Version = 0
	return m, nil
}

// begin starts a writing operation: it takes r's mutex and the
// repository lock (see lockRepo), then re-reads the metadata from disk.
// The returned function releases both.
func (r *Repo) begin(ctx context.Context) (func(), error) {
	r.mu.Lock()
	unlockDir, err := lockRepo(ctx, r.dir)
	if err != nil {
		r.mu.Unlock()
		return nil, err
	}
	unlock := func() {
		unlockDir()
		r.mu.Unlock()
	}
	if err := r.load(); err != nil {
		unlock()
		return nil, fmt.Errorf("repository %s: %w", r.dir, err)
	}
	if err := ctx.Err(); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// Refresh re-signs the timestamp with a new version and expiry (needs the
// timestamp key). It also re-signs, when they are past half their lifetime
// and the caller holds their keys, targets and delegated roles; and the
// snapshot when any role was re-signed or it is past half its lifetime. Root
// is never re-signed here (see UpdateRoot).
func (r *Repo) Refresh(ctx context.Context) error {
	unlock, err := r.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := r.signers(tufmeta.TIMESTAMP, r.root.Signed.Roles[tufmeta.TIMESTAMP]); err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	now := r.now()
	due := func(expires time.Time, life time.Duration) bool {
		return expires.Sub(now) < life/2
	}
	if err := r.loadAllRoles(); err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	roles := map[string]*tufmeta.Metadata[tufmeta.TargetsType]{}
	for _, role := range sortedKeys(r.targets) {
		m := r.targets[role]
		if !due(m.Signed.Expires, r.roleExpires(role)) {
			continue
		}
		if _, err := r.roleSigners(role, r.targets, r.root); err != nil {
			continue // not ours to re-sign
		}
		c, err := cloneMeta(m)
		if err != nil {
			return err
		}
		roles[role] = c
	}
	snapDue := len(roles) > 0 || due(r.snapshot.Signed.Expires, r.expires[tufmeta.SNAPSHOT])
	if snapDue {
		if _, err := r.signers(tufmeta.SNAPSHOT, r.root.Signed.Roles[tufmeta.SNAPSHOT]); err != nil {
			return fmt.Errorf("refresh: %w", err)
		}
		return r.commit(commitSpec{roles: roles})
	}
	return r.commitTimestamp()
}

// commitTimestamp re-signs only the timestamp.
func (r *Repo) commitTimestamp() error {
	ts, err := cloneMeta(r.timestamp)
	if err != nil {
		return err
	}
	ts.Signed.Version++
	ts.Signed.Expires = expiry(r.now(), r.expires[tufmeta.TIMESTAMP])
	keys, err := r.signers(tufmeta.TIMESTAMP, r.root.Signed.Roles[tufmeta.TIMESTAMP])
	if err != nil {
		return err
	}
	if err := signMeta(ts, keys); err != nil {
		return fmt.Errorf("sign timestamp: %w", err)
	}
	b, err := ts.ToBytes(true)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(r.dir, MetadataDir, "timestamp.json"), b, 0o644); err != nil {
		return err
	}
	r.timestamp = ts
	return nil
}

// DelegateOptions describes a delegation from top-level targets to a
// publisher role.
type DelegateOptions struct {
	// Role names the delegated role: [a-z0-9][a-z0-9._-]*, not a top-level
	// role name. Delegating an existing role replaces its keys and patterns.
	Role string
	// Patterns are target path globs of the form "packages/<glob>/*", e.g.
	// "packages/alice-*/*"; a bare name glob "alice-*" is expanded to that.
	Patterns []string
	// Groups are group name globs whose policies the role signs: each
	// adds the pattern "groups/<glob>/*" (see groups.go). A role with
	// groups only is a group role, which clients load only when one of
	// its groups is asked for.
	Groups []string
	// Keys are the publisher's public keys; Threshold (0 means 1) of them
	// must sign the role.
	Keys      []*tufmeta.Key
	Threshold int
	// Expires is the lifetime of the role's metadata (0 means 90 days).
	Expires time.Duration
}

var roleRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// Delegate lets a publisher key sign packages whose names match patterns:
// it re-signs top-level targets (needs the targets keys), snapshot and
// timestamp. The publisher then runs Add holding its own key plus the
// snapshot and timestamp keys; its role file N.<role>.json appears with its
// first package (or at once if the caller holds the publisher's keys too).
func (r *Repo) Delegate(ctx context.Context, opts DelegateOptions) error {
	unlock, err := r.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	patterns, err := delegatePatterns(opts.Role, opts.Patterns, opts.Groups)
	if err != nil {
		return err
	}
	ids, keys, th, err := delegateKeys(opts.Role, opts.Keys, opts.Threshold)
	if err != nil {
		return err
	}
	if _, err := r.signers(tufmeta.TARGETS, r.root.Signed.Roles[tufmeta.TARGETS]); err != nil {
		return fmt.Errorf("delegate %s: %w", opts.Role, err)
	}
	tg, err := cloneMeta(r.targets[tufmeta.TARGETS])
	if err != nil {
		return err
	}
	if tg.Signed.Delegations == nil {
		tg.Signed.Delegations = &tufmeta.Delegations{Keys: map[string]*tufmeta.Key{}}
	}
	d := tg.Signed.Delegations
	if d.Keys == nil {
		d.Keys = map[string]*tufmeta.Key{}
	}
	for id, k := range keys {
		d.Keys[id] = k
	}
	setDelegatedRole(d, tufmeta.DelegatedRole{Name: opts.Role, KeyIDs: ids, Threshold: th, Paths: patterns})
	pruneDelegationKeys(d)
	roles := map[string]*tufmeta.Metadata[tufmeta.TargetsType]{tufmeta.TARGETS: tg}
	if _, exists := r.targets[opts.Role]; !exists {
		if _, err := r.signersFor(opts.Role, ids, th); err == nil {
			m, _ := r.roleForUpdate(opts.Role)
			roles[opts.Role] = m
		}
	}
	old, hadOld := r.expires[opts.Role]
	r.expires[opts.Role] = orDur(opts.Expires, DefaultTargetsExpires)
	if err := r.commit(commitSpec{roles: roles}); err != nil {
		if hadOld {
			r.expires[opts.Role] = old
		} else {
			delete(r.expires, opts.Role)
		}
		return fmt.Errorf("delegate %s: %w", opts.Role, err)
	}
	return r.saveSettings()
}

// delegatePatterns checks a delegated role's name and returns its
// patterns as target paths: a bare name glob NAME stands for
// packages/NAME/*, a group glob G for groups/G/*.
func delegatePatterns(role string, globs, groups []string) ([]string, error) {
	if !roleRE.MatchString(role) || len(role) > MaxNameLen {
		return nil, fmt.Errorf("delegate %q: %w: role name must match [a-z0-9][a-z0-9._-]*", role, ErrMalformed)
	}
	for _, top := range tufmeta.TOP_LEVEL_ROLE_NAMES {
		if role == top {
			return nil, fmt.Errorf("delegate %q: %w: a top-level role name", role, ErrMalformed)
		}
	}
	if reservedRoleName(role) {
		return nil, fmt.Errorf("delegate %q: %w: %q and names starting %q are kept for hash bins", role, ErrMalformed, BinsRole, binNamePrefix+"-")
	}
	if len(globs) == 0 && len(groups) == 0 {
		return nil, fmt.Errorf("delegate %s: %w: no patterns", role, ErrMalformed)
	}
	var patterns []string
	for _, g := range groups {
		if strings.Contains(g, "/") || g == "" {
			return nil, fmt.Errorf("delegate %s: group %q: %w: want a group name glob", role, g, ErrMalformed)
		}
		if _, err := filepath.Match(g, ""); err != nil {
			return nil, fmt.Errorf("delegate %s: group %q: %w: %v", role, g, ErrMalformed, err)
		}
		patterns = append(patterns, GroupPrefix+g+"/*")
	}
	for _, p := range globs {
		if !strings.Contains(p, "/") {
			p = TargetPrefix + p + "/*"
		}
		parts := strings.Split(p, "/")
		if len(parts) != 3 || parts[0]+"/" != TargetPrefix || parts[1] == "" || parts[2] == "" {
			return nil, fmt.Errorf("delegate %s: pattern %q: %w: want packages/<name glob>/<version glob>", role, p, ErrMalformed)
		}
		for _, part := range parts[1:] {
			if _, err := filepath.Match(part, ""); err != nil {
				return nil, fmt.Errorf("delegate %s: pattern %q: %w: %v", role, p, ErrMalformed, err)
			}
		}
		patterns = append(patterns, p)
	}
	return patterns, nil
}

// delegateKeys returns the distinct keys of a delegated role, their IDs
// in order, and its threshold (0 means 1), which the keys must reach.
func delegateKeys(role string, given []*tufmeta.Key, threshold int) ([]string, map[string]*tufmeta.Key, int, error) {
	th := threshold
	if th == 0 {
		th = 1
	}
	var ids []string
	keys := map[string]*tufmeta.Key{}
	for _, k := range given {
		if k == nil {
			continue
		}
		id, err := k.ID()
		if err != nil {
			return nil, nil, 0, fmt.Errorf("delegate %s: %w", role, err)
		}
		if _, dup := keys[id]; !dup {
			ids = append(ids, id)
		}
		keys[id] = k
	}
	if th < 1 || len(ids) < th {
		return nil, nil, 0, fmt.Errorf("delegate %s: %w: %d distinct keys for threshold %d", role, ErrMissingKey, len(ids), th)
	}
	return ids, keys, th, nil
}

// setDelegatedRole replaces the delegation of dr's name, or adds dr
// before the hash bins, which end every walk (bins.go).
func setDelegatedRole(d *tufmeta.Delegations, dr tufmeta.DelegatedRole) {
	replaced := false
	for i := range d.Roles {
		if d.Roles[i].Name == dr.Name {
			d.Roles[i] = dr
			replaced = true
		}
	}
	if !replaced {
		// Publishers go before the bins, which end every walk (bins.go).
		at := len(d.Roles)
		if at > 0 && d.Roles[at-1].Name == BinsRole {
			at--
		}
		d.Roles = slices.Insert(d.Roles, at, dr)
	}
}

// pruneDelegationKeys drops keys no delegated role uses.
func pruneDelegationKeys(d *tufmeta.Delegations) {
	used := map[string]bool{}
	for _, dr := range d.Roles {
		for _, id := range dr.KeyIDs {
			used[id] = true
		}
	}
	for id := range d.Keys {
		if !used[id] {
			delete(d.Keys, id)
		}
	}
}

// RootUpdate changes root metadata: the keys and thresholds of roles, and
// its lifetime. Nil key lists and zero thresholds keep what root has.
type RootUpdate struct {
	RootKeys, TargetsKeys, SnapshotKeys, TimestampKeys                     []*tufmeta.Key
	RootThreshold, TargetsThreshold, SnapshotThreshold, TimestampThreshold int
	Expires                                                                time.Duration // 0: the repository's root lifetime
}

// UpdateRoot writes root version N+1, signed by a threshold of the old root
// keys and a threshold of the new ones (so clients follow the rotation),
// and re-signs every top-level role whose keys changed plus snapshot and
// timestamp. The caller must hold all those keys (ErrMissingKey otherwise).
func (r *Repo) UpdateRoot(ctx context.Context, u RootUpdate) error {
	unlock, err := r.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	nr, err := cloneMeta(r.root)
	if err != nil {
		return err
	}
	nr.Signed.Version++
	nr.Signed.Expires = expiry(r.now(), orDur(u.Expires, r.expires[tufmeta.ROOT]))
	changes := []struct {
		role      string
		keys      []*tufmeta.Key
		threshold int
	}{
		{tufmeta.ROOT, u.RootKeys, u.RootThreshold},
		{tufmeta.TARGETS, u.TargetsKeys, u.TargetsThreshold},
		{tufmeta.SNAPSHOT, u.SnapshotKeys, u.SnapshotThreshold},
		{tufmeta.TIMESTAMP, u.TimestampKeys, u.TimestampThreshold},
	}
	keysChanged := map[string]bool{}
	for _, c := range changes {
		role := nr.Signed.Roles[c.role]
		if c.keys != nil {
			var ids []string
			for _, k := range c.keys {
				id, err := k.ID()
				if err != nil {
					return fmt.Errorf("update root: role %s: %w", c.role, err)
				}
				if !contains(ids, id) {
					ids = append(ids, id)
				}
				nr.Signed.Keys[id] = k
			}
			if !sameSet(ids, role.KeyIDs) {
				keysChanged[c.role] = true
			}
			role.KeyIDs = ids
		}
		if c.threshold > 0 {
			role.Threshold = c.threshold
		}
		if len(role.KeyIDs) < role.Threshold {
			return fmt.Errorf("update root: role %s: %w: %d keys for threshold %d", c.role, ErrMissingKey, len(role.KeyIDs), role.Threshold)
		}
	}
	// Drop keys no role uses any more.
	used := map[string]bool{}
	for _, role := range nr.Signed.Roles {
		for _, id := range role.KeyIDs {
			used[id] = true
		}
	}
	for id := range nr.Signed.Keys {
		if !used[id] {
			delete(nr.Signed.Keys, id)
		}
	}
	oldSigners, err := r.signers("root (current keys)", r.root.Signed.Roles[tufmeta.ROOT])
	if err != nil {
		return fmt.Errorf("update root: %w", err)
	}
	newSigners, err := r.signers("root (new keys)", nr.Signed.Roles[tufmeta.ROOT])
	if err != nil {
		return fmt.Errorf("update root: %w", err)
	}
	nr.ClearSignatures()
	if err := addSignatures(nr, append(oldSigners, newSigners...)); err != nil {
		return fmt.Errorf("update root: %w", err)
	}
	roles := map[string]*tufmeta.Metadata[tufmeta.TargetsType]{}
	if keysChanged[tufmeta.TARGETS] || u.TargetsThreshold > 0 {
		tg, err := cloneMeta(r.targets[tufmeta.TARGETS])
		if err != nil {
			return err
		}
		roles[tufmeta.TARGETS] = tg
		if err := r.rekeyBins(roles, nr); err != nil {
			return fmt.Errorf("update root: %w", err)
		}
	}
	if err := r.commit(commitSpec{root: nr, roles: roles}); err != nil {
		return fmt.Errorf("update root: %w", err)
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !contains(b, x) {
			return false
		}
	}
	return true
}

// Packages lists the published packages as the repository signs them:
// every target packages/NAME/VERSION that a client resolving it would
// accept, from top-level targets, a bin or a delegated role, following
// the delegation rules (see bins.go). Sorted by name then version.
func (r *Repo) Packages() ([]PackageInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("repository %s: %w", r.dir, err)
	}
	if err := r.loadAllRoles(); err != nil {
		return nil, fmt.Errorf("repository %s: %w", r.dir, err)
	}
	names := map[string]bool{}
	for _, m := range r.targets {
		for p := range m.Signed.Targets {
			if n, _, ok := ParseTargetPath(p); ok {
				names[n] = true
			}
		}
	}
	get := r.getter()
	var out []PackageInfo
	for _, name := range sortedKeys(names) {
		vts, err := targetsOfName(get, name)
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", r.dir, err)
		}
		for _, vt := range vts {
			pi, err := packageInfo(vt.path, vt.tf)
			if err != nil {
				continue
			}
			pi.Role = vt.role
			out = append(out, pi)
		}
	}
	sortPackages(out)
	return out, nil
}

// packageInfo decodes a package target: its path, custom field, version
// under the recorded scheme, and dependencies. On error the info still
// holds the name, version and scheme when they decoded.
func packageInfo(p string, tf *tufmeta.TargetFiles) (PackageInfo, error) {
	name, version, ok := ParseTargetPath(p)
	if !ok {
		return PackageInfo{}, fmt.Errorf("target %q: %w: not packages/NAME/VERSION", p, ErrMalformed)
	}
	if tf.Custom == nil {
		return PackageInfo{}, fmt.Errorf("target %s: %w: no custom field", p, ErrMalformed)
	}
	var c targetCustom
	dec := json.NewDecoder(bytes.NewReader(*tf.Custom))
	if err := dec.Decode(&c); err != nil {
		return PackageInfo{}, fmt.Errorf("target %s: %w: custom: %v", p, ErrMalformed, err)
	}
	scheme, err := ParseScheme(c.Scheme)
	if err != nil {
		return PackageInfo{}, fmt.Errorf("target %s: %w", p, err)
	}
	info := PackageInfo{Name: name, Version: version, Scheme: scheme}
	if _, err := ParseVersion(scheme, version); err != nil {
		return info, fmt.Errorf("target %s: %w", p, err)
	}
	mc, _, err := ParseCID(c.Manifest)
	if err != nil {
		return info, fmt.Errorf("target %s: %w", p, err)
	}
	if _, _, err := ParseDependencies(name, c.Depends); err != nil {
		return info, fmt.Errorf("target %s: %w", p, err)
	}
	if _, _, err := ParseProvides(scheme, c.Provides); err != nil {
		return info, fmt.Errorf("target %s: %w", p, err)
	}
	info.ManifestCID, info.Size, info.ManifestSize, info.Depends, info.Provides = mc, c.Size, tf.Length, c.Depends, c.Provides
	return info, nil
}
