package metadata

import (
	"context"
	"fmt"
)

// Group returns group g's policy from the trusted metadata: found the way
// TUF resolves the target groups/g/policy, its role loaded and verified
// (signatures to the delegation's threshold, version pinned by the
// snapshot, expiry) when first asked for after a refresh, and its custom
// field checked against the signed hashes. An unknown group wraps
// ErrNotFound; a bad role ErrSignature, ErrExpired, ErrHashMismatch or
// ErrMalformed, and costs that group alone.
func (c *Client) Group(ctx context.Context, g string) (*GroupInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	var gi *GroupInfo
	err := c.retryStale(ctx, func() (err error) {
		gi, err = groupInfo(c.getter(ctx), g)
		return err
	})
	return gi, err
}

// Groups lists every group with a signed policy that the trusted metadata
// lets its role sign, sorted by name. A group whose role does not verify
// is an error.
func (c *Client) Groups(ctx context.Context) ([]GroupInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	var out []GroupInfo
	err := c.retryStale(ctx, func() error {
		out = nil
		names, err := groupNames(c.getter(ctx))
		if err != nil {
			return err
		}
		for _, g := range names {
			gi, err := groupInfo(c.getter(ctx), g)
			if err != nil {
				return err
			}
			out = append(out, *gi)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return out, nil
}

// ResolveSet resolves several references together into one closure (see
// ResolveClosure), as if one package depended on each of them: one
// version per name, the newest that satisfies every constraint on it
// (two references to one name must both hold). It returns the members,
// dependencies before dependents, with verified manifests. An empty list
// gives an empty closure.
func (c *Client) ResolveSet(ctx context.Context, refs []string) ([]*Resolved, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	deps := make([]Dependency, 0, len(refs))
	for _, s := range refs {
		r, err := ParseRef(s)
		if err != nil {
			return nil, fmt.Errorf("resolve set: %w", err)
		}
		rel := Relation{Name: r.Name, Constraint: r.Constraint}
		if r.Version != "" {
			if rel.Constraint, err = ParseConstraint("=" + r.Version); err != nil {
				return nil, fmt.Errorf("resolve set: %s: %w", s, err)
			}
		}
		deps = append(deps, Dependency{Alternatives: []Relation{rel}})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	var order []*pkgEntry
	if err := c.retryStale(ctx, func() (err error) {
		root := &pkgEntry{info: PackageInfo{Name: setRootName}}
		order, err = c.planFrom(ctx, root, deps)
		return err
	}); err != nil {
		return nil, fmt.Errorf("resolve set: %w", err)
	}
	out := make([]*Resolved, 0, len(order))
	for _, e := range order[1:] {
		r, err := c.fetchManifest(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("resolve set: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// setRootName names the stand-in root of ResolveSet: not a package name,
// so no package can be taken for it.
const setRootName = "<set>"

// CheckTimestamp checks a candidate timestamp.json (an announced one)
// against the trusted metadata, at the current time: signed by the
// trusted root's timestamp keys, newer than the trusted timestamp (the
// same version or an older one is ErrRollback) and not naming an older
// snapshot, not expired. It returns its version. Before the first
// successful refresh there is nothing to check against (ErrNotFound).
func (c *Client) CheckTimestamp(b []byte) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checkNewerTimestamp(b)
}

func (c *Client) checkNewerTimestamp(b []byte) (int64, error) {
	if c.up == nil || c.tm.Root == nil || c.tm.Timestamp == nil {
		return 0, fmt.Errorf("check timestamp: %w: no trusted metadata yet", ErrNotFound)
	}
	tm := c.tm
	tm.RefTime = c.now().UTC()
	v, err := checkTimestamp(&tm, b)
	if err != nil {
		return 0, err
	}
	if trusted := c.tm.Timestamp.Signed.Version; v == trusted {
		return 0, fmt.Errorf("timestamp: %w: version %d is the trusted one", ErrRollback, v)
	}
	return v, nil
}

// RefreshAnnounced refreshes (see Refresh) from an announced timestamp:
// ts is used instead of fetching timestamp.json (it must pass
// CheckTimestamp and be newer than the trusted one, else nothing happens
// and the error says why), and every other file, the roles loaded until
// the next refresh included, comes through f, which the caller chooses
// (peers first). Everything is checked as in Refresh.
func (c *Client) RefreshAnnounced(ctx context.Context, ts []byte, f Fetcher) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.checkNewerTimestamp(ts); err != nil {
		return fmt.Errorf("refresh from announcement: %w", err)
	}
	up, ad, tmOld, names, provs := c.up, c.ad, c.tm, c.names, c.provs
	if err := c.refreshVia(ctx, f, ts); err != nil {
		// The view trusted before stays: nothing in it was wrong.
		c.up, c.ad, c.tm, c.names, c.provs = up, ad, tmOld, names, provs
		return err
	}
	return nil
}
