package metadata

import (
	"context"
	"fmt"

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
	if err := r.commit(commitSpec{roles: roles}); err != nil {
		return fmt.Errorf("use bins: %w", err)
	}
	return nil
}
