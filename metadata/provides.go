package metadata

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// Virtual packages.
//
// A package may provide names besides its own (Debian's Provides): "awk",
// or "awk=1:5.2.1-2", a name with the version provided, read under the
// providing package's scheme. A dependency on NAME is satisfied by the
// real package NAME, or by a package that provides NAME: any provider
// satisfies a dependency without a constraint, and only a versioned
// provider whose version the constraint allows satisfies a versioned one
// (Debian policy 7.5). How the resolver chooses is in resolve.go.
//
// What a client trusts. Two signed statements must agree before package
// P counts as a provider of NAME:
//
//   - P's own target lists NAME in its custom "provides" field, signed by
//     the role that signs P (so only P's publisher says what P provides);
//   - the provides index of a role that may sign a version of NAME (see
//     rolesForName: top-level targets, NAME's bin, a publisher role whose
//     patterns can cover NAME) lists P under NAME. The index is a field
//     "provides" in the signed part of that targets role, a map from a
//     name to the names of its providers: {"awk": ["gawk", "mawk"]}.
//
// So whoever may publish NAME also decides which packages may stand in for
// it, and a client finds NAME's providers in the roles it loads for NAME
// anyway (one bin in a binned repository), without loading every bin. An
// index entry for a package that does not provide NAME, or no longer
// exists, is ignored; the publisher adds entries and never removes them.

// MaxProvides bounds the names one package provides.
const MaxProvides = 512

// maxProviders bounds the provider names a client reads for one name.
const maxProviders = 256

// providesField is the key of the provides index in a targets role's
// signed part.
const providesField = "provides"

// Provided is one name a package provides.
type Provided struct {
	Name string
	// Version is the version provided, under the providing package's
	// scheme; zero if none was given (an unversioned provide).
	Version Version
}

// String returns NAME or NAME=VERSION.
func (p Provided) String() string {
	if p.Version.IsZero() {
		return p.Name
	}
	return p.Name + "=" + p.Version.String()
}

// Satisfies reports whether p satisfies a dependency on r.Name: without a
// constraint any provide does, with one only a versioned provide whose
// version the constraint allows.
func (p Provided) Satisfies(r Relation) bool {
	if p.Name != r.Name {
		return false
	}
	if r.Constraint == nil {
		return true
	}
	return !p.Version.IsZero() && r.Constraint.Allows(p.Version)
}

// ParseProvides parses the provides list of a package whose versions use
// scheme: each "NAME" or "NAME=VERSION", NAME a valid package name and
// VERSION valid under scheme; a repeated entry is kept once. It returns
// the parsed entries and their canonical strings, in the given order.
func ParseProvides(scheme Scheme, provides []string) ([]Provided, []string, error) {
	if len(provides) > MaxProvides {
		return nil, nil, fmt.Errorf("provides: %w: %d names, limit %d", ErrTooLarge, len(provides), MaxProvides)
	}
	var out []Provided
	var canon []string
	for _, s := range provides {
		name, version, versioned := strings.Cut(strings.TrimSpace(s), "=")
		name = strings.TrimSpace(name)
		if err := ValidateName(name); err != nil {
			return nil, nil, fmt.Errorf("provides %q: %w", s, err)
		}
		p := Provided{Name: name}
		if versioned {
			v, err := ParseVersion(scheme, strings.TrimSpace(version))
			if err != nil {
				return nil, nil, fmt.Errorf("provides %q: %w", s, err)
			}
			p.Version = v
		}
		if slices.Contains(canon, p.String()) {
			continue
		}
		out = append(out, p)
		canon = append(canon, p.String())
	}
	return out, canon, nil
}

// roleProvides decodes the provides index of a targets role: name ->
// provider names. Entries that are not valid names are dropped; a field
// that does not decode is an empty index.
func roleProvides(m *tufmeta.Metadata[tufmeta.TargetsType]) map[string][]string {
	raw, ok := m.Signed.UnrecognizedFields[providesField]
	if !ok {
		return nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil
	}
	var idx map[string][]string
	if json.Unmarshal(b, &idx) != nil {
		return nil
	}
	for v, ps := range idx {
		idx[v] = slices.DeleteFunc(ps, func(p string) bool { return ValidateName(p) != nil })
	}
	return idx
}

// setRoleProvides writes the provides index of a targets role.
func setRoleProvides(m *tufmeta.Metadata[tufmeta.TargetsType], idx map[string][]string) {
	if m.Signed.UnrecognizedFields == nil {
		m.Signed.UnrecognizedFields = map[string]any{}
	}
	m.Signed.UnrecognizedFields[providesField] = idx
}

// addProvider lists provider under name in m's provides index; false if
// it was there already.
func addProvider(m *tufmeta.Metadata[tufmeta.TargetsType], name, provider string) bool {
	idx := roleProvides(m)
	if slices.Contains(idx[name], provider) {
		return false
	}
	if idx == nil {
		idx = map[string][]string{}
	}
	idx[name] = append(idx[name], provider)
	slices.Sort(idx[name])
	setRoleProvides(m, idx)
	return true
}

// providerNames returns the names the provides indexes of the roles that
// may sign name list as its providers (see the trust rule above): sorted,
// each once, at most maxProviders.
func providerNames(get roleGetter, name string) ([]string, error) {
	roles, err := rolesForName(get, name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range roles {
		for _, p := range roleProvides(r.m)[name] {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	if len(out) > maxProviders {
		out = out[:maxProviders]
	}
	return out, nil
}
