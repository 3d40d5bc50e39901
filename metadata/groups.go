package metadata

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// Group policies (see the package documentation, "Group policies").

// GroupPrefix starts the target path of every group policy:
// groups/GROUP/policy.
const GroupPrefix = "groups/"

// groupRolePrefix starts the name of the role `stork repo delegate
// --group G` creates for a group: group-G.
const groupRolePrefix = "group-"

// Limits of a group policy.
const (
	// MaxGroupNameLen bounds a group name.
	MaxGroupNameLen = 64
	// MaxGroupEntries bounds the require and the forbid list each.
	MaxGroupEntries = 4096
	// maxGroupPolicySize bounds the canonical encoding of a policy.
	maxGroupPolicySize = 1 << 20
)

var groupNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// ValidateGroupName checks a group name: [a-z0-9][a-z0-9._-]*, at most
// MaxGroupNameLen bytes, so that it is safe in a target path, a role name
// and a delegation glob.
func ValidateGroupName(g string) error {
	if len(g) > MaxGroupNameLen || !groupNameRE.MatchString(g) {
		return fmt.Errorf("group name %.70q: %w: want [a-z0-9][a-z0-9._-]*, at most %d bytes", g, ErrMalformed, MaxGroupNameLen)
	}
	return nil
}

// GroupTargetPath is the TUF target path of group g's policy.
func GroupTargetPath(g string) string { return GroupPrefix + g + "/policy" }

// GroupRole is the role name `stork repo delegate --group G` gives the
// delegation of group g alone.
func GroupRole(g string) string { return groupRolePrefix + g }

// parseGroupTargetPath returns the group of a policy target path.
func parseGroupTargetPath(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, GroupPrefix)
	if !ok {
		return "", false
	}
	g, ok := strings.CutSuffix(rest, "/policy")
	if !ok || ValidateGroupName(g) != nil {
		return "", false
	}
	return g, true
}

// GroupPolicy is what the members of a group must and must not have.
type GroupPolicy struct {
	// Require lists package references, one per name: NAME,
	// NAME@VERSION or NAME@CONSTRAINT (see ParseRef). Sorted by name.
	Require []string `json:"require,omitempty"`
	// Forbid lists package names the members must not have. Sorted.
	Forbid []string `json:"forbid,omitempty"`
}

