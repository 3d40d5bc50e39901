package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// Metadata from several sources.
//
// Any peer may serve the signed metadata, because the client checks a
// peer's copy exactly as it checks the origin's. With a CheckingFetcher
// the client checks each copy before one is chosen, against the trusted
// set the updater holds at that moment:
//
//   - N.root.json: a root of version N, signed by the threshold of the
//     trusted root's root keys and of its own.
//   - timestamp.json: signed by the trusted root's timestamp keys, not
//     older than the trusted timestamp (nor pointing at an older
//     snapshot), not expired; of those, the newest.
//   - N.snapshot.json, N.targets.json and delegated roles: the length and
//     hashes the trusted timestamp or snapshot pins, version N, signed by
//     the keys their delegator names.
//
// A copy that fails is dropped and the fetcher goes on with its other
// sources; go-tuf's updater then checks the chosen copy again, so the
// rollback and freeze defences stay go-tuf's. When no source can be
// reached for timestamp.json (ErrUnavailable), the trusted timestamp is
// used again: that is the TUF answer "nothing newer", and the updater
// still refuses it once it has expired.
//
// What a client trusts is kept in its directory so that it can serve it to
// peers (TrustedFile): go-tuf's root.json, timestamp.json, snapshot.json
// and targets.json, every root of the chain it checked (roots/N.root.json)
// and the delegated roles (delegated/ROLE.json), which also let a
// restarted client load them without any source.

// Subdirectories of ClientConfig.Dir.
const (
	rootsDir     = "roots"
	delegatedDir = "delegated"
)

// fetchChecked fetches the repository file p through cf, checking every
// copy against the updater's trusted set; false if p is not a file it
// checks.
func (a *tufFetcher) fetchChecked(ctx context.Context, cf CheckingFetcher, p string, maxLen int64) ([]byte, bool, error) {
	name, ok := strings.CutPrefix(p, MetadataDir+"/")
	if !ok {
		return nil, false, nil
	}
	tm := a.up.GetTrustedMetadataSet()
	if name == tufmeta.TIMESTAMP+".json" {
		data, err := cf.FetchNewest(ctx, p, maxLen, func(b []byte) (int64, error) { return checkTimestamp(&tm, b) })
		if errors.Is(err, ErrUnavailable) && tm.Timestamp != nil {
			if exp := tm.Timestamp.Signed.Expires; tm.Timestamp.Signed.IsExpired(tm.RefTime) {
				return nil, true, fmt.Errorf("timestamp: %w: the trusted one expired at %s and no source has a newer one: %w",
					ErrExpired, exp.UTC().Format(time.RFC3339), err)
			}
			if local, lerr := os.ReadFile(filepath.Join(a.dir, tufmeta.TIMESTAMP+".json")); lerr == nil {
				return local, true, nil
			}
		}
		return data, true, err
	}
	v, role, ok := parseVersionedName(name)
	if !ok {
		return nil, false, nil
	}
	var check func([]byte) error
	switch role {
	case tufmeta.ROOT:
		check = func(b []byte) error { return checkRoot(&tm, v, b) }
	case tufmeta.SNAPSHOT:
		check = func(b []byte) error { return checkSnapshot(&tm, v, b) }
	case tufmeta.TARGETS:
		check = func(b []byte) error { return checkTopTargets(&tm, v, b) }
	default:
		return nil, false, nil
	}
	data, err := cf.FetchChecked(ctx, p, maxLen, check)
	if err == nil && role == tufmeta.ROOT {
		a.keepRoot(p, data)
	}
	return data, true, err
}

// keepRoot keeps a root of the chain that checks against the trusted root
// (roots/N.root.json), for peers that follow the chain after this client:
// go-tuf keeps only the newest. A failure to keep it costs them a source,
// not this client the root.
func (a *tufFetcher) keepRoot(p string, data []byte) {
	name, _ := strings.CutPrefix(p, MetadataDir+"/")
	v, role, ok := parseVersionedName(name)
	if a.dir == "" || !ok || role != tufmeta.ROOT {
		return
	}
	tm := a.up.GetTrustedMetadataSet()
	if checkRoot(&tm, v, data) == nil {
		_ = keepFile(filepath.Join(a.dir, rootsDir), name, data, writeFileAtomic)
	}
}

