package metadata

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// Hash bins.
//
// A binned repository keeps package targets out of top-level targets:
// targets delegates every package path (packages/*/*) to the role "bins",
// last among its delegations, and "bins" delegates succinctly (TAP 15) to
// 2^k bin roles named bin-000 … bin-NNN, signed by the targets keys.
// Publisher roles (Delegate) stay standard delegations of targets, before
// "bins": succinct delegations are terminating, so a walk that reaches the
// bins never comes back to a role delegated after them.
//
// The bin of a package is chosen by its NAME, not by its whole target
// path: every version of packages/NAME/* lives in the bin that go-tuf's
// succinct rule assigns to the path "packages/NAME" (BinKey). So resolving
// a name, whichever version, needs one bin, and a new version changes one
// bin. This is Stork's trust rule for succinct delegations: a target
// packages/NAME/VERSION is trusted from a bin only if that bin is NAME's
// bin; a target listed in any other bin is ignored. A generic TUF client,
// which hashes the whole path, would look in another bin and find nothing
// (it fails closed); only Stork's client reads binned repositories.
//
// Everything else is TUF as usual: the snapshot lists every bin that holds
// or held a package with its version (version only, no hashes, so that a
// snapshot of 1024 bins stays near 33 KB), a bin is verified against the
// keys of the succinct delegation and its version against the snapshot
// (rollback and mix-and-match are refused as for any role), and a bin not
// listed in the snapshot holds nothing.
//
// Resolution follows TUF's pre-order depth-first walk (walkTarget):
// top-level targets' own targets first, then its delegations in order
// (publishers, then "bins"), a terminating delegation ending the search
// for the path. So for a name a publisher's patterns cover, a version the
// publisher signs is found before one the targets keys put in a bin: the
// targets keys gave the publisher that name.
const (
	// BinsRole is the role that delegates to the bins.
	BinsRole = "bins"
	// binNamePrefix names bins: bin-000, bin-001, …
	binNamePrefix = "bin"
	// DefaultBins is the number of bins `stork repo init` creates: with
	// about 60,000 packages each bin holds about 60 targets (15 KB), and
	// the snapshot listing all of them about 33 KB, so a client that is
	// up to date reads under 64 KB after one package changes.
	DefaultBins = 1024
	// MaxBins bounds the bin count (the snapshot grows with it).
	MaxBins = 1 << 14
)

// BinKey is the string whose hash picks the bin of every version of name.
func BinKey(name string) string { return TargetPrefix + name }

// binsBitLength returns k for n = 2^k bins, or an error if n is not a
// power of two within [2, MaxBins].
func binsBitLength(n int) (int, error) {
	if n < 2 || n > MaxBins || n&(n-1) != 0 {
		return 0, fmt.Errorf("%w: bins %d: want a power of two from 2 to %d", ErrMalformed, n, MaxBins)
	}
	k := 0
	for 1<<k < n {
		k++
	}
	return k, nil
}

// binOf returns the bin that holds the versions of name.
func binOf(sr *tufmeta.SuccinctRoles, name string) string {
	return sr.GetRolesForTarget(BinKey(name))[0].Name
}

// succinctOf returns the succinct delegation of a role's metadata, or nil.
func succinctOf(m *tufmeta.Metadata[tufmeta.TargetsType]) *tufmeta.SuccinctRoles {
	if m == nil || m.Signed.Delegations == nil {
		return nil
	}
	return m.Signed.Delegations.SuccinctRoles
}

// reservedRoleName reports whether a publisher role may not take name:
// the bins role and every possible bin name.
func reservedRoleName(name string) bool {
	return name == BinsRole || strings.HasPrefix(name, binNamePrefix+"-")
}

// roleGetter returns the verified metadata of a targets role delegated by
// parent, or nil if the repository has not published that role (the
// snapshot does not list it): it holds nothing.
type roleGetter func(role, parent string) (*tufmeta.Metadata[tufmeta.TargetsType], error)

// maxWalkRoles bounds the roles one walk visits.
const maxWalkRoles = 1024

// mayDelegateName reports whether a standard delegation could cover some
// version of name: a path pattern packages/<name glob>/<version glob>
// whose name glob matches, or hash prefixes (which could match anything).
func mayDelegateName(dr *tufmeta.DelegatedRole, name string) bool {
	if len(dr.PathHashPrefixes) > 0 {
		return true
	}
	for _, p := range dr.Paths {
		parts := strings.Split(p, "/")
		if len(parts) != 3 {
			continue
		}
		if ok, _ := filepath.Match(parts[0], strings.TrimSuffix(TargetPrefix, "/")); !ok {
			continue
		}
		if ok, _ := filepath.Match(parts[1], name); ok {
			return true
		}
	}
	return false
}

// walkRoles visits roles in TUF's pre-order depth-first walk from
// top-level targets: each role once, at most maxWalkRoles in all, passing
// over a role get reports absent. next is called with each role met (its
// metadata set) and returns the roles it delegates to that the walk should
// visit, in order; terminating drops every role still waiting (those roles
// may not sign what the walk looks for), and stop ends the walk.
func walkRoles(get roleGetter, next func(e namedRole) (children []namedRole, terminating, stop bool)) error {
	visited := map[string]bool{}
	stack := []namedRole{{name: tufmeta.TARGETS, parent: tufmeta.ROOT}}
	for len(stack) > 0 && len(visited) < maxWalkRoles {
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[e.name] {
			continue
		}
		visited[e.name] = true
		m, err := get(e.name, e.parent)
		if err != nil {
			return err
		}
		if m == nil {
			continue
		}
		e.m = m
		children, terminating, stop := next(e)
		if stop {
			return nil
		}
		if terminating {
			stack = stack[:0]
		}
		for i := len(children) - 1; i >= 0; i-- {
			stack = append(stack, children[i])
		}
	}
	return nil
}

