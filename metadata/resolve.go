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
// closure from signed metadata. The closure is a set: one version of each
// real package name, dependency cycles allowed (Debian has them at its
// base: libc6 -> libgcc-s1 -> libc6), a package's dependency on itself
// satisfied by itself.
//
// Breadth first from ref, each dependency name is resolved when its turn
// comes, under every constraint gathered for it by then: by a package
// already in the closure that satisfies them (the real package of that
// name, or one that provides it, see provides.go), else by the newest
// version of the real package that does, else by a provider: of the
// packages that provide the name in a way that satisfies the constraints,
// the newest version of the lexically first name. A constraint met after
// its name was resolved must be satisfied by the closure as it is. Of a
// dependency with alternatives ("a | b") the first one the closure
// already satisfies is used, else the first already required that can
// still be satisfied, else the first that some published package
// satisfies. Breaks, Conflicts and the like are not read (DebControl).
//
// The result lists ref first, then the rest of the closure dependencies
// before dependents (the members of a cycle together, by name); it is
// deterministic. A missing package, no version meeting the constraints
// and conflicting constraints on one name wrap ErrDependency, naming who
// needs what (a missing package also wraps ErrNotFound).
func (c *Client) ResolveClosure(ctx context.Context, ref string) ([]*Resolved, error) {
	return c.ResolveClosureEach(ctx, ref, nil)
}

// ResolveClosureEach is ResolveClosure that also hands each member of the
// closure to each, in the closure's order, as soon as its manifest and
// those of every member before it are fetched and checked: a caller can
// start on the first packages while later manifests are on their way
// (a closure of hundreds of packages takes many round trips). A member
// handed to each is resolved and verified as ResolveClosure's result
// would have it, even if the closure then fails on a later manifest.
// each runs with the client locked: it must not call the client.
func (c *Client) ResolveClosureEach(ctx context.Context, ref string, each func(*Resolved)) ([]*Resolved, error) {
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
	out, err := c.fetchManifests(ctx, order, each)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ref, err)
	}
	return out, nil
}

// requirement is a constraint on a name and who imposes it.
type requirement struct {
	rel Relation
	by  string // NAME@VERSION
}

// edge is a dependency of a closure member: the member that satisfies
// it, or (resolved false) the name whose turn will say which.
type edge struct {
	to       string
	resolved bool
}

// planner is one run of the resolver (see ResolveClosure).
type planner struct {
	ctx      context.Context
	c        *Client
	root     *pkgEntry
	picked   map[string]*pkgEntry   // real name -> its version in the closure
	members  []*pkgEntry            // the closure, in the order picked
	provided map[string][]*pkgEntry // name -> members that provide it
	reqs     map[string][]requirement
	queue    []string          // names waiting for their turn
	done     map[string]bool   // names whose turn came
	via      map[string]string // name -> the member that satisfied it on its turn
	edges    map[string][]edge // member name -> its dependencies
	err      error             // a role that could not be loaded while choosing
	// rootDeps, if set, are the root's dependencies instead of its
	// target's (ResolveSet's stand-in root).
	rootDeps []Dependency
}

// plan is the resolver (see ResolveClosure): it returns the closure of
// root in its order.
func (c *Client) plan(ctx context.Context, root *pkgEntry) ([]*pkgEntry, error) {
	return c.planFrom(ctx, root, nil)
}

// planFrom is plan with rootDeps, if not nil, as the root's dependencies.
func (c *Client) planFrom(ctx context.Context, root *pkgEntry, rootDeps []Dependency) ([]*pkgEntry, error) {
	p := &planner{
		ctx: ctx, c: c, root: root, rootDeps: rootDeps,
		picked: map[string]*pkgEntry{}, provided: map[string][]*pkgEntry{},
		reqs: map[string][]requirement{}, done: map[string]bool{},
		via: map[string]string{}, edges: map[string][]edge{},
	}
	if err := p.add(root); err != nil {
		return nil, err
	}
	for len(p.queue) > 0 {
		name := p.queue[0]
		p.queue = p.queue[1:]
		if err := p.turn(name); err != nil {
			return nil, err
		}
	}
	return p.order(), nil
}

// add puts e in the closure and gathers its requirements.
func (p *planner) add(e *pkgEntry) error {
	p.picked[e.info.Name] = e
	p.members = append(p.members, e)
	for _, pv := range e.provides {
		p.provided[pv.Name] = append(p.provided[pv.Name], e)
	}
	return p.process(e)
}

