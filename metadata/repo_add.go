package metadata

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"
	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// AddOptions says what Add publishes.
type AddOptions struct {
	// Name: [a-z0-9][a-z0-9+._-]*, at most 128 bytes.
	Name string
	// Version is published exactly as given; it must parse under Scheme.
	Version string
	// Scheme orders Version and is recorded in the signed target; ""
	// means SchemeSemver. Every version of one name uses one scheme.
	Scheme Scheme
	// Source is the path passed to Import (directory, archive or file).
	Source string
	// Depends lists dependencies (see ParseDependency): "libfoo>=1.2",
	// "bar", "baz=2.0.1", "qux>=1,<2", "libc6>= 2.36", "a | b>>1".
	// Validated at add time; signed with the target.
	Depends []string
	// Provides lists the names the package provides besides its own (see
	// ParseProvides): "awk", "awk=1:5.2.1-2". Signed with the target, and
	// each name indexed in a role that may sign it (see provides.go).
	Provides []string
	// Import configures the import (chunk size, limits, source kind).
	Import ImportOptions
}

// AddResult reports what Add did.
type AddResult struct {
	Name, Version string
	Scheme        Scheme
	ManifestCID   cid.Cid
	Size          int64    // bytes of file content
	Chunks        int      // chunks of the tree (with repeats)
	NewChunks     int      // chunks written that the repository did not have
	Unchanged     bool     // NAME@VERSION (or a version equal to it) was already published with the same content
	Depends       []string // the signed dependencies, canonical
	// Missing lists the dependencies none of whose alternatives names a
	// package the repository publishes or a name a published package
	// provides (this batch included). A warning:
	// the package is published all the same.
	Missing []string
	// Provides lists the signed provided names, canonical.
	Provides []string
	// NotIndexed lists the provided names that no role the caller holds
	// keys for may sign: a client does not take the package as their
	// provider (see provides.go). A warning.
	NotIndexed []string
	Role       string
}

// chunkWriter stores imported chunks under DIR/chunks, skipping existing ones.
type chunkWriter struct {
	dir        string
	total, new int
}

func (w *chunkWriter) PutChunk(c cid.Cid, data []byte) error {
	w.total++
	if err := VerifyCID(c, data); err != nil {
		return err
	}
	p := filepath.Join(w.dir, c.String())
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := writeFileAtomic(p, data, 0o644); err != nil {
		return err
	}
	w.new++
	return nil
}

// publishRole picks the targets role that signs package name: a
// delegated publisher role that covers path and whose keys the caller
// holds, else name's bin in a binned repository (top-level targets in one
// without bins) if the caller holds its keys, else ErrMissingKey.
func (r *Repo) publishRole(name, path string) (string, error) {
	var covering []string
	if d := r.targets[tufmeta.TARGETS].Signed.Delegations; d != nil {
		for _, dr := range d.Roles {
			if dr.Name == BinsRole {
				continue
			}
			ok, _ := dr.IsDelegatedPath(path)
			if !ok {
				continue
			}
			covering = append(covering, dr.Name)
			if _, err := r.signersFor(dr.Name, dr.KeyIDs, dr.Threshold); err == nil {
				return dr.Name, nil
			}
		}
	}
	own, what := tufmeta.TARGETS, tufmeta.TARGETS
	if sr := r.succinct(nil); sr != nil {
		own = binOf(sr, name)
		what = fmt.Sprintf("%s (its bin %s)", tufmeta.TARGETS, own)
	}
	if _, err := r.roleSigners(own, nil, r.root); err == nil {
		return own, nil
	}
	if len(covering) == 0 {
		return "", fmt.Errorf("publish %s: %w: no key for role %s, and no delegated role you hold keys for covers this name", path, ErrMissingKey, what)
	}
	return "", fmt.Errorf("publish %s: %w: no key for role %s nor for delegated role %s", path, ErrMissingKey, what, strings.Join(covering, ", "))
}