// rolesForName visits, depth first from top-level targets, every role that
// may sign a version of name (the bin of name for a succinct delegation)
// and returns them in visiting order.
func rolesForName(get roleGetter, name string) ([]namedRole, error) {
	var out []namedRole
	err := walkRoles(get, func(e namedRole) ([]namedRole, bool, bool) {
		out = append(out, e)
		d := e.m.Signed.Delegations
		if d == nil {
			return nil, false, false
		}
		var children []namedRole
		if d.SuccinctRoles != nil {
			children = append(children, namedRole{name: binOf(d.SuccinctRoles, name), parent: e.name})
		}
		for i := range d.Roles {
			if mayDelegateName(&d.Roles[i], name) {
				children = append(children, namedRole{name: d.Roles[i].Name, parent: e.name})
			}
		}
		return children, false, false
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// namedRole is a role met on a walk, with its delegator and metadata.
type namedRole struct {
	name, parent string
	m            *tufmeta.Metadata[tufmeta.TargetsType]
}

// walkTarget finds the target path p = packages/NAME/VERSION the way TUF
// resolves it (pre-order depth first, terminating delegations end the
// search), with Stork's bin rule for succinct delegations. It returns the
// target and the role that signs it, or nil if no role may sign it.
func walkTarget(get roleGetter, p string) (*tufmeta.TargetFiles, string, error) {
	name, _, ok := ParseTargetPath(p)
	if !ok {
		return nil, "", nil
	}
	var found *tufmeta.TargetFiles
	var role string
	err := walkRoles(get, func(e namedRole) ([]namedRole, bool, bool) {
		if tf, ok := e.m.Signed.Targets[p]; ok {
			found, role = tf, e.name
			return nil, false, true
		}
		d := e.m.Signed.Delegations
		if d == nil {
			return nil, false, false
		}
		var children []namedRole
		terminating := false
		if d.SuccinctRoles != nil {
			// Succinct roles are terminating (TAP 15).
			children = []namedRole{{name: binOf(d.SuccinctRoles, name), parent: e.name}}
			terminating = true
		}
		children, term := delegatedPath(children, e, p)
		return children, terminating || term, false
	})
	if err != nil {
		return nil, "", err
	}
	return found, role, nil
}

// delegatedPath appends to children, in order, the delegated roles of e
// whose paths cover p, up to and including the first terminating one, and
// reports whether that one was met (the walk then drops every role still
// waiting).
func delegatedPath(children []namedRole, e namedRole, p string) ([]namedRole, bool) {
	d := e.m.Signed.Delegations
	if d == nil {
		return children, false
	}
	for _, dr := range d.Roles {
		if ok, err := dr.IsDelegatedPath(p); err != nil || !ok {
			continue
		}
		children = append(children, namedRole{name: dr.Name, parent: e.name})
		if dr.Terminating {
			return children, true
		}
	}
	return children, false
}

// visibleTarget is a package target as the delegation rules let it be
// seen, and the role that signs it.
type visibleTarget struct {
	path string
	tf   *tufmeta.TargetFiles
	role string
}

// targetsOfName returns every version of name visible under the
// delegation rules, in path order.
func targetsOfName(get roleGetter, name string) ([]visibleTarget, error) {
	roles, err := rolesForName(get, name)
	if err != nil {
		return nil, err
	}
	prefix := TargetPrefix + name + "/"
	seen := map[string]bool{}
	var paths []string
	for _, r := range roles {
		for p := range r.m.Signed.Targets {
			if strings.HasPrefix(p, prefix) && !seen[p] {
				seen[p] = true
				paths = append(paths, p)
			}
		}
	}
	slices.Sort(paths)
	var out []visibleTarget
	for _, p := range paths {
		tf, role, err := walkTarget(get, p)
		if err != nil {
			return nil, err
		}
		if tf != nil {
			out = append(out, visibleTarget{path: p, tf: tf, role: role})
		}
	}
	return out, nil
}

// addBins makes top-level targets tg delegate package paths to a new bins
// role, last among its delegations, and returns that role (version 0):
// it delegates succinctly to 2^bitLength bins signed by the keys and
// threshold root gives the targets role.
func addBins(tg *tufmeta.Metadata[tufmeta.TargetsType], root *tufmeta.Metadata[tufmeta.RootType], bitLength int, expires time.Time) *tufmeta.Metadata[tufmeta.TargetsType] {
	spec := root.Signed.Roles[tufmeta.TARGETS]
	ids := slices.Clone(spec.KeyIDs)
	keys := map[string]*tufmeta.Key{}
	for _, id := range ids {
		keys[id] = root.Signed.Keys[id]
	}
	if tg.Signed.Delegations == nil {
		tg.Signed.Delegations = &tufmeta.Delegations{}
	}
	d := tg.Signed.Delegations
	if d.Keys == nil {
		d.Keys = map[string]*tufmeta.Key{}
	}
	maps.Copy(d.Keys, keys)
	dr := tufmeta.DelegatedRole{Name: BinsRole, KeyIDs: ids, Threshold: spec.Threshold, Paths: []string{TargetPrefix + "*/*"}}
	d.Roles = append(d.Roles, dr)

	bins := tufmeta.Targets(expires)
	bins.Signed.Version = 0
	bins.Signed.Delegations = &tufmeta.Delegations{
		Keys: maps.Clone(keys),
		SuccinctRoles: &tufmeta.SuccinctRoles{
			KeyIDs: slices.Clone(ids), Threshold: spec.Threshold, BitLength: bitLength, NamePrefix: binNamePrefix,
		},
	}
	return bins
}
