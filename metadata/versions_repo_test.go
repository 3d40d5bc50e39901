package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// pkgOpts is AddOptions for a one-file tree whose content is body.
func pkgOpts(t *testing.T, scheme Scheme, name, version, body string, deps ...string) AddOptions {
	return AddOptions{
		Name: name, Version: version, Scheme: scheme, Depends: deps,
		Source: writeTree(t, map[string]string{"usr/bin/" + name: body}),
	}
}

func resolvedVersions(rs []*Resolved) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name+"@"+r.Version)
	}
	return strings.Join(out, " ")
}

// TestPublishDebVersionsAsGiven publishes packages under their real Debian
// versions in one AddMany and resolves them through the client by exact
// version and by constraint.
func TestPublishDebVersionsAsGiven(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	before := e.state()
	list := []AddOptions{
		pkgOpts(t, SchemeDeb, "bash", "5.2.15-2+b13", "bash", "libc6>= 2.36", "base-files>=2.1.12", "libtinfo6>=6"),
		pkgOpts(t, SchemeDeb, "util-linux", "1:2.39.5-0+deb12u3", "util-linux", "libc6>=2.34 | musl"),
		pkgOpts(t, SchemeDeb, "coreutils", "9.1-1", "coreutils 9.1", "libc6>=2.34"),
		pkgOpts(t, SchemeDeb, "coreutils", "8.32-4.1", "coreutils 8.32"),
		pkgOpts(t, SchemeDeb, "libc6", "2.36-9+deb12u10", "libc 2.36"),
		pkgOpts(t, SchemeDeb, "libc6", "2.41~rc1-1", "libc 2.41rc1"),
		pkgOpts(t, SchemeDeb, "base-files", "12.4+deb12u11", "base-files"),
	}
	res, err := e.repo.AddMany(ctx, list)
	if err != nil {
		t.Fatalf("AddMany: %v", err)
	}
	for i, r := range res {
		if r.Version != list[i].Version || r.Scheme != SchemeDeb || r.Unchanged {
			t.Errorf("AddMany[%d] = %s@%s (%s, unchanged %v), want %s as given", i, r.Name, r.Version, r.Scheme, r.Unchanged, list[i].Version)
		}
	}
	if !slices.Equal(res[0].Missing, []string{"libtinfo6>=6"}) || len(res[1].Missing) != 0 || len(res[2].Missing) != 0 {
		t.Errorf("Missing = %q, %q, %q; want only bash's libtinfo6>=6", res[0].Missing, res[1].Missing, res[2].Missing)
	}
	// One commit for the whole list: each role signed once.
	after := e.state()
	for role, got := range map[string]int64{
		"targets":   after.targets[tufmeta.TARGETS].Signed.Version - before.targets[tufmeta.TARGETS].Signed.Version,
		"snapshot":  after.snapshot.Signed.Version - before.snapshot.Signed.Version,
		"timestamp": after.timestamp.Signed.Version - before.timestamp.Signed.Version,
	} {
		if got != 1 {
			t.Errorf("%s version went up by %d for 7 packages, want 1", role, got)
		}
	}
	pkgs, err := e.repo.Packages()
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, p := range pkgs {
		listed = append(listed, p.Name+"@"+p.Version+"/"+string(p.Scheme))
	}
	want := "base-files@12.4+deb12u11/deb bash@5.2.15-2+b13/deb coreutils@8.32-4.1/deb coreutils@9.1-1/deb " +
		"libc6@2.36-9+deb12u10/deb libc6@2.41~rc1-1/deb util-linux@1:2.39.5-0+deb12u3/deb"
	if got := strings.Join(listed, " "); got != want {
		t.Errorf("Packages() = %s\nwant %s", got, want)
	}

	c := e.client("")
	for _, tt := range []struct{ ref, want string }{
		{"coreutils@>=9.1", "coreutils@9.1-1"},
		{"coreutils", "coreutils@9.1-1"},
		{"coreutils@<< 9", "coreutils@8.32-4.1"},
		{"coreutils@>= 8, << 9.1", "coreutils@8.32-4.1"},
		{"coreutils@9.1-1", "coreutils@9.1-1"},
		{"coreutils@0:9.1-1", "coreutils@9.1-1"}, // equal under deb
		{"util-linux@1:2.39.5-0+deb12u3", "util-linux@1:2.39.5-0+deb12u3"},
		{"util-linux@>=2.40", "util-linux@1:2.39.5-0+deb12u3"}, // the epoch outweighs
		{"libc6", "libc6@2.41~rc1-1"},
		{"libc6@<< 2.37", "libc6@2.36-9+deb12u10"},
		{"bash@5.2.15-2+b13", "bash@5.2.15-2+b13"},
	} {
		r, err := c.Resolve(ctx, tt.ref)
		if err != nil || r.Name+"@"+r.Version != tt.want || r.Scheme != SchemeDeb {
			t.Errorf("Resolve(%q) = %v, want %s", tt.ref, err, tt.want)
			if r != nil {
				t.Errorf("  got %s@%s (%s)", r.Name, r.Version, r.Scheme)
			}
		}
	}
	for _, ref := range []string{"coreutils@>=10", "coreutils@9.1", "coreutils@^9", "bash@5.2.15-2"} {
		if _, err := c.Resolve(ctx, ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve(%q) = %v, want ErrNotFound", ref, err)
		}
	}
	rs, err := c.ResolveClosure(ctx, "util-linux")
	if err != nil || resolvedVersions(rs) != "util-linux@1:2.39.5-0+deb12u3 libc6@2.41~rc1-1" {
		t.Errorf("ResolveClosure(util-linux) = %s, %v", resolvedVersions(rs), err)
	}
	if _, err := c.ResolveClosure(ctx, "bash"); !errors.Is(err, ErrDependency) || !strings.Contains(err.Error(), "libtinfo6") {
		t.Errorf("ResolveClosure(bash) = %v, want ErrDependency naming libtinfo6", err)
	}
}