// Add publishes one package (see AddMany).
func (r *Repo) Add(ctx context.Context, opts AddOptions) (*AddResult, error) {
	res, err := r.AddMany(ctx, []AddOptions{opts})
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// AddMany imports each package's Source, stores its chunks and manifest,
// and publishes packages/NAME/VERSION signed by the role that covers it
// (see Delegate), all in one commit: each changed targets role, the
// snapshot and the timestamp are signed once for the whole list. On error
// nothing is published (chunks and manifests already written stay,
// unreferenced, and a retry reuses them).
//
// Adding NAME@VERSION again with the same content and dependencies, or a
// version equal to a published one under the scheme ("1.2" for "1.2.0"),
// changes nothing (Unchanged); with other content it fails with
// ErrExists, as does a version whose scheme differs from the one the
// name's published versions use.
func (r *Repo) AddMany(ctx context.Context, list []AddOptions) ([]*AddResult, error) {
	unlock, err := r.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	b := &addBatch{r: r, roles: map[string]*tufmeta.Metadata[tufmeta.TargetsType]{}}
	out := make([]*AddResult, 0, len(list))
	for _, opts := range list {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res, err := b.add(ctx, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	if err := b.markMissing(out); err != nil {
		return nil, fmt.Errorf("add: %w", err)
	}
	if len(b.roles) == 0 {
		return out, nil
	}
	if err := r.commit(commitSpec{roles: b.roles}); err != nil {
		return nil, fmt.Errorf("add: %w", err)
	}
	return out, nil
}

// addBatch is an AddMany in progress: roles holds the changed targets
// roles, not yet signed; lookups see them over the repository's.
type addBatch struct {
	r     *Repo
	roles map[string]*tufmeta.Metadata[tufmeta.TargetsType]
	// names indexes, per role, the target paths of each package name, so
	// that checking a name costs the versions of that name, not the size
	// of the roles that may sign it.
	names map[string]map[string][]string
}

// get returns a role as the batch sees it (see roleGetter).
func (b *addBatch) get(role, _ string) (*tufmeta.Metadata[tufmeta.TargetsType], error) {
	if m, ok := b.roles[role]; ok {
		return m, nil
	}
	return b.r.role(role)
}

// nameIndex returns the paths by package name of role m, built once.
func (b *addBatch) nameIndex(role string, m *tufmeta.Metadata[tufmeta.TargetsType]) map[string][]string {
	if idx, ok := b.names[role]; ok {
		return idx
	}
	idx := map[string][]string{}
	for p := range m.Signed.Targets {
		if n, _, ok := ParseTargetPath(p); ok {
			idx[n] = append(idx[n], p)
		}
	}
	for _, ps := range idx {
		slices.Sort(ps)
	}
	if b.names == nil {
		b.names = map[string]map[string][]string{}
	}
	b.names[role] = idx
	return idx
}

// eachTargetOf calls fn for every target of name in every role that may
// sign it (see rolesForName), the batch's changes included, in walk
// order; fn returns false to stop.
func (b *addBatch) eachTargetOf(name string, fn func(role, path string, tf *tufmeta.TargetFiles) bool) error {
	roles, err := rolesForName(b.get, name)
	if err != nil {
		return err
	}
	for _, rl := range roles {
		for _, p := range b.nameIndex(rl.name, rl.m)[name] {
			if !fn(rl.name, p, rl.m.Signed.Targets[p]) {
				return nil
			}
		}
	}
	return nil
}

// add prepares one package of the batch.
func (b *addBatch) add(ctx context.Context, opts AddOptions) (*AddResult, error) {
	if err := ValidateName(opts.Name); err != nil {
		return nil, fmt.Errorf("add: %w", err)
	}
	ref := opts.Name + "@" + opts.Version
	scheme, err := ParseScheme(string(opts.Scheme))
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", ref, err)
	}
	v, err := ParseVersion(scheme, opts.Version)
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", opts.Name, err)
	}
	_, depends, err := ParseDependencies(opts.Name, opts.Depends)
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", ref, err)
	}
	_, provides, err := ParseProvides(scheme, opts.Provides)
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", ref, err)
	}
	tpath := TargetPath(opts.Name, opts.Version)
	role, err := b.r.publishRole(opts.Name, tpath)
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", ref, err)
	}
	// Check every key the commit needs before the import does any work.
	if err := b.r.canCommit(); err != nil {
		return nil, fmt.Errorf("add %s: %w", ref, err)
	}
	res, mb, err := b.r.importPackage(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", ref, err)
	}
	res.Scheme, res.Depends, res.Provides, res.Role = scheme, depends, provides, role
	custom, err := json.Marshal(targetCustom{Manifest: res.ManifestCID.String(), Size: res.Size, Depends: depends, Scheme: string(scheme), Provides: provides})
	if err != nil {
		return nil, err
	}
	tf := &tufmeta.TargetFiles{Length: int64(len(mb)), Hashes: targetHashes(mb), Path: tpath}
	raw := json.RawMessage(custom)
	tf.Custom = &raw

	same, err := b.published(opts.Name, v, tf)
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", ref, err)
	}
	if same != nil {
		res.Unchanged, res.Role, res.Version = true, same.role, same.version
		return res, b.indexProvides(res)
	}
	if err := writeFileAtomic(filepath.Join(b.r.dir, ManifestsDir, res.ManifestCID.String()), mb, 0o644); err != nil {
		return nil, fmt.Errorf("add %s: %w", ref, err)
	}
	tm := b.roles[role]
	if tm == nil {
		if tm, err = b.r.roleForUpdate(role); err != nil {
			return nil, fmt.Errorf("add %s: %w", ref, err)
		}
		b.roles[role] = tm
	}
	if tm.Signed.Targets == nil {
		tm.Signed.Targets = map[string]*tufmeta.TargetFiles{}
	}
	tm.Signed.Targets[tpath] = tf
	idx := b.nameIndex(role, tm)
	idx[opts.Name] = append(idx[opts.Name], tpath)
	return res, b.indexProvides(res)
}

