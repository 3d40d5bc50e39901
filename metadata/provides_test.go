package metadata

import (
	"context"
	"errors"
	"slices"
	"testing"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// debPkg is a deb-scheme package for AddMany: name@version with
// dependencies and provided names.
func debPkg(t *testing.T, name, version string, deps, provides []string) AddOptions {
	o := pkgOpts(t, SchemeDeb, name, version, name+" "+version, deps...)
	o.Provides = provides
	return o
}

// TestProvidesPublish: repo add signs what a package provides in its
// target and indexes it under the provided name, in the role that may
// sign that name; a dependency on a provided name is not reported
// missing; a name the publisher may not sign is reported, not indexed.
func TestProvidesPublish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	res, err := e.repo.AddMany(ctx, []AddOptions{
		debPkg(t, "mawk", "1.3.4-1", nil, []string{"awk", "awk", "mawk-api=1.3"}),
		debPkg(t, "base-files", "12.4", []string{"awk", "sed"}, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res[0].Provides, []string{"awk", "mawk-api=1.3"}) || len(res[0].NotIndexed) != 0 {
		t.Errorf("AddMany(mawk) provides %q, not indexed %q; want [awk mawk-api=1.3], none", res[0].Provides, res[0].NotIndexed)
	}
	if !slices.Equal(res[1].Missing, []string{"sed"}) {
		t.Errorf("AddMany(base-files) missing %q, want [sed] (awk is provided)", res[1].Missing)
	}
	st := e.state()
	idx := roleProvides(st.targets[tufmeta.TARGETS])
	if !slices.Equal(idx["awk"], []string{"mawk"}) || !slices.Equal(idx["mawk-api"], []string{"mawk"}) {
		t.Errorf("top-level provides index = %v", idx)
	}
	pkgs, err := e.repo.Packages()
	if err != nil || len(pkgs) != 2 || !slices.Equal(pkgs[1].Provides, []string{"awk", "mawk-api=1.3"}) {
		t.Errorf("Packages() = %+v, %v", pkgs, err)
	}
	// Publishing again changes nothing; another provider joins the index.
	again, err := e.repo.AddMany(ctx, []AddOptions{
		debPkg(t, "mawk", "1.3.4-1", nil, []string{"awk", "mawk-api=1.3"}),
		debPkg(t, "gawk", "5.2", nil, []string{"awk"}),
	})
	if err != nil || !again[0].Unchanged {
		t.Fatalf("AddMany again = %+v, %v; want mawk unchanged", again, err)
	}
	if got := roleProvides(e.state().targets[tufmeta.TARGETS])["awk"]; !slices.Equal(got, []string{"gawk", "mawk"}) {
		t.Errorf("awk's providers = %q, want [gawk mawk]", got)
	}
	// Other provides for the same version is other content.
	if _, err := e.repo.Add(ctx, debPkg(t, "mawk", "1.3.4-1", nil, []string{"awk"})); !errors.Is(err, ErrExists) {
		t.Errorf("Add(mawk with other provides) = %v, want ErrExists", err)
	}

	// A publisher whose role covers "tool*" only cannot index "awk".
	d := newTestEnv(t, nil)
	pub := mustKey(t)
	if err := d.repo.Delegate(ctx, DelegateOptions{Role: "tools", Patterns: []string{"tool*"}, Keys: []*tufmeta.Key{pub.Public()}}); err != nil {
		t.Fatal(err)
	}
	pr, err := OpenRepo(d.dir, []*PrivateKey{pub, d.keys.snapshot, d.keys.timestamp}, d.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pr.Add(ctx, debPkg(t, "toolbox", "1", nil, []string{"awk", "toolkit"}))
	if err != nil || !slices.Equal(r.NotIndexed, []string{"awk"}) {
		t.Errorf("Add(toolbox) by publisher tools = %+v, %v; want awk not indexed", r, err)
	}
	st = d.state()
	if got := roleProvides(st.targets["tools"]); !slices.Equal(got["toolkit"], []string{"toolbox"}) || len(got["awk"]) != 0 {
		t.Errorf("the tools role's provides index = %v, want toolkit only", got)
	}
}

// TestUseBinsMovesProvides: moving a repository to bins moves each entry
// of the provides index to the bin of its name, where clients look.
func TestUseBinsMovesProvides(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	if _, err := e.repo.AddMany(ctx, []AddOptions{
		debPkg(t, "mawk", "1.3.4-1", nil, []string{"awk"}),
		debPkg(t, "gawk", "5.2", nil, []string{"awk", "gawk-api=5.2"}),
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.repo.UseBins(ctx, 16); err != nil {
		t.Fatal(err)
	}
	st := e.state()
	if idx := roleProvides(st.targets[tufmeta.TARGETS]); len(idx) != 0 {
		t.Errorf("top-level provides index after UseBins = %v, want none", idx)
	}
	sr := succinctOf(st.targets[BinsRole])
	for name, want := range map[string][]string{"awk": {"gawk", "mawk"}, "gawk-api": {"gawk"}} {
		if got := roleProvides(st.targets[binOf(sr, name)])[name]; !slices.Equal(got, want) {
			t.Errorf("providers of %s in its bin %s = %q, want %q", name, binOf(sr, name), got, want)
		}
	}
}
