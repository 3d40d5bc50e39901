package metadata

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// MaxNameLen is the longest package name accepted.
const MaxNameLen = 128

// TargetPrefix is the TUF target path prefix of every package:
// packages/NAME/VERSION.
const TargetPrefix = "packages/"

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+._-]*$`)

// ValidateName checks a package name: [a-z0-9][a-z0-9+._-]*, at most
// MaxNameLen bytes.
func ValidateName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("package name %.40q...: %w: longer than %d bytes", name, ErrMalformed, MaxNameLen)
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("package name %q: %w: want [a-z0-9][a-z0-9+._-]*", name, ErrMalformed)
	}
	return nil
}

// TargetPath is the TUF target path of NAME at VERSION.
func TargetPath(name, version string) string {
	return TargetPrefix + name + "/" + version
}

// ParseTargetPath splits packages/NAME/VERSION; ok is false for anything
// else, including a name that does not validate or a version that no
// scheme could hold (checkVersionText). Whether the version parses under
// the target's scheme is the target's own check (packageInfo).
func ParseTargetPath(p string) (name, version string, ok bool) {
	rest, found := strings.CutPrefix(p, TargetPrefix)
	if !found {
		return "", "", false
	}
	name, version, found = strings.Cut(rest, "/")
	if !found || ValidateName(name) != nil || checkVersionText(version) != nil {
		return "", "", false
	}
	return name, version, true
}

// Ref is a parsed package reference: NAME, NAME@VERSION or
// NAME@CONSTRAINT.
type Ref struct {
	Name string
	// Version is an exact version, as written; "" if none. It matches the
	// published version with the same string, else one equal to it under
	// the package's scheme ("foo@1.2" finds a semver "1.2.0").
	Version string
	// Constraint, if not nil, selects the newest version it allows.
	Constraint *Constraint
}

// String returns the reference as NAME[@VERSION|@CONSTRAINT].
func (r Ref) String() string {
	switch {
	case r.Version != "":
		return r.Name + "@" + r.Version
	case r.Constraint != nil:
		return r.Name + "@" + r.Constraint.String()
	}
	return r.Name
}

// ParseRef parses "NAME", "NAME@VERSION" or "NAME@CONSTRAINT"; what follows
// the '@' is a constraint when it starts with an operator (= < > ! ~ ^) or
// holds a space, a comma or "||" (see Constraint): "coreutils@>=9.1",
// "libc6@>= 2.36, << 3", "bash@5.2.15-2+b13".
func ParseRef(ref string) (Ref, error) {
	name, rest, hasAt := strings.Cut(ref, "@")
	if err := ValidateName(name); err != nil {
		return Ref{}, fmt.Errorf("package reference %q: %w", ref, err)
	}
	if !hasAt {
		return Ref{Name: name}, nil
	}
	if rest != "" && (strings.IndexByte("=<>!~^", rest[0]) >= 0 || strings.ContainsAny(rest, " ,|")) {
		c, err := ParseConstraint(rest)
		if err != nil {
			return Ref{}, fmt.Errorf("package reference %q: %w", ref, err)
		}
		return Ref{Name: name, Constraint: c}, nil
	}
	if err := checkVersionText(rest); err != nil {
		return Ref{}, fmt.Errorf("package reference %q: %w", ref, err)
	}
	return Ref{Name: name, Version: rest}, nil
}

// MaxAlternatives bounds the alternatives of one dependency ("a | b | c").
const MaxAlternatives = 16

// Relation is a package name with the versions of it allowed: "libfoo",
// "libfoo>=1.2", "libc6>= 2.36, << 3".
type Relation struct {
	Name       string
	Constraint *Constraint // nil: any version, pre-releases included
}

// String returns the name followed by the constraint as written.
func (r Relation) String() string { return r.Name + r.Constraint.String() }

// Allows reports whether version v of r.Name satisfies r.
func (r Relation) Allows(v Version) bool { return r.Constraint.Allows(v) }

// Dependency is one "depends" entry: one relation, or alternatives
// "a>=1 | b" of which the resolver uses the first it can satisfy (see
// Client.ResolveClosure).
type Dependency struct {
	Alternatives []Relation
}

// String returns the entry's canonical text: the relations joined by " | ".
func (d Dependency) String() string {
	parts := make([]string, len(d.Alternatives))
	for i, r := range d.Alternatives {
		parts[i] = r.String()
	}
	return strings.Join(parts, " | ")
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '.' || c == '_' || c == '-'
}

// ParseDependency parses a depends entry: relations separated by '|' (a
// "||" belongs to a constraint), each NAME followed by an optional
// constraint (see Constraint). The name ends at the first byte that cannot
// be part of a name (an operator or a space).
func ParseDependency(s string) (Dependency, error) {
	var d Dependency
	for _, alt := range splitAlternatives(s) {
		if len(d.Alternatives) == MaxAlternatives {
			return Dependency{}, fmt.Errorf("dependency %.60q: %w: more than %d alternatives", s, ErrTooLarge, MaxAlternatives)
		}
		r, err := parseRelation(alt)
		if err != nil {
			return Dependency{}, fmt.Errorf("dependency %q: %w", s, err)
		}
		d.Alternatives = append(d.Alternatives, r)
	}
	return d, nil
}

// splitAlternatives cuts s at every '|' that is not half of a "||".
func splitAlternatives(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '|' {
			continue
		}
		if i+1 < len(s) && s[i+1] == '|' {
			i++
			continue
		}
		out = append(out, s[start:i])
		start = i + 1
	}
	return append(out, s[start:])
}

func parseRelation(s string) (Relation, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && isNameByte(t[i]) {
		i++
	}
	r := Relation{Name: t[:i]}
	if err := ValidateName(r.Name); err != nil {
		return Relation{}, err
	}
	rest := strings.TrimSpace(t[i:])
	if rest == "" {
		return r, nil
	}
	if strings.IndexByte("=<>!~^", rest[0]) < 0 {
		return Relation{}, fmt.Errorf("%w: %q: a constraint starts with an operator (=, <, >, !=, >>, <<, ~, ^)", ErrMalformed, rest)
	}
	c, err := ParseConstraint(rest)
	if err != nil {
		return Relation{}, err
	}
	r.Constraint = c
	return r, nil
}

// ParseDependencies parses and normalises a depends list for package name:
// no name listed twice as a single relation. A dependency on name itself
// is kept: the package satisfies it if its version is allowed (Debian
// allows it; the resolver treats it as a cycle of one). It returns the
// canonical strings in the given order.
func ParseDependencies(name string, depends []string) ([]Dependency, []string, error) {
	var deps []Dependency
	var canon []string
	seen := map[string]bool{}
	for _, s := range depends {
		d, err := ParseDependency(s)
		if err != nil {
			return nil, nil, err
		}
		if len(d.Alternatives) == 1 {
			n := d.Alternatives[0].Name
			if seen[n] {
				return nil, nil, fmt.Errorf("dependency %q: %w: %s listed twice (join constraints with a comma)", s, ErrDependency, n)
			}
			seen[n] = true
		}
		deps = append(deps, d)
		canon = append(canon, d.String())
	}
	return deps, canon, nil
}

// newest returns the index of the highest version in vs allowed by every
// relation in cons, preferring releases over (semver) pre-releases; -1 if
// none. Zero versions (targets that did not parse) are never chosen.
func newest(vs []Version, cons []Relation) int {
	best, bestPre := -1, -1
	for i, v := range vs {
		if v.IsZero() {
			continue
		}
		ok := true
		for _, c := range cons {
			if !c.Allows(v) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		if !v.Prerelease() {
			if best < 0 || v.Compare(vs[best]) > 0 {
				best = i
			}
		} else if bestPre < 0 || v.Compare(vs[bestPre]) > 0 {
			bestPre = i
		}
	}
	if best >= 0 {
		return best
	}
	return bestPre
}

// sortPackages orders by name, then by version ascending under each
// package's scheme (by string where a version does not parse).
func sortPackages(ps []PackageInfo) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Name != ps[j].Name {
			return ps[i].Name < ps[j].Name
		}
		vi, ei := ParseVersion(ps[i].Scheme, ps[i].Version)
		vj, ej := ParseVersion(ps[j].Scheme, ps[j].Version)
		if ei != nil || ej != nil {
			return ps[i].Version < ps[j].Version
		}
		if c := vi.Compare(vj); c != 0 {
			return c < 0
		}
		return ps[i].Version < ps[j].Version
	})
}
