package metadata

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// errRoleGone: the version of a delegated role the trusted snapshot names
// is no longer in the repository (pruned after a newer snapshot replaced
// it). The client refreshes and tries again once.
var errRoleGone = errors.New("role version no longer published")

// loadRole returns the verified metadata of delegated role, delegated by
// parent (already loaded), or nil if the trusted snapshot does not list
// it. A copy kept in the client's directory is used when it verifies
// against the snapshot (the version the snapshot names, signed by the
// parent's keys, not expired); otherwise the version the snapshot names is
// fetched, verified and kept. So a role is downloaded once per version.
func (c *Client) loadRole(ctx context.Context, role, parent string) (*tufmeta.Metadata[tufmeta.TargetsType], error) {
	tm := c.tm
	if m, ok := tm.Targets[role]; ok {
		return m, nil
	}
	mf, ok := tm.Snapshot.Signed.Meta[role+".json"]
	if !ok {
		return nil, nil
	}
	if _, ok := tm.Targets[parent]; !ok && parent != tufmeta.ROOT {
		return nil, fmt.Errorf("role %s: %w: its delegator %s is not loaded", role, ErrNotFound, parent)
	}
	n := mf.Length
	if n == 0 {
		n = c.cfg.MaxMetadataSize
	}
	data, err := c.fetchDelegated(ctx, &tm, role, parent, mf, n)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("role %s version %d: %w: %w", role, mf.Version, errRoleGone, err)
	}
	if err != nil {
		return nil, mapTUFError("role "+role, err)
	}
	m, err := tm.UpdateDelegatedTargets(data, role, parent)
	if err != nil {
		return nil, mapTUFError("role "+role, err)
	}
	c.keepDelegated(role, data)
	return m, nil
}

// getter returns a roleGetter loading roles through loadRole.
func (c *Client) getter(ctx context.Context) roleGetter {
	return func(role, parent string) (*tufmeta.Metadata[tufmeta.TargetsType], error) {
		if role == tufmeta.TARGETS {
			return c.tm.Targets[tufmeta.TARGETS], nil
		}
		return c.loadRole(ctx, role, parent)
	}
}

// loadDelegations verifies and loads every standard delegated role
// reachable from top-level targets (breadth first): publisher roles and
// the bins role, few and small, so that Refresh reports a bad one. Bins
// are loaded when a name in them is looked up (entries) or everything is
// listed (loadAllRoles); group roles when one of their groups is asked
// for (Group), so that a bad group policy costs that group alone.
func (c *Client) loadDelegations(ctx context.Context) error {
	type edge struct{ role, parent string }
	visited := map[string]bool{tufmeta.TARGETS: true}
	var queue []edge
	push := func(parent string) {
		if m := c.tm.Targets[parent]; m != nil && m.Signed.Delegations != nil {
			for i, dr := range m.Signed.Delegations.Roles {
				if isGroupRole(&m.Signed.Delegations.Roles[i]) {
					continue // loaded when one of its groups is asked for
				}
				queue = append(queue, edge{dr.Name, parent})
			}
		}
	}
	push(tufmeta.TARGETS)
	for len(queue) > 0 && len(visited) < maxWalkRoles {
		e := queue[0]
		queue = queue[1:]
		if visited[e.role] {
			continue
		}
		visited[e.role] = true
		m, err := c.loadRole(ctx, e.role, e.parent)
		if err != nil {
			return fmt.Errorf("refresh metadata: %w", err)
		}
		if m != nil {
			push(e.role)
		}
	}
	return nil
}

// loadAllRoles loads every role loadDelegations does plus every bin the
// snapshot lists, for listing all packages.
func (c *Client) loadAllRoles(ctx context.Context) error {
	if err := c.loadDelegations(ctx); err != nil {
		return err
	}
	var parents []string
	for role, m := range c.tm.Targets {
		if succinctOf(m) != nil {
			parents = append(parents, role)
		}
	}
	slices.Sort(parents)
	for _, parent := range parents {
		sr := succinctOf(c.tm.Targets[parent])
		for name := range c.tm.Snapshot.Signed.Meta {
			role, ok := strings.CutSuffix(name, ".json")
			if !ok || !sr.IsDelegatedRole(role) {
				continue
			}
			if _, err := c.loadRole(ctx, role, parent); err != nil {
				return err
			}
		}
	}
	return nil
}

// entries returns the visible versions of name (see targetsOfName),
// loading the roles that may sign it; cached until the next refresh.
func (c *Client) entries(ctx context.Context, name string) ([]*pkgEntry, error) {
	if es, ok := c.names[name]; ok {
		return es, nil
	}
	vts, err := targetsOfName(c.getter(ctx), name)
	if err != nil {
		return nil, err
	}
	es := make([]*pkgEntry, 0, len(vts))
	for _, vt := range vts {
		_, version, _ := ParseTargetPath(vt.path)
		e := &pkgEntry{target: vt.tf}
		e.info, e.err = packageInfo(vt.path, vt.tf)
		e.info.Name, e.info.Version, e.info.Role = name, version, vt.role
		if e.info.Scheme == "" {
			e.info.Scheme = SchemeSemver
		}
		e.ver, _ = ParseVersion(e.info.Scheme, version)
		if e.err == nil {
			e.provides, _, e.err = ParseProvides(e.info.Scheme, e.info.Provides)
		}
		es = append(es, e)
	}
	if c.names == nil {
		c.names = map[string][]*pkgEntry{}
	}
	c.names[name] = es
	return es, nil
}

// retryStale runs fn and, if it failed because a role version the trusted
// snapshot names is gone from the repository, refreshes once and runs it
// again.
func (c *Client) retryStale(ctx context.Context, fn func() error) error {
	err := fn()
	if !errors.Is(err, errRoleGone) {
		return err
	}
	if rerr := c.refreshLocked(ctx); rerr != nil {
		return rerr
	}
	return fn()
}

// providers returns the versions of the packages that provide name under
// the trust rule of provides.go: listed by a provides index of a role that
// may sign name, and saying so in their own signed target. Sorted by
// provider name, then as entries lists them; cached until the next
// refresh.
func (c *Client) providers(ctx context.Context, name string) ([]*pkgEntry, error) {
	names, ok := c.provs[name]
	if !ok {
		var err error
		if names, err = providerNames(c.getter(ctx), name); err != nil {
			return nil, err
		}
		if c.provs == nil {
			c.provs = map[string][]string{}
		}
		c.provs[name] = names
	}
	var out []*pkgEntry
	for _, pn := range names {
		if pn == name {
			continue
		}
		es, err := c.entries(ctx, pn)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			if _, ok := e.provision(Relation{Name: name}); ok && e.err == nil {
				out = append(out, e)
			}
		}
	}
	return out, nil
}