// Refs parses the require list.
func (p GroupPolicy) Refs() ([]Ref, error) {
	out := make([]Ref, 0, len(p.Require))
	for _, s := range p.Require {
		r, err := ParseRef(s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Validate checks the policy: every reference parses, no name is listed
// twice or both required and forbidden, and both lists are sorted by name
// and within MaxGroupEntries.
func (p GroupPolicy) Validate() error {
	if len(p.Require) > MaxGroupEntries || len(p.Forbid) > MaxGroupEntries {
		return fmt.Errorf("group policy: %w: more than %d entries in a list", ErrTooLarge, MaxGroupEntries)
	}
	seen := map[string]bool{}
	prev := ""
	for _, s := range p.Require {
		r, err := ParseRef(s)
		if err != nil {
			return fmt.Errorf("group policy: require: %w", err)
		}
		if seen[r.Name] {
			return fmt.Errorf("group policy: require %s: %w: the name is listed twice", s, ErrMalformed)
		}
		if r.Name < prev {
			return fmt.Errorf("group policy: require %s: %w: not sorted by name", s, ErrMalformed)
		}
		seen[r.Name], prev = true, r.Name
	}
	if !slices.IsSorted(p.Forbid) {
		return fmt.Errorf("group policy: forbid: %w: not sorted", ErrMalformed)
	}
	for i, n := range p.Forbid {
		if err := ValidateName(n); err != nil {
			return fmt.Errorf("group policy: forbid: %w", err)
		}
		if seen[n] || (i > 0 && p.Forbid[i-1] == n) {
			return fmt.Errorf("group policy: forbid %s: %w: the name is listed twice or also required", n, ErrMalformed)
		}
	}
	return nil
}

// Encode returns the policy's canonical encoding: compact JSON, lists
// sorted, empty lists omitted.
func (p GroupPolicy) Encode() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if len(b) > maxGroupPolicySize {
		return nil, fmt.Errorf("group policy: %w: %d bytes, limit %d", ErrTooLarge, len(b), maxGroupPolicySize)
	}
	return b, nil
}

// DecodeGroupPolicy decodes untrusted policy bytes: strict JSON, within
// the limits, valid (GroupPolicy.Validate).
func DecodeGroupPolicy(b []byte) (GroupPolicy, error) {
	var p GroupPolicy
	if len(b) > maxGroupPolicySize {
		return p, fmt.Errorf("group policy: %w: %d bytes, limit %d", ErrTooLarge, len(b), maxGroupPolicySize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return GroupPolicy{}, fmt.Errorf("group policy: %w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return GroupPolicy{}, fmt.Errorf("group policy: %w: trailing data", ErrMalformed)
	}
	if err := p.Validate(); err != nil {
		return GroupPolicy{}, err
	}
	return p, nil
}

// GroupChange edits a policy (GroupPolicy.Apply).
type GroupChange struct {
	// Add requires each reference (NAME[@VERSION|@CONSTRAINT]), replacing
	// what the policy said of that name.
	Add []string
	// Remove forbids each name, replacing what the policy said of it.
	Remove []string
	// Drop removes each name from both lists: the policy says nothing of
	// it any more.
	Drop []string
}

// Apply returns p changed by ch, sorted and valid. Naming one package in
// two of Add, Remove and Drop is an error.
func (p GroupPolicy) Apply(ch GroupChange) (GroupPolicy, error) {
	req := map[string]string{}
	forbid := map[string]bool{}
	for _, s := range p.Require {
		r, err := ParseRef(s)
		if err != nil {
			return GroupPolicy{}, err
		}
		req[r.Name] = s
	}
	for _, n := range p.Forbid {
		forbid[n] = true
	}
	named := map[string]string{}
	mark := func(name, how string) error {
		if prev, ok := named[name]; ok {
			return fmt.Errorf("group change: %s: %w: named by both %s and %s", name, ErrMalformed, prev, how)
		}
		named[name] = how
		delete(req, name)
		delete(forbid, name)
		return nil
	}
	for _, s := range ch.Add {
		r, err := ParseRef(s)
		if err != nil {
			return GroupPolicy{}, fmt.Errorf("group change: add: %w", err)
		}
		if err := mark(r.Name, "add"); err != nil {
			return GroupPolicy{}, err
		}
		req[r.Name] = r.String()
	}
	for _, lists := range []struct {
		names []string
		how   string
	}{{ch.Remove, "remove"}, {ch.Drop, "drop"}} {
		for _, n := range lists.names {
			if err := ValidateName(n); err != nil {
				return GroupPolicy{}, fmt.Errorf("group change: %s: %w", lists.how, err)
			}
			if err := mark(n, lists.how); err != nil {
				return GroupPolicy{}, err
			}
			if lists.how == "remove" {
				forbid[n] = true
			}
		}
	}
	var out GroupPolicy
	for _, n := range sortedKeys(req) {
		out.Require = append(out.Require, req[n])
	}
	out.Forbid = sortedKeys(forbid)
	return out, out.Validate()
}

// groupTarget makes the TUF target of a policy: its custom field is the
// policy, and its length and hashes pin the policy's canonical encoding,
// which a client checks the custom field against (policyOfTarget).
func groupTarget(g string, p GroupPolicy) (*tufmeta.TargetFiles, error) {
	b, err := p.Encode()
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", g, err)
	}
	raw := json.RawMessage(b)
	return &tufmeta.TargetFiles{Length: int64(len(b)), Hashes: targetHashes(b), Path: GroupTargetPath(g), Custom: &raw}, nil
}

// policyOfTarget decodes a signed policy target and checks that its
// custom field is the policy its length and hashes pin.
func policyOfTarget(g string, tf *tufmeta.TargetFiles) (GroupPolicy, error) {
	if tf.Custom == nil {
		return GroupPolicy{}, fmt.Errorf("group %s: %w: the policy target has no custom field", g, ErrMalformed)
	}
	p, err := DecodeGroupPolicy(*tf.Custom)
	if err != nil {
		return GroupPolicy{}, fmt.Errorf("group %s: %w", g, err)
	}
	b, err := p.Encode()
	if err != nil {
		return GroupPolicy{}, fmt.Errorf("group %s: %w", g, err)
	}
	if err := tf.VerifyLengthHashes(b); err != nil {
		return GroupPolicy{}, fmt.Errorf("group %s: %w: the policy does not match its signed hashes: %v", g, ErrHashMismatch, err)
	}
	return p, nil
}

// GroupInfo is one group's policy as the repository signs it.
type GroupInfo struct {
	Name   string      `json:"name"`
	Policy GroupPolicy `json:"policy"`
	// Role is the targets role that signs it; Version that role's
	// version.
	Role    string `json:"role"`
	Version int64  `json:"version"`
}

// isGroupRole reports whether a delegation is a group role: every path
// pattern it has is under GroupPrefix. The client loads such roles only
// when a group is asked for, so that a bad group policy costs that group
// alone.
func isGroupRole(dr *tufmeta.DelegatedRole) bool {
	if len(dr.Paths) == 0 {
		return false
	}
	for _, p := range dr.Paths {
		if !strings.HasPrefix(p, GroupPrefix) {
			return false
		}
	}
	return true
}

// walkGroup finds group g's policy target the way TUF resolves a target
// path (pre-order depth first, terminating delegations end the search).
// Succinct delegations (hash bins) hold packages only and are not
// followed. It returns the target and the role that signs it, or nil if
// no role does.
func walkGroup(get roleGetter, g string) (*tufmeta.TargetFiles, *namedRole, error) {
	p := GroupTargetPath(g)
	var found *tufmeta.TargetFiles
	var role *namedRole
	err := walkRoles(get, func(e namedRole) ([]namedRole, bool, bool) {
		if tf, ok := e.m.Signed.Targets[p]; ok {
			found, role = tf, &e
			return nil, false, true
		}
		children, terminating := delegatedPath(nil, e, p)
		return children, terminating, false
	})
	if err != nil {
		return nil, nil, err
	}
	return found, role, nil
}

// groupNames lists the groups whose policy some role that may sign
// groups/ paths holds, visiting those roles from top-level targets.
func groupNames(get roleGetter) ([]string, error) {
	names := map[string]bool{}
	err := walkRoles(get, func(e namedRole) ([]namedRole, bool, bool) {
		for p := range e.m.Signed.Targets {
			if g, ok := parseGroupTargetPath(p); ok {
				names[g] = true
			}
		}
		if e.m.Signed.Delegations == nil {
			return nil, false, false
		}
		var children []namedRole
		for _, dr := range e.m.Signed.Delegations.Roles {
			if mayDelegateGroups(&dr) {
				children = append(children, namedRole{name: dr.Name, parent: e.name})
			}
		}
		return children, false, false
	})
	if err != nil {
		return nil, err
	}
	return sortedKeys(names), nil
}

// mayDelegateGroups reports whether a delegation could cover some group
// policy path.
func mayDelegateGroups(dr *tufmeta.DelegatedRole) bool {
	if len(dr.PathHashPrefixes) > 0 {
		return true
	}
	for _, p := range dr.Paths {
		first, _, _ := strings.Cut(p, "/")
		if ok, _ := filepath.Match(first, strings.TrimSuffix(GroupPrefix, "/")); ok {
			return true
		}
	}
	return false
}

// groupInfo resolves group g through get: its policy, checked, and the
// role that signs it; an error wrapping ErrNotFound if no role does.
func groupInfo(get roleGetter, g string) (*GroupInfo, error) {
	if err := ValidateGroupName(g); err != nil {
		return nil, err
	}
	tf, role, err := walkGroup(get, g)
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", g, err)
	}
	if tf == nil {
		return nil, fmt.Errorf("group %s: %w: no signed policy", g, ErrNotFound)
	}
	p, err := policyOfTarget(g, tf)
	if err != nil {
		return nil, err
	}
	return &GroupInfo{Name: g, Policy: p, Role: role.name, Version: role.m.Signed.Version}, nil
}