// turn resolves name under every requirement gathered for it.
func (p *planner) turn(name string) error {
	p.done[name] = true
	rs := p.reqs[name]
	cons := make([]Relation, len(rs))
	for i, r := range rs {
		cons[i] = r.rel
	}
	if s := p.satisfier(name, cons); s != nil {
		p.via[name] = s.info.Name
		return nil
	}
	if pe, ok := p.picked[name]; ok {
		return fmt.Errorf("%w: %s, but %s@%s was already chosen (required by %s)",
			ErrDependency, p.needs(rs), name, pe.info.Version, p.describe(name))
	}
	es, err := p.c.entries(p.ctx, name)
	if err != nil {
		return err
	}
	var pickErr error
	if len(es) > 0 {
		e, err := p.c.pick(p.ctx, name, cons)
		if err == nil {
			p.via[name] = name
			return p.add(e)
		}
		if errors.Is(err, errRoleGone) {
			return err
		}
		pickErr = err
	}
	e, err := p.provider(name, cons)
	if err != nil {
		return err
	}
	if e != nil {
		p.via[name] = e.info.Name
		if _, ok := p.picked[e.info.Name]; ok {
			return nil
		}
		return p.add(e)
	}
	if pickErr != nil {
		return fmt.Errorf("%w: no version of %s satisfies: %s (%w)", ErrDependency, name, p.needs(rs), pickErr)
	}
	if !p.anyProvider(name) {
		return fmt.Errorf("%w: %s: %w in signed metadata (no package of that name, none that provides it)", ErrDependency, p.needs(rs), ErrNotFound)
	}
	return fmt.Errorf("%w: no package providing %s satisfies: %s", ErrDependency, name, p.needs(rs))
}

// needs describes requirements: "a@1 needs x>=1; b@2 needs x<<3".
func (p *planner) needs(rs []requirement) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.by + " needs " + r.rel.String()
	}
	return strings.Join(parts, "; ")
}

// anyProvider reports whether some package provides name at all.
func (p *planner) anyProvider(name string) bool {
	ps, err := p.c.providers(p.ctx, name)
	return err == nil && len(ps) > 0
}

// satisfier returns the closure member that satisfies every relation in
// cons on name (cons all name it): the real package of that name, else
// the first member that provides it so; nil if none.
func (p *planner) satisfier(name string, cons []Relation) *pkgEntry {
	if pe, ok := p.picked[name]; ok && allowsAll(pe.ver, cons) {
		return pe
	}
	for _, pe := range p.provided[name] {
		if providesAll(pe, cons) {
			return pe
		}
	}
	return nil
}

// allowsAll reports whether version v satisfies every relation of cons.
func allowsAll(v Version, cons []Relation) bool {
	for _, r := range cons {
		if !r.Allows(v) {
			return false
		}
	}
	return true
}

// providesAll reports whether pe provides a name in a way that satisfies
// every relation of cons (see pkgEntry.provision).
func providesAll(pe *pkgEntry, cons []Relation) bool {
	for _, r := range cons {
		if _, sat := pe.provision(r); !sat {
			return false
		}
	}
	return true
}

// provider chooses a package not yet in the closure to provide name under
// cons: of the provider names in lexical order, the first with a version
// whose provide satisfies every relation of cons and whose own version
// satisfies what is required of its name; of that name, the newest such
// version. Nil if none.
func (p *planner) provider(name string, cons []Relation) (*pkgEntry, error) {
	ps, err := p.c.providers(p.ctx, name)
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(ps); {
		pn := ps[i].info.Name
		j := i
		for j < len(ps) && ps[j].info.Name == pn {
			j++
		}
		group := ps[i:j]
		i = j
		if _, ok := p.picked[pn]; ok {
			continue // in the closure already: satisfier saw it
		}
		var own []Relation
		for _, q := range p.reqs[pn] {
			own = append(own, q.rel)
		}
		var cands []*pkgEntry
		var vs []Version
		for _, e := range group {
			if providesAll(e, cons) {
				cands = append(cands, e)
				vs = append(vs, e.ver)
			}
		}
		if k := newest(vs, own); k >= 0 {
			return cands[k], nil
		}
	}
	return nil, nil
}

