package metadata

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// pickRef selects the version ref names: exactly its version, else the
// newest its constraint (if any) allows.
func (c *Client) pickRef(ctx context.Context, r Ref) (*pkgEntry, error) {
	if r.Version != "" {
		return c.pickExact(ctx, r.Name, r.Version)
	}
	var cons []Relation
	if r.Constraint != nil {
		cons = []Relation{{Name: r.Name, Constraint: r.Constraint}}
	}
	return c.pick(ctx, r.Name, cons)
}

// pickExact finds version of name: the target with that very string, else
// the one whose version is equal to it under the package's scheme
// ("foo@1.2" finds a semver "1.2.0", "bar@1.0" a deb "0:1.0-0").
func (c *Client) pickExact(ctx context.Context, name, version string) (*pkgEntry, error) {
	es, err := c.entries(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(es) == 0 {
		return nil, fmt.Errorf("package %s: %w in signed metadata", name, ErrNotFound)
	}
	for _, e := range es {
		if e.info.Version == version {
			return e, nil
		}
	}
	for _, e := range es {
		if e.ver.IsZero() {
			continue
		}
		if v, err := ParseVersion(e.ver.Scheme(), version); err == nil && v.Compare(e.ver) == 0 {
			return e, nil
		}
	}
	return nil, fmt.Errorf("package %s@%s: %w in signed metadata", name, version, ErrNotFound)
}

// pick selects the newest version of name allowed by every relation in
// cons. The versions of one name must share one scheme (the publisher
// refuses a second one); if signed metadata mixes them, nothing is picked.
func (c *Client) pick(ctx context.Context, name string, cons []Relation) (*pkgEntry, error) {
	es, err := c.entries(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(es) == 0 {
		return nil, fmt.Errorf("package %s: %w in signed metadata", name, ErrNotFound)
	}
	vs := make([]Version, len(es))
	var schemes []Scheme
	for i, e := range es {
		vs[i] = e.ver
		if !e.ver.IsZero() && !slices.Contains(schemes, e.ver.Scheme()) {
			schemes = append(schemes, e.ver.Scheme())
		}
	}
	if len(schemes) > 1 {
		return nil, fmt.Errorf("package %s: %w: its versions use several schemes (%v); ask for one version exactly", name, ErrMalformed, schemes)
	}
	i := newest(vs, cons)
	if i >= 0 {
		return es[i], nil
	}
	for _, r := range cons {
		if len(schemes) == 1 && !r.Constraint.Reads(schemes[0]) {
			return nil, fmt.Errorf("package %s: %w: constraint %q cannot be read under its version scheme %s", name, ErrNotFound, r.Constraint, schemes[0])
		}
	}
	return nil, fmt.Errorf("package %s: %w: no version satisfies the constraints", name, ErrNotFound)
}

// ResolveClosure resolves ref (see Resolve) and its whole dependency
// closure from signed metadata: breadth first from ref, each dependency
// name is picked when its turn comes as the newest version satisfying
// every constraint gathered for it so far; a constraint seen after the
// pick must accept the picked version. Of a dependency with alternatives
// ("a | b") the first one that is already picked at an allowed version is
// used, else the first already required that some version still
// satisfies, else the first that some published version satisfies. The
// result lists ref first, then the dependencies in breadth-first order; it
// is deterministic. Conflicts, unsatisfiable constraints, missing packages
// and cycles wrap ErrDependency (a missing package also wraps ErrNotFound).
func (c *Client) ResolveClosure(ctx context.Context, ref string) ([]*Resolved, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	r, err := ParseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}
	var order []*pkgEntry
	if err := c.retryStale(ctx, func() error {
		first, err := c.pickRef(ctx, r)
		if err != nil {
			return err
		}
		order, err = c.plan(ctx, first)
		return err
	}); err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ref, err)
	}
	out := make([]*Resolved, 0, len(order))
	for _, e := range order {
		r, err := c.fetchManifest(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", ref, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// requirement is a constraint on a package and who imposes it.
type requirement struct {
	rel Relation
	by  string // NAME@VERSION
}

// planner is one run of the resolver (see ResolveClosure).
type planner struct {
	ctx    context.Context
	c      *Client
	root   *pkgEntry
	picked map[string]*pkgEntry
	order  []*pkgEntry
	reqs   map[string][]requirement
	queue  []string            // names waiting to be picked
	edges  map[string][]string // name -> the dependency names it uses
	err    error               // a role that could not be loaded while choosing
}

// plan is the resolver: breadth first from root. A name is picked when it
// leaves the queue, as the newest version satisfying every constraint
// gathered for it by then; a constraint met later must accept the version
// already picked. Then the graph of used dependencies must be acyclic.
func (c *Client) plan(ctx context.Context, root *pkgEntry) ([]*pkgEntry, error) {
	p := &planner{
		ctx: ctx, c: c, root: root,
		picked: map[string]*pkgEntry{root.info.Name: root},
		order:  []*pkgEntry{root},
		reqs:   map[string][]requirement{},
		edges:  map[string][]string{},
	}
	if err := p.process(root); err != nil {
		return nil, err
	}
	for len(p.queue) > 0 {
		name := p.queue[0]
		p.queue = p.queue[1:]
		rs := p.reqs[name]
		es, err := c.entries(ctx, name)
		if err != nil {
			return nil, err
		}
		if len(es) == 0 {
			return nil, fmt.Errorf("%w: %s needs %s: %w in signed metadata", ErrDependency, rs[0].by, rs[0].rel, ErrNotFound)
		}
		cons := make([]Relation, len(rs))
		for i, r := range rs {
			cons[i] = r.rel
		}
		e, err := c.pick(ctx, name, cons)
		if err != nil {
			if errors.Is(err, errRoleGone) {
				return nil, err
			}
			var parts []string
			for _, r := range rs {
				parts = append(parts, r.by+" needs "+r.rel.String())
			}
			return nil, fmt.Errorf("%w: no version of %s satisfies: %s (%w)", ErrDependency, name, strings.Join(parts, "; "), err)
		}
		p.picked[name] = e
		p.order = append(p.order, e)
		if err := p.process(e); err != nil {
			return nil, err
		}
	}
	if cyc := findCycle(p.order, p.edges); cyc != nil {
		return nil, fmt.Errorf("%w: dependency cycle %s", ErrDependency, strings.Join(cyc, " -> "))
	}
	return p.order, nil
}

// process gathers the requirements of a picked package.
func (p *planner) process(e *pkgEntry) error {
	by := e.info.Name + "@" + e.info.Version
	if e.err != nil {
		return fmt.Errorf("package %s: %w", by, e.err)
	}
	deps, _, err := ParseDependencies(e.info.Name, e.info.Depends)
	if err != nil {
		return fmt.Errorf("package %s: %w", by, err)
	}
	for _, d := range deps {
		rel, ok := p.choose(d)
		if p.err != nil {
			return p.err
		}
		if !ok {
			return fmt.Errorf("%w: %s needs %s: %w: no alternative is published at an allowed version", ErrDependency, by, d, ErrNotFound)
		}
		p.edges[e.info.Name] = append(p.edges[e.info.Name], rel.Name)
		if pe, ok := p.picked[rel.Name]; ok {
			if !rel.Allows(pe.ver) {
				return fmt.Errorf("%w: %s needs %s, but %s@%s was already chosen (required by %s)",
					ErrDependency, by, rel, rel.Name, pe.info.Version, p.describe(rel.Name))
			}
			continue
		}
		if len(p.reqs[rel.Name]) == 0 {
			p.queue = append(p.queue, rel.Name)
		}
		p.reqs[rel.Name] = append(p.reqs[rel.Name], requirement{rel: rel, by: by})
	}
	return nil
}

// choose returns the relation of d to satisfy (see ResolveClosure); false
// if d has alternatives and none can be satisfied.
func (p *planner) choose(d Dependency) (Relation, bool) {
	if len(d.Alternatives) == 1 {
		return d.Alternatives[0], true
	}
	for _, r := range d.Alternatives {
		if e, ok := p.picked[r.Name]; ok && r.Allows(e.ver) {
			return r, true
		}
	}
	for _, r := range d.Alternatives {
		if len(p.reqs[r.Name]) > 0 && p.satisfiable(r) {
			return r, true
		}
	}
	for _, r := range d.Alternatives {
		if _, ok := p.picked[r.Name]; !ok && p.satisfiable(r) {
			return r, true
		}
	}
	return Relation{}, false
}

// satisfiable reports whether some version of r.Name satisfies r and
// every requirement gathered for it so far.
func (p *planner) satisfiable(r Relation) bool {
	cons := []Relation{r}
	for _, q := range p.reqs[r.Name] {
		cons = append(cons, q.rel)
	}
	_, err := p.c.pick(p.ctx, r.Name, cons)
	if errors.Is(err, errRoleGone) && p.err == nil {
		p.err = err
	}
	return err == nil
}

func (p *planner) describe(name string) string {
	rs := p.reqs[name]
	if len(rs) == 0 {
		return "the request for " + p.root.info.Name
	}
	var parts []string
	for _, r := range rs {
		parts = append(parts, r.by)
	}
	return strings.Join(parts, ", ")
}

// findCycle returns a dependency cycle among the picked packages as a list
// of names (first repeated at the end), or nil. edges holds, per picked
// name, the dependency names it uses.
func findCycle(order []*pkgEntry, edges map[string][]string) []string {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var cycle []string
	var visit func(name string) bool
	visit = func(name string) bool {
		color[name] = grey
		stack = append(stack, name)
		for _, dep := range edges[name] {
			switch color[dep] {
			case grey:
				i := slices.Index(stack, dep)
				cycle = append(append([]string{}, stack[i:]...), dep)
				return true
			case white:
				if visit(dep) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[name] = black
		return false
	}
	for _, e := range order {
		if color[e.info.Name] == white && visit(e.info.Name) {
			return cycle
		}
	}
	return nil
}