// TestSemverVersionKeptAsGiven: "1.2" is published as "1.2", and found by
// an equal version.
func TestSemverVersionKeptAsGiven(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	res := e.add("foo", "1.2", "foo 1.2")
	if res.Version != "1.2" || res.Scheme != SchemeSemver {
		t.Fatalf("Add(foo@1.2) = %s (%s), want 1.2 semver", res.Version, res.Scheme)
	}
	if e.target(TargetPath("foo", "1.2")) == nil {
		t.Fatalf("no target %s", TargetPath("foo", "1.2"))
	}
	c := e.client("")
	for _, ref := range []string{"foo@1.2", "foo@1.2.0", "foo@v1.2", "foo@>=1.1", "foo"} {
		r, err := c.Resolve(ctx, ref)
		if err != nil || r.Version != "1.2" {
			t.Errorf("Resolve(%q) = %v, want foo@1.2", ref, err)
		}
	}
}

func TestAddVersionConflicts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	e.add("semverpkg", "1.0.0", "s")
	if _, err := e.repo.Add(ctx, pkgOpts(t, SchemeDeb, "debpkg", "1.0", "d")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.repo.Add(ctx, pkgOpts(t, SchemeRPM, "rpmpkg", "1.0-1", "r")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		opts      AddOptions
		unchanged string // the published version reported, or "" for an error
		errWant   []string
	}{
		{"deb equal, same content", pkgOpts(t, SchemeDeb, "debpkg", "0:1.0-0", "d"), "1.0", nil},
		{"deb equal, other content", pkgOpts(t, SchemeDeb, "debpkg", "1.0-0", "other"), "", []string{"debpkg@1.0", "equal under deb"}},
		{"semver equal, other content", pkgOpts(t, SchemeSemver, "semverpkg", "v1", "other"), "", []string{"semverpkg@1.0.0"}},
		{"rpm equal, other content", pkgOpts(t, SchemeRPM, "rpmpkg", "1_0-1", "other"), "", []string{"rpmpkg@1.0-1"}},
		{"other scheme", pkgOpts(t, SchemeSemver, "debpkg", "2.0.0", "d2"), "", []string{"scheme", "deb"}},
		{"other scheme, unmarked semver", pkgOpts(t, SchemeDeb, "semverpkg", "2.0", "s2"), "", []string{"scheme", "semver"}},
	}
	for _, tt := range tests {
		res, err := e.repo.Add(ctx, tt.opts)
		if tt.unchanged != "" {
			if err != nil || !res.Unchanged || res.Version != tt.unchanged {
				t.Errorf("%s: Add = %+v, %v, want unchanged as %s", tt.name, res, err, tt.unchanged)
			}
			continue
		}
		if !errors.Is(err, ErrExists) {
			t.Errorf("%s: Add = %v, want ErrExists", tt.name, err)
			continue
		}
		for _, s := range tt.errWant {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: Add = %v, want it to mention %q", tt.name, err, s)
			}
		}
	}
	// Within one batch too, and nothing of a failed batch is published.
	_, err := e.repo.AddMany(ctx, []AddOptions{
		pkgOpts(t, SchemeDeb, "newpkg", "2.0", "a"),
		pkgOpts(t, SchemeDeb, "newpkg", "2.0-0", "b"),
	})
	if !errors.Is(err, ErrExists) {
		t.Errorf("AddMany(two equal versions) = %v, want ErrExists", err)
	}
	pkgs, _ := e.repo.Packages()
	for _, p := range pkgs {
		if p.Name == "newpkg" {
			t.Errorf("failed batch published %s@%s", p.Name, p.Version)
		}
	}
}

