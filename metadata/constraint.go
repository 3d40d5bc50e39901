package metadata

import (
	"errors"
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// MaxConstraintLen is the longest constraint text accepted.
const MaxConstraintLen = 512

// Constraint is a set of allowed versions, parsed once and evaluated under
// the scheme of each version it is checked against (a dependency does not
// know the scheme its target package uses).
//
// The relation syntax works for every scheme: clauses OP VERSION with OP
// one of >=, <=, >> (strictly greater), << (strictly less), > and <
// (strict, as in semver), = or == (equal under the scheme), != ; clauses
// separated by spaces or commas all hold ("<< 3, >= 2.1"); "||" separates
// alternatives. For semver packages the text is also read as a
// Masterminds/semver constraint, so "^1.4", "~1.2", "1.x" and "1 - 2"
// keep working there; semver evaluation is Masterminds' (a pre-release
// satisfies only a constraint that names a pre-release).
type Constraint struct {
	text string
	sv   *semver.Constraints // nil: no semver reading
	deb  [][]bound           // nil: no deb reading
	rpm  [][]bound           // nil: no rpm reading
}

type relOp uint8

const (
	opEQ relOp = iota
	opNE
	opLT
	opLE
	opGT
	opGE
)

// bound is one clause: OP VERSION.
type bound struct {
	op relOp
	v  Version
}

// relOps lists the relation operators, longest first so that ">=" is not
// read as ">" then "=".
var relOps = []struct {
	text string
	op   relOp
	sv   string // the Masterminds spelling
}{
	{">=", opGE, ">="}, {"<=", opLE, "<="}, {">>", opGT, ">"}, {"<<", opLT, "<"},
	{"==", opEQ, "="}, {"!=", opNE, "!="}, {">", opGT, ">"}, {"<", opLT, "<"}, {"=", opEQ, "="},
}

// clause is a relation as written, before any scheme reads its version.
type clause struct {
	op      relOp
	sv      string
	version string
}

// ParseConstraint parses a constraint (see Constraint). It fails with
// ErrMalformed unless at least one scheme can read it.
func ParseConstraint(s string) (*Constraint, error) {
	t := strings.TrimSpace(s)
	if t == "" || len(t) > MaxConstraintLen {
		return nil, fmt.Errorf("constraint %.40q: %w: empty or longer than %d bytes", s, ErrMalformed, MaxConstraintLen)
	}
	c := &Constraint{text: t}
	rel, relErr := parseRelations(t)
	svText := t
	if relErr == nil {
		var alts []string
		for _, conj := range rel {
			var parts []string
			for _, cl := range conj {
				parts = append(parts, cl.sv+cl.version)
			}
			alts = append(alts, strings.Join(parts, ", "))
		}
		svText = strings.Join(alts, " || ")
		c.deb, _ = readRelations(rel, SchemeDeb)
		c.rpm, _ = readRelations(rel, SchemeRPM)
	}
	if sv, err := semver.NewConstraint(svText); err == nil {
		c.sv = sv
	}
	if c.sv == nil && c.deb == nil && c.rpm == nil {
		if relErr == nil {
			relErr = errors.New("no scheme (semver, deb, rpm) reads its versions")
		}
		return nil, fmt.Errorf("constraint %q: %w: %v", t, ErrMalformed, relErr)
	}
	return c, nil
}

// parseRelations reads the relation syntax into alternatives of
// conjunctions of clauses.
func parseRelations(t string) ([][]clause, error) {
	var out [][]clause
	for _, alt := range strings.Split(t, "||") {
		var conj []clause
		rest := strings.TrimSpace(alt)
		for rest != "" {
			cl, r, err := parseClause(rest)
			if err != nil {
				return nil, err
			}
			conj = append(conj, cl)
			rest = strings.TrimSpace(r)
			if strings.HasPrefix(rest, ",") {
				rest = strings.TrimSpace(rest[1:])
				if rest == "" {
					return nil, errors.New("nothing after ','")
				}
			}
		}
		if len(conj) == 0 {
			return nil, errors.New("empty alternative around '||'")
		}
		out = append(out, conj)
	}
	return out, nil
}

// parseClause reads OP VERSION from the front of s.
func parseClause(s string) (clause, string, error) {
	for _, o := range relOps {
		if !strings.HasPrefix(s, o.text) {
			continue
		}
		rest := strings.TrimLeft(s[len(o.text):], " \t")
		n := 0
		for n < len(rest) && isVersionByte(rest[n]) {
			n++
		}
		if n == 0 {
			return clause{}, "", fmt.Errorf("no version after %q", o.text)
		}
		return clause{op: o.op, sv: o.sv, version: rest[:n]}, rest[n:], nil
	}
	return clause{}, "", fmt.Errorf("%q does not start with an operator (>=, <=, >>, <<, >, <, =, !=)", s)
}

// readRelations parses every clause's version under scheme.
func readRelations(rel [][]clause, scheme Scheme) ([][]bound, error) {
	out := make([][]bound, len(rel))
	for i, conj := range rel {
		for _, cl := range conj {
			v, err := ParseVersion(scheme, cl.version)
			if err != nil {
				return nil, err
			}
			out[i] = append(out[i], bound{op: cl.op, v: v})
		}
	}
	return out, nil
}

// String returns the constraint as written (trimmed); "" for nil.
func (c *Constraint) String() string {
	if c == nil {
		return ""
	}
	return c.text
}

// Reads reports whether c can be evaluated under scheme: "^1.4" cannot
// under deb, ">= 1:2.0" cannot under semver. Under a scheme it cannot
// read, c allows nothing.
func (c *Constraint) Reads(scheme Scheme) bool {
	if c == nil {
		return true
	}
	switch scheme {
	case SchemeSemver:
		return c.sv != nil
	case SchemeDeb:
		return c.deb != nil
	case SchemeRPM:
		return c.rpm != nil
	}
	return false
}

// Allows reports whether v satisfies c under v's scheme. A nil constraint
// allows every version.
func (c *Constraint) Allows(v Version) bool {
	if c == nil {
		return true
	}
	if v.IsZero() {
		return false
	}
	switch v.scheme {
	case SchemeSemver:
		return c.sv != nil && c.sv.Check(v.sv)
	case SchemeDeb:
		return holds(c.deb, func(b Version) int { return v.Compare(b) })
	case SchemeRPM:
		return holds(c.rpm, func(b Version) int { return v.rpm.compare(b.rpm, true) })
	}
	return false
}

// holds evaluates alternatives of conjunctions with cmp(bound) = the
// version compared to the bound's version.
func holds(alts [][]bound, cmp func(Version) int) bool {
	for _, conj := range alts {
		ok := true
		for _, b := range conj {
			if !b.op.holds(cmp(b.v)) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (op relOp) holds(c int) bool {
	switch op {
	case opEQ:
		return c == 0
	case opNE:
		return c != 0
	case opLT:
		return c < 0
	case opLE:
		return c <= 0
	case opGT:
		return c > 0
	case opGE:
		return c >= 0
	}
	return false
}
