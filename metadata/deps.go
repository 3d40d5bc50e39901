package metadata

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
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

// parseLegacyVersion parses a package version. Versions are semantic versions
// (Masterminds/semver): MAJOR[.MINOR[.PATCH]][-PRERELEASE], an optional
// leading "v" accepted; build metadata ("+...") is refused because it does
// not take part in ordering. The canonical form, v.String(), is
// MAJOR.MINOR.PATCH[-PRERELEASE] ("1.2" becomes "1.2.0"); packages are
// published and signed under their canonical version.
func parseLegacyVersion(s string) (*semver.Version, error) {
	if s == "" || len(s) > MaxNameLen {
		return nil, fmt.Errorf("version %q: %w: empty or too long", s, ErrMalformed)
	}
	v, err := semver.NewVersion(s)
	if err != nil {
		return nil, fmt.Errorf("version %q: %w: %v", s, ErrMalformed, err)
	}
	if v.Metadata() != "" {
		return nil, fmt.Errorf("version %q: %w: build metadata (+...) is not allowed", s, ErrMalformed)
	}
	return v, nil
}

// CanonicalVersion returns the canonical form of version s (see ParseVersion).
func CanonicalVersion(s string) (string, error) {
	v, err := parseLegacyVersion(s)
	if err != nil {
		return "", err
	}
	return v.String(), nil
}

// TargetPath is the TUF target path of NAME at VERSION.
func TargetPath(name, version string) string {
	return TargetPrefix + name + "/" + version
}

// ParseTargetPath splits packages/NAME/VERSION; ok is false for anything
// else, including a name or version that does not validate or a version not
// in canonical form.
func ParseTargetPath(p string) (name, version string, ok bool) {
	rest, found := strings.CutPrefix(p, TargetPrefix)
	if !found {
		return "", "", false
	}
	name, version, found = strings.Cut(rest, "/")
	if !found || ValidateName(name) != nil {
		return "", "", false
	}
	if c, err := CanonicalVersion(version); err != nil || c != version {
		return "", "", false
	}
	return name, version, true
}

// ParseRef splits "NAME" or "NAME@VERSION"; version is "" when absent and
// canonical otherwise.
func ParseRef(ref string) (name, version string, err error) {
	name, version, hasVersion := strings.Cut(ref, "@")
	if err := ValidateName(name); err != nil {
		return "", "", fmt.Errorf("package reference %q: %w", ref, err)
	}
	if !hasVersion {
		return name, "", nil
	}
	version, err = CanonicalVersion(version)
	if err != nil {
		return "", "", fmt.Errorf("package reference %q: %w", ref, err)
	}
	return name, version, nil
}

// Dependency is one parsed "depends" entry: a package name and a version
// constraint in Masterminds syntax ("libfoo>=1.2", "baz=2.0.1",
// "qux>=1,<2", "bar" for any version).
type Dependency struct {
	Name       string
	Constraint *semver.Constraints // nil: any version
	Text       string              // the constraint as written, trimmed; "" for any
}

// String returns the text of d: the name followed by the constraint as
// written (trimmed).
func (d Dependency) String() string { return d.Name + d.Text }

// Allows reports whether version v satisfies d. A dependency without a
// constraint allows every version, pre-releases included.
func (d Dependency) Allows(v *semver.Version) bool {
	return d.Constraint == nil || d.Constraint.Check(v)
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '.' || c == '_' || c == '-'
}

// ParseDependency parses a depends entry: NAME followed by an optional
// Masterminds constraint. The name ends at the first byte that cannot be
// part of a name (an operator, a space or a comma).
func ParseDependency(s string) (Dependency, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && isNameByte(t[i]) {
		i++
	}
	d := Dependency{Name: t[:i]}
	if err := ValidateName(d.Name); err != nil {
		return Dependency{}, fmt.Errorf("dependency %q: %w", s, err)
	}
	rest := strings.TrimSpace(t[i:])
	if rest == "" {
		return d, nil
	}
	switch rest[0] {
	case '=', '<', '>', '!', '~', '^':
	default:
		return Dependency{}, fmt.Errorf("dependency %q: %w: constraint must start with an operator (=, <, >, !=, ~, ^)", s, ErrMalformed)
	}
	c, err := semver.NewConstraint(rest)
	if err != nil {
		return Dependency{}, fmt.Errorf("dependency %q: %w: %v", s, ErrMalformed, err)
	}
	d.Constraint = c
	d.Text = rest
	return d, nil
}

// ParseDependencies parses and normalises a depends list for package name:
// no self-dependency, no name listed twice. It returns the canonical
// strings in the given order.
func ParseDependencies(name string, depends []string) ([]Dependency, []string, error) {
	var deps []Dependency
	var canon []string
	seen := map[string]bool{}
	for _, s := range depends {
		d, err := ParseDependency(s)
		if err != nil {
			return nil, nil, err
		}
		if d.Name == name {
			return nil, nil, fmt.Errorf("dependency %q: %w: %s depends on itself", s, ErrDependency, name)
		}
		if seen[d.Name] {
			return nil, nil, fmt.Errorf("dependency %q: %w: %s listed twice (join constraints with a comma)", s, ErrDependency, d.Name)
		}
		seen[d.Name] = true
		deps = append(deps, d)
		canon = append(canon, d.String())
	}
	return deps, canon, nil
}

// newest returns the index of the highest version in vs allowed by every
// dependency in cons, preferring releases over pre-releases; -1 if none.
func newest(vs []*semver.Version, cons []Dependency) int {
	best, bestPre := -1, -1
	for i, v := range vs {
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
		if v.Prerelease() == "" {
			if best < 0 || v.GreaterThan(vs[best]) {
				best = i
			}
		} else if bestPre < 0 || v.GreaterThan(vs[bestPre]) {
			bestPre = i
		}
	}
	if best >= 0 {
		return best
	}
	return bestPre
}

// sortPackages orders by name, then by version ascending.
func sortPackages(ps []PackageInfo) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Name != ps[j].Name {
			return ps[i].Name < ps[j].Name
		}
		vi, ei := semver.NewVersion(ps[i].Version)
		vj, ej := semver.NewVersion(ps[j].Version)
		if ei != nil || ej != nil {
			return ps[i].Version < ps[j].Version
		}
		return vi.LessThan(vj)
	})
}