// TestTargetSchemeField: the scheme comes from the signed custom field; a
// target without one is semver (published before schemes existed).
func TestTargetSchemeField(t *testing.T) {
	t.Parallel()
	mc := SumCID([]byte("m")).String()
	tests := []struct {
		path, custom string
		scheme       Scheme
		ok           bool
	}{
		{"packages/a/1.0.0", `{"manifest":"` + mc + `","size":1}`, SchemeSemver, true},
		{"packages/a/1.0.0", `{"manifest":"` + mc + `","size":1,"scheme":"semver"}`, SchemeSemver, true},
		{"packages/a/1:1.0-1", `{"manifest":"` + mc + `","size":1,"scheme":"deb"}`, SchemeDeb, true},
		{"packages/a/1.0^git1-2", `{"manifest":"` + mc + `","size":1,"scheme":"rpm"}`, SchemeRPM, true},
		{"packages/a/1:1.0-1", `{"manifest":"` + mc + `","size":1}`, "", false}, // not semver
		{"packages/a/1.0_1", `{"manifest":"` + mc + `","size":1,"scheme":"deb"}`, "", false},
		{"packages/a/1.0", `{"manifest":"` + mc + `","size":1,"scheme":"pep440"}`, "", false},
		{"packages/a/1.0", `{"manifest":"` + mc + `","size":1,"scheme":"deb","depends":["b | c>>1"]}`, SchemeDeb, true},
	}
	for _, tt := range tests {
		raw := json.RawMessage(tt.custom)
		info, err := packageInfo(tt.path, &tufmeta.TargetFiles{Length: 1, Custom: &raw})
		if (err == nil) != tt.ok || (tt.ok && info.Scheme != tt.scheme) {
			t.Errorf("packageInfo(%s, %s) = %s, %v; want %s ok=%v", tt.path, tt.custom, info.Scheme, err, tt.scheme, tt.ok)
		}
	}
}

func TestResolveAlternatives(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	e.add("mta-a", "1.0.0", "a")
	e.add("mta-b", "1.0.0", "b")
	e.add("first-missing", "1.0.0", "1", "mta-x | mta-a")
	e.add("first-too-old", "1.0.0", "2", "mta-a>=2 | mta-b")
	e.add("already-needed", "1.0.0", "3", "mta-a", "mta-b | mta-a")
	e.add("none", "1.0.0", "4", "mta-x | mta-y>=1")
	e.add("cyc-x", "1.0.0", "5", "mta-x | cyc-y")
	e.add("cyc-y", "1.0.0", "6", "cyc-x | mta-a")
	c := e.client("")
	for _, tt := range []struct{ ref, want string }{
		{"first-missing", "first-missing@1.0.0 mta-a@1.0.0"},
		{"first-too-old", "first-too-old@1.0.0 mta-b@1.0.0"},
		{"already-needed", "already-needed@1.0.0 mta-a@1.0.0"},
	} {
		rs, err := c.ResolveClosure(ctx, tt.ref)
		if err != nil || resolvedVersions(rs) != tt.want {
			t.Errorf("ResolveClosure(%q) = %s, %v, want %s", tt.ref, resolvedVersions(rs), err, tt.want)
		}
	}
	if _, err := c.ResolveClosure(ctx, "none"); !errors.Is(err, ErrDependency) || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "mta-x | mta-y>=1") {
		t.Errorf("ResolveClosure(none) = %v, want ErrDependency and ErrNotFound naming the alternatives", err)
	}
	// A cycle through the chosen alternatives is a closure like any other.
	if rs, err := c.ResolveClosure(ctx, "cyc-x"); err != nil || resolvedVersions(rs) != "cyc-x@1.0.0 cyc-y@1.0.0" {
		t.Errorf("ResolveClosure(cyc-x) = %s, %v, want cyc-x@1.0.0 cyc-y@1.0.0", resolvedVersions(rs), err)
	}
}

// TestDelegatedDebVersion: a delegated publisher's glob patterns match
// target paths whose version holds ':', '~' and '+', the version part of
// a pattern included, and the client sees the package through the
// delegation.
func TestDelegatedDebVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	alice := mustKey(t)
	err := e.repo.Delegate(ctx, DelegateOptions{Role: "alice", Patterns: []string{"packages/alice-*/1:*"}, Keys: []*tufmeta.Key{alice.Public()}})
	if err != nil {
		t.Fatalf("Delegate: %v", err)
	}
	pub, err := OpenRepo(e.dir, []*PrivateKey{alice, e.keys.snapshot, e.keys.timestamp}, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	res, err := pub.Add(ctx, pkgOpts(t, SchemeDeb, "alice-tool", "1:2.0~rc1+b1-1", "alice"))
	if err != nil || res.Role != "alice" {
		t.Fatalf("publisher Add(alice-tool@1:2.0~rc1+b1-1) = %+v, %v, want role alice", res, err)
	}
	if _, err := pub.Add(ctx, pkgOpts(t, SchemeDeb, "alice-tool", "3.0", "alice 3")); !errors.Is(err, ErrMissingKey) {
		t.Errorf("publisher Add(alice-tool@3.0) = %v, want ErrMissingKey (the pattern asks for epoch 1)", err)
	}
	r, err := e.client("").Resolve(ctx, "alice-tool@>= 1:2.0~")
	if err != nil || r.Role != "alice" || r.Version != "1:2.0~rc1+b1-1" {
		t.Fatalf("Resolve(alice-tool@>= 1:2.0~) = %+v, %v, want 1:2.0~rc1+b1-1 by role alice", r, err)
	}
}