// process gathers the requirements of a closure member.
func (p *planner) process(e *pkgEntry) error {
	by := e.info.Name + "@" + e.info.Version
	if e.err != nil {
		return fmt.Errorf("package %s: %w", by, e.err)
	}
	deps, _, err := ParseDependencies(e.info.Name, e.info.Depends)
	if err != nil {
		return fmt.Errorf("package %s: %w", by, err)
	}
	if e == p.root && p.rootDeps != nil {
		by, deps = "the request", p.rootDeps
	}
	for _, d := range deps {
		rel, ok := p.choose(d)
		if p.err != nil {
			return p.err
		}
		if !ok {
			return fmt.Errorf("%w: %s needs %s: %w: no alternative is published at an allowed version", ErrDependency, by, d, ErrNotFound)
		}
		if s := p.satisfier(rel.Name, []Relation{rel}); s != nil {
			p.edges[e.info.Name] = append(p.edges[e.info.Name], edge{to: s.info.Name, resolved: true})
			continue
		}
		if pe, ok := p.picked[rel.Name]; ok {
			return fmt.Errorf("%w: %s needs %s, but %s@%s was already chosen (required by %s)",
				ErrDependency, by, rel, rel.Name, pe.info.Version, p.describe(rel.Name))
		}
		if p.done[rel.Name] {
			return fmt.Errorf("%w: %s needs %s, but %s is provided by %s (chosen for %s)",
				ErrDependency, by, rel, rel.Name, p.member(p.via[rel.Name]), p.describe(rel.Name))
		}
		p.edges[e.info.Name] = append(p.edges[e.info.Name], edge{to: rel.Name})
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
		if p.satisfier(r.Name, []Relation{r}) != nil {
			return r, true
		}
	}
	for _, r := range d.Alternatives {
		if len(p.reqs[r.Name]) > 0 && !p.decided(r.Name) && p.satisfiable(r) {
			return r, true
		}
	}
	for _, r := range d.Alternatives {
		if !p.decided(r.Name) && p.satisfiable(r) {
			return r, true
		}
	}
	return Relation{}, false
}

// decided reports whether what satisfies name is settled: its real
// package is in the closure or its turn came.
func (p *planner) decided(name string) bool {
	_, ok := p.picked[name]
	return ok || p.done[name]
}

// satisfiable reports whether some published package satisfies r and
// every requirement gathered for r.Name so far: a version of the real
// package, or a provider.
func (p *planner) satisfiable(r Relation) bool {
	cons := []Relation{r}
	for _, q := range p.reqs[r.Name] {
		cons = append(cons, q.rel)
	}
	_, err := p.c.pick(p.ctx, r.Name, cons)
	if err == nil {
		return true
	}
	if errors.Is(err, errRoleGone) {
		p.setErr(err)
		return false
	}
	e, err := p.provider(r.Name, cons)
	if err != nil {
		p.setErr(err)
	}
	return e != nil
}

func (p *planner) setErr(err error) {
	if p.err == nil {
		p.err = err
	}
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

// member returns "NAME@VERSION" of the closure member called name.
func (p *planner) member(name string) string {
	if e, ok := p.picked[name]; ok {
		return e.info.Name + "@" + e.info.Version
	}
	return name
}

// order returns the closure: the root first, then every other member,
// dependencies before dependents. It is Tarjan's algorithm over the
// dependency graph, from the members in the order they were picked and
// each member's dependencies in the order listed: strongly connected
// components come out dependencies first, and the members of one (a
// cycle) are put in name order.
func (p *planner) order() []*pkgEntry {
	index := map[string]int{}
	low := map[string]int{}
	on := map[string]bool{}
	var stack []string
	var out []*pkgEntry
	var visit func(n string)
	visit = func(n string) {
		index[n], low[n] = len(index), len(index)
		stack = append(stack, n)
		on[n] = true
		for _, e := range p.edges[n] {
			to := e.to
			if !e.resolved {
				to = p.via[e.to]
			}
			if _, ok := p.picked[to]; !ok {
				continue
			}
			if _, seen := index[to]; !seen {
				visit(to)
				low[n] = min(low[n], low[to])
			} else if on[to] {
				low[n] = min(low[n], index[to])
			}
		}
		if low[n] != index[n] {
			return
		}
		i := len(stack) - 1
		for stack[i] != n {
			i--
		}
		scc := slices.Clone(stack[i:])
		stack = stack[:i]
		slices.Sort(scc)
		for _, m := range scc {
			on[m] = false
			if m != p.root.info.Name {
				out = append(out, p.picked[m])
			}
		}
	}
	for _, e := range p.members {
		if _, seen := index[e.info.Name]; !seen {
			visit(e.info.Name)
		}
	}
	return append([]*pkgEntry{p.root}, out...)
}
