package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// DefaultPruneKeep is how long Prune keeps a snapshot after a newer one
// replaced it. A client needs an older version only between reading the
// timestamp that names it and loading the roles it names; Stork's client
// refreshes and retries once when a role version is gone. PEP 458 gives
// an hour as a reasonable time after which obsoleted metadata may go.
const DefaultPruneKeep = time.Hour

// PruneOptions says what Prune keeps.
type PruneOptions struct {
	// Keep is how long a snapshot stays after a newer snapshot replaced
	// it, measured from the newer one's signing time; 0 keeps the current
	// snapshot only. Whatever a kept snapshot names stays.
	Keep time.Duration
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
}

// PruneResult counts what Prune deleted (or would delete).
type PruneResult struct {
	Snapshots   int   // snapshot versions kept (the current one included)
	Metadata    int   // role files deleted
	Manifests   int   // manifests deleted
	Chunks      int   // chunks deleted
	Temporary   int   // leftovers of interrupted writes deleted
	Bytes       int64 // bytes deleted
	KeptBytes   int64 // bytes of metadata kept
	ContentSeen int   // manifests referenced by kept metadata
}

// roleFile is a versioned metadata file N.<role>.json.
type roleFile struct {
	name    string
	version int64
	role    string
}

func parseRoleFile(name string) (roleFile, bool) {
	base, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return roleFile{}, false
	}
	v, role, ok := strings.Cut(base, ".")
	if !ok || role == "" {
		return roleFile{}, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != v {
		return roleFile{}, false
	}
	return roleFile{name: name, version: n, role: role}, true
}

// Prune deletes what no client can still need: old versions of snapshot
// and targets roles (top-level, bins, publishers), manifests and chunks.
//
// Kept are the current snapshot and every older one replaced less than
// opts.Keep ago (by the signing time of its successor: its expiry minus
// the repository's snapshot lifetime), every role version a kept snapshot
// names, every root version (a client walks the root chain from the one
// it trusts), timestamp.json and root.json, every manifest a target of a
// kept role version names, and every chunk a kept manifest names. Files
// the repository did not write (no N.role.json name) are left alone;
// leftovers of interrupted writes (.tmp-*) go. Everything is decided
// before anything is deleted, under the repository lock, so a publisher
// never races it; a referenced manifest that cannot be read stops the
// prune before it deletes anything.
func (r *Repo) Prune(ctx context.Context, opts PruneOptions) (*PruneResult, error) {
	unlock, err := r.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	mdDir := filepath.Join(r.dir, MetadataDir)
	files, temps, err := listRoleFiles(mdDir)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	keepRoles, nsnap, err := r.keptRoleVersions(files, opts.Keep)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	res := &PruneResult{Snapshots: nsnap}
	var doomed []string
	for _, f := range files {
		p := filepath.Join(mdDir, f.name)
		if f.role == tufmeta.ROOT || keepRoles[f.role][f.version] {
			res.KeptBytes += fileSize(p)
			continue
		}
		doomed = append(doomed, p)
		res.Metadata++
	}
	for _, t := range temps {
		doomed = append(doomed, filepath.Join(mdDir, t))
		res.Temporary++
	}
	content, err := r.doomedContent(ctx, keepRoles, res)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	doomed = append(doomed, content...)
	for _, p := range doomed {
		res.Bytes += fileSize(p)
		if opts.DryRun {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("prune: %w", err)
		}
	}
	return res, nil
}

func fileSize(p string) int64 {
	if fi, err := os.Lstat(p); err == nil {
		return fi.Size()
	}
	return 0
}

// listRoleFiles lists the versioned role files of the metadata directory
// and the names of temporary files left by interrupted writes.
func listRoleFiles(mdDir string) ([]roleFile, []string, error) {
	ents, err := os.ReadDir(mdDir)
	if err != nil {
		return nil, nil, err
	}
	var files []roleFile
	var temps []string
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if strings.HasPrefix(e.Name(), ".tmp-") {
			temps = append(temps, e.Name())
			continue
		}
		if f, ok := parseRoleFile(e.Name()); ok {
			files = append(files, f)
		}
	}
	return files, temps, nil
}