// CooperativePath reports whether p names a repository file whose bytes
// never change and that a host may take from a peer it asked to fetch
// it: a manifest (manifests/CID) or metadata of a fixed version other
// than root (metadata/N.ROLE.json). Not timestamp.json, whose newest
// copy only the origin tells, nor N.root.json, whose absence (no newer
// root) only the origin tells. Every copy is still checked by its
// caller.
func CooperativePath(p string) bool {
	if name, ok := strings.CutPrefix(p, ManifestsDir+"/"); ok {
		c, err := cid.Decode(name)
		return err == nil && c.String() == name
	}
	name, ok := strings.CutPrefix(p, MetadataDir+"/")
	if !ok {
		return false
	}
	_, role, ok := parseVersionedName(name)
	return ok && role != tufmeta.ROOT && role != tufmeta.TIMESTAMP
}

// parseVersionedName splits "N.ROLE.json" (ROLE path-escaped, as go-tuf
// names files) into N and ROLE.
func parseVersionedName(name string) (int64, string, bool) {
	base, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return 0, "", false
	}
	vs, esc, ok := strings.Cut(base, ".")
	if !ok || vs == "" || esc == "" || strings.ContainsAny(esc, "/\\") || strings.HasPrefix(esc, ".") {
		return 0, "", false
	}
	v, err := strconv.ParseInt(vs, 10, 64)
	if err != nil || v <= 0 || strconv.FormatInt(v, 10) != vs {
		return 0, "", false
	}
	role, err := url.PathUnescape(esc)
	if err != nil || url.PathEscape(role) != esc {
		return 0, "", false
	}
	return v, role, true
}

// checkTimestamp checks a candidate timestamp.json and returns its version.
func checkTimestamp(tm *trustedmetadata.TrustedMetadata, b []byte) (int64, error) {
	m, err := new(tufmeta.Metadata[tufmeta.TimestampType]).FromBytes(b)
	if err != nil {
		return 0, mapTUFError("timestamp", err)
	}
	if m.Signed.Type != tufmeta.TIMESTAMP {
		return 0, fmt.Errorf("timestamp: %w: type %q", ErrMalformed, m.Signed.Type)
	}
	snap := m.Signed.Meta[tufmeta.SNAPSHOT+".json"]
	if snap == nil {
		return 0, fmt.Errorf("timestamp: %w: no snapshot entry", ErrMalformed)
	}
	if err := tm.Root.VerifyDelegate(tufmeta.TIMESTAMP, m); err != nil {
		return 0, mapTUFError("timestamp", err)
	}
	if old := tm.Timestamp; old != nil {
		if m.Signed.Version < old.Signed.Version {
			return 0, fmt.Errorf("timestamp: %w: version %d, trusted %d", ErrRollback, m.Signed.Version, old.Signed.Version)
		}
		if prev := old.Signed.Meta[tufmeta.SNAPSHOT+".json"]; prev != nil && snap.Version < prev.Version {
			return 0, fmt.Errorf("timestamp: %w: snapshot version %d, trusted %d", ErrRollback, snap.Version, prev.Version)
		}
	}
	if m.Signed.IsExpired(tm.RefTime) {
		return 0, fmt.Errorf("timestamp version %d: %w at %s", m.Signed.Version, ErrExpired, m.Signed.Expires.UTC().Format(time.RFC3339))
	}
	return m.Signed.Version, nil
}

