package metadata

import (
	"testing"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// walkRepo is an in-memory delegation tree for walkTarget and
// rolesForName: role name to its targets and delegations.
type walkRepo map[string]*tufmeta.Metadata[tufmeta.TargetsType]

func (r walkRepo) get(role, _ string) (*tufmeta.Metadata[tufmeta.TargetsType], error) {
	return r[role], nil
}

func (r walkRepo) role(name string, targets []string, dels ...tufmeta.DelegatedRole) {
	m := tufmeta.Targets()
	for _, p := range targets {
		m.Signed.Targets[p] = tufmeta.TargetFile()
	}
	if len(dels) > 0 {
		m.Signed.Delegations = &tufmeta.Delegations{Roles: dels}
	}
	r[name] = m
}

// TestWalkTargetOrder checks TUF's walk: pre-order depth first, a
// terminating delegation ends the search for the paths it covers, and the
// first role that lists the path signs it.
func TestWalkTargetOrder(t *testing.T) {
	r := walkRepo{}
	r.role(tufmeta.TARGETS, nil,
		tufmeta.DelegatedRole{Name: "alice", Paths: []string{"packages/a*/*"}},
		tufmeta.DelegatedRole{Name: "bob", Paths: []string{"packages/*/*"}},
		tufmeta.DelegatedRole{Name: "carol", Paths: []string{"packages/*/*"}})
	r.role("alice", []string{"packages/abd/2"},
		tufmeta.DelegatedRole{Name: "alice-sub", Paths: []string{"packages/abc/*"}, Terminating: true},
		tufmeta.DelegatedRole{Name: "alice-sub2", Paths: []string{"packages/abc/*"}})
	r.role("alice-sub", []string{"packages/abc/2"})
	r.role("alice-sub2", []string{"packages/abc/3"})
	r.role("bob", []string{"packages/abc/1", "packages/abd/1", "packages/abd/2", "packages/bcd/1"})
	r.role("carol", []string{"packages/bcd/1", "packages/cde/1"})

	for _, tc := range []struct {
		path, want string
	}{
		{"packages/abc/2", "alice-sub"}, // below alice, depth first
		{"packages/abc/3", ""},          // alice-sub is terminating: alice-sub2 is never asked
		{"packages/abc/1", ""},          // nor bob, waiting since targets
		{"packages/abd/1", "bob"},       // alice covers abd but delegates it to no one
		{"packages/abd/2", "alice"},     // alice before bob
		{"packages/bcd/1", "bob"},       // bob before carol
		{"packages/cde/1", "carol"},
		{"packages/def/1", ""},
	} {
		tf, role, err := walkTarget(r.get, tc.path)
		if err != nil {
			t.Fatalf("walkTarget(%q): %v", tc.path, err)
		}
		if role != tc.want || (tf != nil) != (tc.want != "") {
			t.Errorf("walkTarget(%q) = %v, %q, want role %q", tc.path, tf, role, tc.want)
		}
	}

	roles, err := rolesForName(r.get, "abc")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range roles {
		names = append(names, e.name)
	}
	want := []string{tufmeta.TARGETS, "alice", "alice-sub", "alice-sub2", "bob", "carol"}
	if len(names) != len(want) {
		t.Fatalf("rolesForName(abc) = %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("rolesForName(abc) = %v, want %v", names, want)
		}
	}
}