// keptRoleVersions returns, per role, the versions kept snapshots name
// (snapshot versions under "snapshot"), and how many snapshots are kept.
// Snapshots are visited newest first; the first one replaced longer ago
// than keep ends the walk, as every older one was replaced earlier still.
func (r *Repo) keptRoleVersions(files []roleFile, keep time.Duration) (map[string]map[int64]bool, int, error) {
	var snaps []int64
	for _, f := range files {
		if f.role == tufmeta.SNAPSHOT {
			snaps = append(snaps, f.version)
		}
	}
	slices.Sort(snaps)
	slices.Reverse(snaps)
	current := r.snapshot.Signed.Version
	kept := map[string]map[int64]bool{}
	mark := func(role string, v int64) {
		if kept[role] == nil {
			kept[role] = map[int64]bool{}
		}
		kept[role][v] = true
	}
	cutoff := r.now().Add(-keep)
	life := r.expires[tufmeta.SNAPSHOT]
	var successorSigned time.Time
	n := 0
	for _, v := range snaps {
		if v > current {
			continue // written by an interrupted commit; never named
		}
		if v < current && !successorSigned.After(cutoff) {
			break
		}
		s, err := loadRole[tufmeta.SnapshotType](rolePath(r.dir, v, tufmeta.SNAPSHOT))
		if err != nil {
			return nil, 0, err
		}
		mark(tufmeta.SNAPSHOT, v)
		n++
		for name, mf := range s.Signed.Meta {
			if role, ok := strings.CutSuffix(name, ".json"); ok {
				mark(role, mf.Version)
			}
		}
		successorSigned = s.Signed.Expires.Add(-life)
	}
	if !kept[tufmeta.SNAPSHOT][current] {
		return nil, 0, fmt.Errorf("%w: current snapshot %d.snapshot.json missing", ErrNotFound, current)
	}
	return kept, n, nil
}

// doomedContent returns the manifests and chunks that no target of a kept
// role version needs, and temporary files in their directories.
func (r *Repo) doomedContent(ctx context.Context, keepRoles map[string]map[int64]bool, res *PruneResult) ([]string, error) {
	manifests := map[string]bool{}
	for role, vs := range keepRoles {
		if role == tufmeta.SNAPSHOT {
			continue
		}
		for v := range vs {
			m, err := loadRole[tufmeta.TargetsType](rolePath(r.dir, v, role))
			if cur := r.snapshot.Signed.Meta[role+".json"]; errors.Is(err, fs.ErrNotExist) && (cur == nil || cur.Version != v) {
				continue // named by an older snapshot only, and already gone
			}
			if err != nil {
				return nil, err
			}
			for p, tf := range m.Signed.Targets {
				var c targetCustom
				if tf.Custom == nil || json.Unmarshal(*tf.Custom, &c) != nil || c.Manifest == "" {
					return nil, fmt.Errorf("role %s version %d: target %s: %w: no manifest named", role, v, p, ErrMalformed)
				}
				manifests[c.Manifest] = true
			}
		}
	}
	res.ContentSeen = len(manifests)
	chunks := map[string]bool{}
	lim := Limits{MaxFileSize: 1 << 62, MaxTotalSize: 1 << 62, MaxEntries: 1 << 40, MaxPathLen: 1 << 30, MaxManifestSize: 1 << 40}
	for mc := range manifests {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(filepath.Join(r.dir, ManifestsDir, mc))
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", mc, err)
		}
		m, err := DecodeManifest(b, lim)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", mc, err)
		}
		for _, ref := range m.ChunkRefs() {
			chunks[ref.CID.String()] = true
		}
	}
	var doomed []string
	for _, d := range []struct {
		dir   string
		keep  map[string]bool
		count *int
	}{{ManifestsDir, manifests, &res.Manifests}, {ChunksDir, chunks, &res.Chunks}} {
		ents, err := os.ReadDir(filepath.Join(r.dir, d.dir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			switch {
			case !e.Type().IsRegular() || d.keep[e.Name()]:
			case strings.HasPrefix(e.Name(), ".tmp-"):
				doomed = append(doomed, filepath.Join(r.dir, d.dir, e.Name()))
				res.Temporary++
			case isCIDName(e.Name()):
				doomed = append(doomed, filepath.Join(r.dir, d.dir, e.Name()))
				(*d.count)++
			}
		}
	}
	return doomed, nil
}

// isCIDName reports whether a file name is a CID in its canonical form,
// as the repository names manifests and chunks; other files are left alone.
func isCIDName(name string) bool {
	c, _, err := ParseCID(name)
	return err == nil && c.String() == name
}

// CurrentFiles lists the repository paths of one full current set of
// metadata: the newest root, timestamp.json, the current snapshot and the
// current version of every role it names. It is what a new client could
// read, and what a mirror must hold at least.
func (r *Repo) CurrentFiles() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("repository %s: %w", r.dir, err)
	}
	out := []string{
		fmt.Sprintf("%s/%d.%s.json", MetadataDir, r.root.Signed.Version, tufmeta.ROOT),
		MetadataDir + "/timestamp.json",
		fmt.Sprintf("%s/%d.%s.json", MetadataDir, r.snapshot.Signed.Version, tufmeta.SNAPSHOT),
	}
	for _, name := range sortedKeys(r.snapshot.Signed.Meta) {
		if role, ok := strings.CutSuffix(name, ".json"); ok {
			out = append(out, fmt.Sprintf("%s/%d.%s.json", MetadataDir, r.snapshot.Signed.Meta[name].Version, role))
		}
	}
	return out, nil
}