// checkRoot checks a candidate N.root.json: version v, signed by the
// trusted root and by itself.
func checkRoot(tm *trustedmetadata.TrustedMetadata, v int64, b []byte) error {
	what := fmt.Sprintf("%d.root.json", v)
	m, err := new(tufmeta.Metadata[tufmeta.RootType]).FromBytes(b)
	if err != nil {
		return mapTUFError(what, err)
	}
	if m.Signed.Type != tufmeta.ROOT || m.Signed.Version != v {
		return fmt.Errorf("%s: %w: type %q version %d", what, ErrMalformed, m.Signed.Type, m.Signed.Version)
	}
	if err := tm.Root.VerifyDelegate(tufmeta.ROOT, m); err != nil {
		return mapTUFError(what, err)
	}
	return mapTUFError(what, m.VerifyDelegate(tufmeta.ROOT, m))
}

// checkSnapshot checks a candidate N.snapshot.json against the trusted
// timestamp and root.
func checkSnapshot(tm *trustedmetadata.TrustedMetadata, v int64, b []byte) error {
	what := fmt.Sprintf("%d.snapshot.json", v)
	if tm.Timestamp == nil {
		return fmt.Errorf("%s: %w: no trusted timestamp", what, ErrNotFound)
	}
	mf := tm.Timestamp.Signed.Meta[tufmeta.SNAPSHOT+".json"]
	if mf == nil || mf.Version != v {
		return fmt.Errorf("%s: %w: the trusted timestamp does not name it", what, ErrMalformed)
	}
	if err := mf.VerifyLengthHashes(b); err != nil {
		return mapTUFError(what, err)
	}
	m, err := new(tufmeta.Metadata[tufmeta.SnapshotType]).FromBytes(b)
	if err != nil {
		return mapTUFError(what, err)
	}
	if m.Signed.Type != tufmeta.SNAPSHOT || m.Signed.Version != v {
		return fmt.Errorf("%s: %w: type %q version %d", what, ErrMalformed, m.Signed.Type, m.Signed.Version)
	}
	return mapTUFError(what, tm.Root.VerifyDelegate(tufmeta.SNAPSHOT, m))
}

// checkTopTargets checks a candidate N.targets.json against the trusted
// snapshot and root.
func checkTopTargets(tm *trustedmetadata.TrustedMetadata, v int64, b []byte) error {
	if tm.Snapshot == nil {
		return fmt.Errorf("%d.targets.json: %w: no trusted snapshot", v, ErrNotFound)
	}
	mf := tm.Snapshot.Signed.Meta[tufmeta.TARGETS+".json"]
	if mf == nil || mf.Version != v {
		return fmt.Errorf("%d.targets.json: %w: the trusted snapshot does not name it", v, ErrMalformed)
	}
	return checkTargets(tm.Root.VerifyDelegate, tufmeta.TARGETS, mf, b)
}

// checkTargets checks a targets role's candidate bytes against the length,
// hashes and version mf pins and the keys verify (its delegator's) checks.
func checkTargets(verify func(string, any) error, role string, mf *tufmeta.MetaFiles, b []byte) error {
	what := fmt.Sprintf("%d.%s.json", mf.Version, role)
	if err := mf.VerifyLengthHashes(b); err != nil {
		return mapTUFError(what, err)
	}
	m, err := new(tufmeta.Metadata[tufmeta.TargetsType]).FromBytes(b)
	if err != nil {
		return mapTUFError(what, err)
	}
	if m.Signed.Type != tufmeta.TARGETS || m.Signed.Version != mf.Version {
		return fmt.Errorf("%s: %w: type %q version %d", what, ErrMalformed, m.Signed.Type, m.Signed.Version)
	}
	return mapTUFError(what, verify(role, m))
}

// fetchDelegated returns the bytes of delegated role (delegated by parent,
// pinned by mf in the trusted snapshot): the copy kept in Dir if it is
// that version, else one fetched (checked first when the fetcher can).
func (c *Client) fetchDelegated(ctx context.Context, tm *trustedmetadata.TrustedMetadata, role, parent string, mf *tufmeta.MetaFiles, maxLen int64) ([]byte, error) {
	pm := tm.Targets[parent]
	if pm == nil {
		return nil, fmt.Errorf("role %s: %w: delegator %s not loaded", role, ErrNotFound, parent)
	}
	check := func(b []byte) error { return checkTargets(pm.VerifyDelegate, role, mf, b) }
	if c.cfg.Dir != "" {
		if b, err := os.ReadFile(filepath.Join(c.cfg.Dir, delegatedDir, url.PathEscape(role)+".json")); err == nil && check(b) == nil {
			return b, nil
		}
	}
	p := fmt.Sprintf("%s/%d.%s.json", MetadataDir, mf.Version, url.PathEscape(role))
	f := c.roleFetcher()
	if cf, ok := f.(CheckingFetcher); ok {
		return cf.FetchChecked(ctx, p, maxLen, check)
	}
	return f.Fetch(ctx, p, maxLen)
}

