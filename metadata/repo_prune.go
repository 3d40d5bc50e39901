package metadata

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// DefaultPruneKeep is how long Prune keeps content (a manifest and the
// chunks it names) after the last metadata Prune keeps stopped naming it.
// A client that resolved a package version shortly before it was replaced
// or removed may still be downloading its chunks, and peers may ask for
// them; an hour is PEP 458's example of how long obsoleted files are worth
// keeping.
const DefaultPruneKeep = time.Hour

// DefaultPruneKeepSnapshots is how many superseded snapshots Prune keeps
// besides the current one, with every role version they name.
//
// A TUF client always updates to the newest timestamp, snapshot and
// roles: it needs an older role version only while one update is in
// flight (it read a timestamp naming snapshot N and is loading N and the
// roles N names), or later for a hash bin it loads lazily from the
// snapshot it holds, and then it refreshes and retries once (errRoleGone).
// What can catch an update in flight is a publish, not the passing of
// time: only a publish supersedes a snapshot. So the rule is a count; two
// generations let two publishes land during one client's few round trips
// without costing it the retry. No time-based grace is kept on top: it
// would keep every snapshot of a burst of publishes (a script adding
// packages one by one), which is exactly when the metadata must not grow
// with the number of publishes, and a client it would have spared
// recovers by its retry. A cache that serves timestamp.json for a while
// after a newer one is published needs as many generations as
// publishes happen in that while.
const DefaultPruneKeepSnapshots = 2

