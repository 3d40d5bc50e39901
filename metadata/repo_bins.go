package metadata

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// UseBins moves a repository without bins to n hash bins (see bins.go):
// every package target of top-level targets moves into its bin, targets
// delegates package paths to the new bins role after the publisher roles
// it already delegates to, and targets, the bins role, each bin, the
// snapshot and the timestamp are signed once. Publisher roles keep their
// targets. A path listed both by top-level targets and by a publisher
// whose patterns cover it was the top-level one's before and is the
// publisher's after (bins.go: the bins come last). It needs the targets, snapshot and timestamp
// keys, and refuses a repository that already has bins (ErrExists).
//
// Clients from before bins cannot resolve packages of the migrated
// repository (they hash whole target paths and find no package in the
// bins: they fail closed); upgrade clients first.
func (r *Repo) UseBins(ctx context.Context, n int) error {
	k, err := binsBitLength(n)
	if err != nil {
		return fmt.Errorf("use bins: %w", err)
	}
	unlock, err := r.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if sr := r.succinct(nil); sr != nil {
		_, have := sr.GetSuffixLen()
		return fmt.Errorf("use bins: %w: repository %s already has %d bins", ErrExists, r.dir, have)
	}
	if d := r.targets[tufmeta.TARGETS].Signed.Delegations; d != nil {
		for _, dr := range d.Roles {
			if reservedRoleName(dr.Name) {
				return fmt.Errorf("use bins: %w: delegated role %q has a name kept for bins", ErrExists, dr.Name)
			}
		}
	}
	if _, err := r.signers(tufmeta.TARGETS, r.root.Signed.Roles[tufmeta.TARGETS]); err != nil {
		return fmt.Errorf("use bins: %w", err)
	}
	tg, err := cloneMeta(r.targets[tufmeta.TARGETS])
	if err != nil {
		return err
	}
	bins := addBins(tg, r.root, k, expiry(r.now(), r.roleExpires(BinsRole)))
	roles := map[string]*tufmeta.Metadata[tufmeta.TargetsType]{tufmeta.TARGETS: tg, BinsRole: bins}
	sr := succinctOf(bins)
	for _, p := range sortedKeys(tg.Signed.Targets) {
		name, _, ok := ParseTargetPath(p)
		if !ok {
			continue
		}
		bin := binOf(sr, name)
		m := roles[bin]
		if m == nil {
			m = tufmeta.Targets(r.now().UTC())
			m.Signed.Version = 0
			m.Signed.Targets = map[string]*tufmeta.TargetFiles{}
			roles[bin] = m
		}
		m.Signed.Targets[p] = tg.Signed.Targets[p]
		delete(tg.Signed.Targets, p)
	}
	moveProvides(tg, roles, r.now().UTC())
	if err := r.commit(commitSpec{roles: roles}); err != nil {
		return fmt.Errorf("use bins: %w", err)
	}
	return nil
}

// rekeyBins follows a change of the targets keys or threshold in root nr:
// the bins are signed by the targets keys, so the delegation to the bins
// role in roles[targets] (pending), the bins role's succinct delegation
// and every bin are re-keyed and re-signed, and an old targets key keeps
// no power over any bin. Nothing happens in a repository without bins.
func (r *Repo) rekeyBins(roles map[string]*tufmeta.Metadata[tufmeta.TargetsType], nr *tufmeta.Metadata[tufmeta.RootType]) error {
	if r.succinct(nil) == nil {
		return nil
	}
	if err := r.loadAllRoles(); err != nil {
		return err
	}
	spec := nr.Signed.Roles[tufmeta.TARGETS]
	keys := map[string]*tufmeta.Key{}
	for _, id := range spec.KeyIDs {
		keys[id] = nr.Signed.Keys[id]
	}
	d := roles[tufmeta.TARGETS].Signed.Delegations
	for i := range d.Roles {
		if d.Roles[i].Name == BinsRole {
			d.Roles[i].KeyIDs, d.Roles[i].Threshold = slices.Clone(spec.KeyIDs), spec.Threshold
		}
	}
	maps.Copy(d.Keys, keys)
	pruneDelegationKeys(d)
	bins, err := cloneMeta(r.targets[BinsRole])
	if err != nil {
		return err
	}
	bd := bins.Signed.Delegations
	bd.Keys = maps.Clone(keys)
	bd.SuccinctRoles.KeyIDs, bd.SuccinctRoles.Threshold = slices.Clone(spec.KeyIDs), spec.Threshold
	roles[BinsRole] = bins
	for _, role := range r.snapshotRoles() {
		if !bd.SuccinctRoles.IsDelegatedRole(role) {
			continue
		}
		m, err := cloneMeta(r.targets[role])
		if err != nil {
			return err
		}
		roles[role] = m
	}
	return nil
}

// moveProvides moves the provides index of top-level targets tg into the
// bins (roles[BinsRole] delegates to them): each name's entry goes to the
// bin of that name, where a client looks for it (provides.go).
func moveProvides(tg *tufmeta.Metadata[tufmeta.TargetsType], roles map[string]*tufmeta.Metadata[tufmeta.TargetsType], now time.Time) {
	idx := roleProvides(tg)
	if len(idx) == 0 {
		return
	}
	sr := succinctOf(roles[BinsRole])
	for _, name := range sortedKeys(idx) {
		bin := binOf(sr, name)
		m := roles[bin]
		if m == nil {
			m = tufmeta.Targets(now)
			m.Signed.Version = 0
			m.Signed.Targets = map[string]*tufmeta.TargetFiles{}
			roles[bin] = m
		}
		for _, p := range idx[name] {
			addProvider(m, name, p)
		}
	}
	delete(tg.Signed.UnrecognizedFields, providesField)
}