// indexProvides lists res's package under each name it provides in the
// provides index of a role that may sign that name (indexRole); a name no
// such role can take goes to res.NotIndexed.
func (b *addBatch) indexProvides(res *AddResult) error {
	for _, s := range res.Provides {
		name, _, _ := strings.Cut(s, "=")
		role := b.r.indexRole(name)
		if role == "" {
			res.NotIndexed = append(res.NotIndexed, name)
			continue
		}
		m := b.roles[role]
		if m == nil {
			cur, err := b.r.roleForUpdate(role)
			if err != nil {
				return fmt.Errorf("add %s@%s: provides %s: %w", res.Name, res.Version, name, err)
			}
			m = cur
		}
		if addProvider(m, name, res.Name) {
			b.roles[role] = m
		}
	}
	return nil
}

// indexRole picks the role whose provides index lists the providers of
// name: a delegated publisher role whose patterns may cover name and whose
// keys the caller holds, else name's bin (top-level targets in a
// repository without bins) if the caller holds its keys; "" if none.
func (r *Repo) indexRole(name string) string {
	if d := r.targets[tufmeta.TARGETS].Signed.Delegations; d != nil {
		for i, dr := range d.Roles {
			if dr.Name == BinsRole || !mayDelegateName(&d.Roles[i], name) {
				continue
			}
			if _, err := r.signersFor(dr.Name, dr.KeyIDs, dr.Threshold); err == nil {
				return dr.Name
			}
		}
	}
	own := tufmeta.TARGETS
	if sr := r.succinct(nil); sr != nil {
		own = binOf(sr, name)
	}
	if _, err := r.roleSigners(own, nil, r.root); err != nil {
		return ""
	}
	return own
}

// importPackage imports opts.Source into the repository's chunks and
// returns the result so far and the canonical manifest bytes.
func (r *Repo) importPackage(ctx context.Context, opts AddOptions) (*AddResult, []byte, error) {
	sink := &chunkWriter{dir: filepath.Join(r.dir, ChunksDir)}
	if err := os.MkdirAll(sink.dir, 0o755); err != nil {
		return nil, nil, err
	}
	m, err := Import(ctx, opts.Source, opts.Import, sink)
	if err != nil {
		return nil, nil, fmt.Errorf("import %s: %w", opts.Source, err)
	}
	mb, err := m.Encode()
	if err != nil {
		return nil, nil, err
	}
	// Publish only what a client will accept.
	if _, err := DecodeManifest(mb, opts.Import.Limits); err != nil {
		return nil, nil, fmt.Errorf("manifest: %w", err)
	}
	return &AddResult{
		Name: opts.Name, Version: opts.Version, ManifestCID: SumCID(mb), Size: m.TotalSize(),
		Chunks: sink.total, NewChunks: sink.new,
	}, mb, nil
}