// PruneOptions says what Prune keeps.
type PruneOptions struct {
	// KeepSnapshots is how many superseded snapshots are kept besides the
	// current one (the newest ones), with every role version they name,
	// whatever their age; 0 keeps the current snapshot only.
	KeepSnapshots int
	// Keep is how long a manifest and its chunks stay after the last kept
	// metadata stopped naming it (the prune that deleted that metadata);
	// 0 deletes such content at once.
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
	Retired     int   // manifests whose last naming metadata this prune deletes
	InWindow    int   // manifests no kept metadata names, kept for Keep
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
// Metadata: kept are the current snapshot and the opts.KeepSnapshots
// newest snapshots it superseded, every role version they name, every root
// version (a client walks the root chain from the one it trusts),
// timestamp.json and root.json (see DefaultPruneKeepSnapshots).
//
// Content: a manifest, and every chunk it names, stays while a target of a
// kept role version names it, and for opts.Keep after that stopped (see
// DefaultPruneKeep). When Prune deletes the last metadata naming a
// manifest it records the time in the repository's journal of retired
// content (stork-retired.json), so that the window outlives the metadata;
// an entry leaves the journal when its window ends (its content goes) or
// kept metadata names the manifest again. A manifest no metadata ever
// named and not in the journal (left by an interrupted publish) goes at
// once.
//
// Files the repository did not write (no N.role.json or CID name) are
// left alone; leftovers of interrupted writes (.tmp-*) go. Everything is
// decided before anything is deleted, under the repository lock, so a
// publisher never races it; a kept manifest (named, or within its window)
// that cannot be read, or a role version to delete that cannot be read,
// stops the prune before it deletes anything. The journal is written
// before the first deletion, so a prune cut short never loses a window.
func (r *Repo) Prune(ctx context.Context, opts PruneOptions) (*PruneResult, error) {
	if opts.KeepSnapshots < 0 || opts.Keep < 0 {
		return nil, fmt.Errorf("prune: keep %d snapshots, content for %s: must not be negative", opts.KeepSnapshots, opts.Keep)
	}
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
	keepRoles, nsnap, err := r.keptRoleVersions(files, opts.KeepSnapshots)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	res := &PruneResult{Snapshots: nsnap}
	var doomed []string
	var doomedRoles []roleFile
	for _, f := range files {
		p := filepath.Join(mdDir, f.name)
		if f.role == tufmeta.ROOT || keepRoles[f.role][f.version] {
			res.KeptBytes += fileSize(p)
			continue
		}
		doomed = append(doomed, p)
		doomedRoles = append(doomedRoles, f)
		res.Metadata++
	}
	for _, t := range temps {
		doomed = append(doomed, filepath.Join(mdDir, t))
		res.Temporary++
	}
	tornJournals, _ := filepath.Glob(filepath.Join(r.dir, ".tmp-"+retiredFile+"-*"))
	doomed = append(doomed, tornJournals...)
	res.Temporary += len(tornJournals)
	plan, err := r.planContent(ctx, keepRoles, doomedRoles, opts.Keep, res)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	doomed = append(doomed, plan.doomed...)
	for _, p := range doomed {
		res.Bytes += fileSize(p)
	}
	if opts.DryRun {
		return res, nil
	}
	if err := plan.saveJournal(r.dir); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	for _, p := range doomed {
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
// (snapshot versions under "snapshot"), and how many snapshots are kept:
// the current one and the keepSnaps newest older ones on disk. A snapshot
// newer than the current one was written by an interrupted commit and
// never named; it is not kept.
func (r *Repo) keptRoleVersions(files []roleFile, keepSnaps int) (map[string]map[int64]bool, int, error) {
	current := r.snapshot.Signed.Version
	var snaps []int64
	for _, f := range files {
		if f.role == tufmeta.SNAPSHOT && f.version <= current {
			snaps = append(snaps, f.version)
		}
	}
	slices.Sort(snaps)
	slices.Reverse(snaps)
	if len(snaps) == 0 || snaps[0] != current {
		return nil, 0, fmt.Errorf("%w: current snapshot %d.snapshot.json missing", ErrNotFound, current)
	}
	snaps = snaps[:min(len(snaps), keepSnaps+1)]
	kept := map[string]map[int64]bool{}
	mark := func(role string, v int64) {
		if kept[role] == nil {
			kept[role] = map[int64]bool{}
		}
		kept[role][v] = true
	}
	for _, v := range snaps {
		s, err := loadRole[tufmeta.SnapshotType](rolePath(r.dir, v, tufmeta.SNAPSHOT))
		if err != nil {
			return nil, 0, err
		}
		mark(tufmeta.SNAPSHOT, v)
		for name, mf := range s.Signed.Meta {
			if role, ok := strings.CutSuffix(name, ".json"); ok {
				mark(role, mf.Version)
			}
		}
	}
	return kept, len(snaps), nil
}

// contentPlan is what Prune decided about content: the journal as it
// must be written, and the manifests and chunks to delete.
type contentPlan struct {
	journal *retiredJournal
	read    []byte // the journal as it was on disk, nil if none
	doomed  []string
}

// planContent decides which manifests and chunks stay (see Prune) and
// updates the journal of retired content accordingly, in memory.
func (r *Repo) planContent(ctx context.Context, keepRoles map[string]map[int64]bool, doomedRoles []roleFile, keep time.Duration, res *PruneResult) (*contentPlan, error) {
	live, err := r.liveManifests(keepRoles)
	if err != nil {
		return nil, err
	}
	res.ContentSeen = len(live)
	retired, err := r.retiredManifests(doomedRoles, live)
	if err != nil {
		return nil, err
	}
	res.Retired = len(retired)
	j, read, err := loadRetired(r.dir)
	if err != nil {
		return nil, err
	}
	if err := j.update(r.now(), keep, live, retired); err != nil {
		return nil, err
	}
	chunks := map[string]bool{}
	if _, err := r.manifestChunks(ctx, live, chunks, false); err != nil {
		return nil, err
	}
	window := map[string]bool{}
	for c := range j.Manifests {
		window[c] = true
	}
	gone, err := r.manifestChunks(ctx, window, chunks, true)
	if err != nil {
		return nil, err
	}
	for _, c := range gone {
		delete(j.Manifests, c) // nothing left to keep
		delete(window, c)
	}
	res.InWindow = len(window)
	maps.Copy(window, live)
	doomed, err := r.doomedContent(window, chunks, res)
	if err != nil {
		return nil, err
	}
	return &contentPlan{journal: j, read: read, doomed: doomed}, nil
}

// saveJournal writes the journal if it changed; an empty journal is not
// created where there was none.
func (p *contentPlan) saveJournal(dir string) error {
	b, err := p.journal.encode()
	if err != nil {
		return err
	}
	if bytes.Equal(b, p.read) || (p.read == nil && len(p.journal.Manifests) == 0) {
		return nil
	}
	if err := writeFileAtomic(filepath.Join(dir, retiredFile), b, 0o644); err != nil {
		return err
	}
	syncDir(dir) // durable before the deletions it accounts for
	return nil
}

// liveManifests returns the manifests the targets of kept role versions
// name. A role version only an older kept snapshot names may be gone
// already (an earlier prune kept fewer snapshots); the current snapshot's
// must be there.
func (r *Repo) liveManifests(keepRoles map[string]map[int64]bool) (map[string]bool, error) {
	manifests := map[string]bool{}
	for role, vs := range keepRoles {
		if role == tufmeta.SNAPSHOT {
			continue
		}
		for v := range vs {
			err := addTargetManifests(r.dir, role, v, manifests)
			if cur := r.snapshot.Signed.Meta[role+".json"]; errors.Is(err, fs.ErrNotExist) && (cur == nil || cur.Version != v) {
				continue
			}
			if err != nil {
				return nil, err
			}
		}
	}
	return manifests, nil
}

// retiredManifests returns the manifests that targets of doomed role
// versions name and no kept one does: deleting those versions retires
// them. A role version newer than the one the current snapshot names was
// written by an interrupted commit and never named, so retires nothing.
func (r *Repo) retiredManifests(doomedRoles []roleFile, live map[string]bool) (map[string]bool, error) {
	named := map[string]bool{}
	for _, f := range doomedRoles {
		switch f.role {
		case tufmeta.ROOT, tufmeta.SNAPSHOT, tufmeta.TIMESTAMP:
			continue
		}
		if cur := r.snapshot.Signed.Meta[f.role+".json"]; cur != nil && f.version > cur.Version {
			continue
		}
		if err := addTargetManifests(r.dir, f.role, f.version, named); err != nil {
			return nil, err
		}
	}
	for c := range live {
		delete(named, c)
	}
	return named, nil
}

// addTargetManifests adds the manifest CIDs the targets of one role
// version name to into.
func addTargetManifests(dir, role string, v int64, into map[string]bool) error {
	m, err := loadRole[tufmeta.TargetsType](rolePath(dir, v, role))
	if err != nil {
		return err
	}
	for p, tf := range m.Signed.Targets {
		var c targetCustom
		if tf.Custom == nil || json.Unmarshal(*tf.Custom, &c) != nil || c.Manifest == "" {
			return fmt.Errorf("role %s version %d: target %s: %w: no manifest named", role, v, p, ErrMalformed)
		}
		into[c.Manifest] = true
	}
	return nil
}

// manifestChunks reads each manifest and adds the chunks it names to
// chunks. A manifest that cannot be read is an error, unless missingOK
// and it does not exist: such manifests are returned.
func (r *Repo) manifestChunks(ctx context.Context, manifests, chunks map[string]bool, missingOK bool) ([]string, error) {
	lim := Limits{MaxFileSize: 1 << 62, MaxTotalSize: 1 << 62, MaxEntries: 1 << 40, MaxPathLen: 1 << 30, MaxManifestSize: 1 << 40}
	var missing []string
	for mc := range manifests {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(filepath.Join(r.dir, ManifestsDir, mc))
		if missingOK && errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, mc)
			continue
		}
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
	return missing, nil
}

// doomedContent returns the manifests and chunks not kept, and temporary
// files in their directories.
func (r *Repo) doomedContent(manifests, chunks map[string]bool, res *PruneResult) ([]string, error) {
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
		TimestampPath,
		fmt.Sprintf("%s/%d.%s.json", MetadataDir, r.snapshot.Signed.Version, tufmeta.SNAPSHOT),
	}
	for _, name := range sortedKeys(r.snapshot.Signed.Meta) {
		if role, ok := strings.CutSuffix(name, ".json"); ok {
			out = append(out, fmt.Sprintf("%s/%d.%s.json", MetadataDir, r.snapshot.Signed.Meta[name].Version, role))
		}
	}
	return out, nil
}
