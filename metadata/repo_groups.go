package metadata

import (
	"context"
	"errors"
	"fmt"
	"slices"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// GroupResult reports what SetGroup did.
type GroupResult struct {
	GroupInfo
	// Unchanged: the change left the policy as it was; nothing was signed.
	Unchanged bool `json:"unchanged,omitempty"`
	// Missing lists the required names no published package has (a
	// warning: the policy is signed all the same, and hosts report the
	// name as unresolved until it is published).
	Missing []string `json:"missing,omitempty"`
}

// SetGroup changes group g's policy and signs it with the role that owns
// groups/g/policy: the delegated role covering that path (stork repo
// delegate --group), whose keys the caller must hold, or top-level
// targets if no delegation covers it. The snapshot and timestamp are
// signed too (the caller holds their keys, as a publisher does for Add).
// A group maintainer's key thus changes its groups and nothing else.
func (r *Repo) SetGroup(ctx context.Context, g string, ch GroupChange) (*GroupResult, error) {
	if err := ValidateGroupName(g); err != nil {
		return nil, fmt.Errorf("set group: %w", err)
	}
	unlock, err := r.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	role, err := r.groupSignRole(g)
	if err != nil {
		return nil, err
	}
	if err := r.canCommit(); err != nil {
		return nil, fmt.Errorf("set group %s: %w", g, err)
	}
	tm, err := r.roleForUpdate(role)
	if err != nil {
		return nil, fmt.Errorf("set group %s: %w", g, err)
	}
	var old GroupPolicy
	if tf, ok := tm.Signed.Targets[GroupTargetPath(g)]; ok {
		if old, err = policyOfTarget(g, tf); err != nil {
			return nil, fmt.Errorf("set group %s: the signed policy: %w", g, err)
		}
	}
	p, err := old.Apply(ch)
	if err != nil {
		return nil, fmt.Errorf("set group %s: %w", g, err)
	}
	res := &GroupResult{GroupInfo: GroupInfo{Name: g, Policy: p, Role: role, Version: tm.Signed.Version}}
	if res.Missing, err = r.unpublished(p); err != nil {
		return nil, fmt.Errorf("set group %s: %w", g, err)
	}
	if slices.Equal(p.Require, old.Require) && slices.Equal(p.Forbid, old.Forbid) && tm.Signed.Version > 0 {
		if _, ok := tm.Signed.Targets[GroupTargetPath(g)]; ok {
			res.Unchanged = true
			return res, nil
		}
	}
	tf, err := groupTarget(g, p)
	if err != nil {
		return nil, err
	}
	if tm.Signed.Targets == nil {
		tm.Signed.Targets = map[string]*tufmeta.TargetFiles{}
	}
	tm.Signed.Targets[tf.Path] = tf
	if err := r.commit(commitSpec{roles: map[string]*tufmeta.Metadata[tufmeta.TargetsType]{role: tm}}); err != nil {
		return nil, fmt.Errorf("set group %s: %w", g, err)
	}
	res.Version = tm.Signed.Version
	return res, nil
}

// groupSignRole picks the role that signs group g's policy: the first
// delegation of top-level targets covering its path (the caller must hold
// its keys), else top-level targets.
func (r *Repo) groupSignRole(g string) (string, error) {
	p := GroupTargetPath(g)
	if d := r.targets[tufmeta.TARGETS].Signed.Delegations; d != nil {
		for _, dr := range d.Roles {
			if dr.Name == BinsRole {
				continue
			}
			if ok, _ := dr.IsDelegatedPath(p); !ok {
				continue
			}
			if _, err := r.signersFor(dr.Name, dr.KeyIDs, dr.Threshold); err != nil {
				return "", fmt.Errorf("set group %s: group delegated to role %s: %w", g, dr.Name, err)
			}
			return dr.Name, nil
		}
	}
	if _, err := r.signers(tufmeta.TARGETS, r.root.Signed.Roles[tufmeta.TARGETS]); err != nil {
		return "", fmt.Errorf("set group %s: no delegation covers it and %w", g, err)
	}
	return tufmeta.TARGETS, nil
}

// unpublished lists the names p requires that no role publishes.
func (r *Repo) unpublished(p GroupPolicy) ([]string, error) {
	refs, err := p.Refs()
	if err != nil {
		return nil, err
	}
	get := r.getter()
	var out []string
	for _, ref := range refs {
		vts, err := targetsOfName(get, ref.Name)
		if err != nil {
			return nil, err
		}
		if len(vts) == 0 {
			if ps, err := providerNames(get, ref.Name); err != nil || len(ps) == 0 {
				out = append(out, ref.Name)
			}
		}
	}
	return out, nil
}

// Group returns group g's policy as a client resolving it sees it.
func (r *Repo) Group(g string) (*GroupInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("repository %s: %w", r.dir, err)
	}
	return groupInfo(r.getter(), g)
}

// Groups lists every group that has a signed policy, sorted by name.
func (r *Repo) Groups() ([]GroupInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("repository %s: %w", r.dir, err)
	}
	names, err := groupNames(r.getter())
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", r.dir, err)
	}
	out := make([]GroupInfo, 0, len(names))
	for _, g := range names {
		gi, err := groupInfo(r.getter(), g)
		if errors.Is(err, ErrNotFound) {
			continue // signed by a role the delegations do not let sign it
		}
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", r.dir, err)
		}
		out = append(out, *gi)
	}
	return out, nil
}

// getter reads roles from the repository as they are on disk.
func (r *Repo) getter() roleGetter {
	return func(role, _ string) (*tufmeta.Metadata[tufmeta.TargetsType], error) { return r.role(role) }
}