// publishedTarget is a published version found equal to one being added.
type publishedTarget struct{ role, version string }

// published checks version v of name, about to be published as tf,
// against the versions of name already published (the batch included):
// the same target, or one whose version equals v under the scheme, with
// the same content and dependencies is returned (nothing to publish);
// with other content, or under another scheme, it is ErrExists.
func (b *addBatch) published(name string, v Version, tf *tufmeta.TargetFiles) (*publishedTarget, error) {
	prefix := TargetPrefix + name + "/"
	var found *publishedTarget
	var err error
	werr := b.eachTargetOf(name, func(role, p string, old *tufmeta.TargetFiles) bool {
		pv, ok := strings.CutPrefix(p, prefix)
		if !ok || strings.Contains(pv, "/") {
			return true
		}
		var c targetCustom
		if old.Custom == nil || json.Unmarshal(*old.Custom, &c) != nil {
			if p == tf.Path {
				err = fmt.Errorf("%w: published (by role %s) with an unreadable custom field", ErrExists, role)
				return false
			}
			return true
		}
		scheme, serr := ParseScheme(c.Scheme)
		if serr != nil || scheme != v.Scheme() {
			err = fmt.Errorf("%w: %s@%s is published (by role %s) under version scheme %q, not %s; one name uses one scheme", ErrExists, name, pv, role, c.Scheme, v.Scheme())
			return false
		}
		if p != tf.Path {
			if ov, perr := ParseVersion(scheme, pv); perr != nil || ov.Compare(v) != 0 {
				return true
			}
		}
		if old.Equal(*tf) && sameCustom(*old.Custom, *tf.Custom) {
			found = &publishedTarget{role: role, version: pv}
			return false
		}
		what := "with other content or dependencies"
		if p != tf.Path {
			what = fmt.Sprintf("as %s@%s, equal under %s, %s", name, pv, scheme, what)
		}
		err = fmt.Errorf("%w: published (by role %s) %s", ErrExists, role, what)
		return false
	})
	if werr != nil {
		return nil, werr
	}
	return found, err
}

// sameCustom reports whether two custom fields describe the same package
// (a missing scheme is semver).
func sameCustom(a, b []byte) bool {
	var ca, cb targetCustom
	if json.Unmarshal(a, &ca) != nil || json.Unmarshal(b, &cb) != nil {
		return false
	}
	sa, ea := ParseScheme(ca.Scheme)
	sb, eb := ParseScheme(cb.Scheme)
	return ea == nil && eb == nil && sa == sb &&
		ca.Manifest == cb.Manifest && ca.Size == cb.Size && slices.Equal(ca.Depends, cb.Depends) &&
		slices.Equal(ca.Provides, cb.Provides)
}

// markMissing fills each result's Missing: dependencies none of whose
// alternatives names a published package or a name some package is
// indexed as providing.
func (b *addBatch) markMissing(results []*AddResult) error {
	published := map[string]bool{}
	has := func(name string) (bool, error) {
		if v, ok := published[name]; ok {
			return v, nil
		}
		found := false
		err := b.eachTargetOf(name, func(string, string, *tufmeta.TargetFiles) bool {
			found = true
			return false
		})
		if err == nil && !found {
			var ps []string
			ps, err = providerNames(b.get, name)
			found = len(ps) > 0
		}
		published[name] = found
		return found, err
	}
	for _, res := range results {
		for _, s := range res.Depends {
			d, err := ParseDependency(s)
			if err != nil {
				continue
			}
			any := false
			for _, alt := range d.Alternatives {
				ok, err := has(alt.Name)
				if err != nil {
					return err
				}
				if ok {
					any = true
					break
				}
			}
			if !any {
				res.Missing = append(res.Missing, s)
			}
		}
	}
	return nil
}