// keepDelegated keeps a trusted delegated role in Dir, for peers and for
// a restart without sources. A failure costs only that. The copy is a
// cache, checked against the trusted snapshot before every use, so a torn
// write costs a download, not trust: it is not synced (a repository with
// many bins writes one per bin).
func (c *Client) keepDelegated(role string, b []byte) {
	if c.cfg.Dir != "" {
		_ = keepFile(filepath.Join(c.cfg.Dir, delegatedDir), url.PathEscape(role)+".json", b, writeFileAtomicNoSync)
	}
}

// keepFile writes dir/name atomically with write unless it already holds b.
func keepFile(dir, name string, b []byte, write func(string, []byte, os.FileMode) error) error {
	full := filepath.Join(dir, name)
	if old, err := os.ReadFile(full); err == nil && string(old) == string(b) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return write(full, b, 0o600)
}

// TrustedFile returns the repository file p (a path as Fetcher takes it)
// from a client's trusted directory dir, if the client trusts that very
// file: metadata/timestamp.json, or metadata/N.ROLE.json of the version
// named. It serves nothing else (an error wrapping ErrNotFound) and reads
// at most maxLen bytes (ErrTooLarge). The bytes are what the client
// trusted; whoever receives them checks them as they would the origin's.
// It reads files only below dir and is safe while the client refreshes
// (go-tuf and the client replace files by rename).
func TrustedFile(dir, p string, maxLen int64) ([]byte, error) {
	if _, err := cleanRepoPath(p); err != nil {
		return nil, err
	}
	name, ok := strings.CutPrefix(p, MetadataDir+"/")
	if !ok || strings.Contains(name, "/") {
		return nil, fmt.Errorf("trusted file %s: %w: not a metadata file", p, ErrNotFound)
	}
	if name == tufmeta.TIMESTAMP+".json" {
		return readBeneath(dir, name, p, maxLen)
	}
	v, role, ok := parseVersionedName(name)
	if !ok || role == tufmeta.TIMESTAMP {
		return nil, fmt.Errorf("trusted file %s: %w: not a metadata file", p, ErrNotFound)
	}
	var candidates []string
	switch role {
	case tufmeta.ROOT:
		candidates = []string{filepath.Join(rootsDir, name), "root.json"}
	case tufmeta.SNAPSHOT, tufmeta.TARGETS:
		candidates = []string{role + ".json"}
	default:
		candidates = []string{filepath.Join(delegatedDir, url.PathEscape(role)+".json")}
	}
	for _, rel := range candidates {
		b, err := readBeneath(dir, rel, p, maxLen)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if signedVersion(b) == v {
			return b, nil
		}
	}
	return nil, fmt.Errorf("trusted file %s: %w: version %d not held", p, ErrNotFound, v)
}

// readBeneath reads dir/rel without leaving dir, at most maxLen bytes.
func readBeneath(dir, rel, p string, maxLen int64) ([]byte, error) {
	f, err := os.OpenInRoot(dir, rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("trusted file %s: %w", p, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("trusted file %s: %w", p, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("trusted file %s: %w: not a regular file", p, ErrNotFound)
	}
	return readLimited(io.Reader(f), p, maxLen)
}

// signedVersion returns the "signed.version" of a metadata file, 0 if it
// has none.
func signedVersion(b []byte) int64 {
	var env struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	if json.Unmarshal(b, &env) != nil {
		return 0
	}
	return env.Signed.Version
}
