package metadata

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// closureCase is one ResolveClosure call and what it must give: the
// closure as NAME@VERSION list, or an error wrapping every error of errIs
// and mentioning every string of errHas.
type closureCase struct {
	ref    string
	want   string
	errIs  []error
	errHas []string
}

func checkClosures(t *testing.T, c *Client, cases []closureCase) {
	t.Helper()
	ctx := context.Background()
	for _, tt := range cases {
		rs, err := c.ResolveClosure(ctx, tt.ref)
		if tt.want != "" {
			if err != nil || resolvedVersions(rs) != tt.want {
				t.Errorf("ResolveClosure(%q) = %s, %v, want %s", tt.ref, resolvedVersions(rs), err, tt.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ResolveClosure(%q) = %s, want an error", tt.ref, resolvedVersions(rs))
			continue
		}
		for _, target := range tt.errIs {
			if !errors.Is(err, target) {
				t.Errorf("ResolveClosure(%q) = %v, want it to wrap %v", tt.ref, err, target)
			}
		}
		for _, s := range tt.errHas {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("ResolveClosure(%q) = %v, want it to mention %q", tt.ref, err, s)
			}
		}
	}
}

// TestResolveCycles: dependency cycles are legal (Debian has them at its
// base); the closure is a set, ordered dependencies first with the
// members of a cycle by name; what is truly unsatisfiable is still
// refused, naming who needs what.
func TestResolveCycles(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	add := func(name, version string, deps ...string) AddOptions {
		return debPkg(t, name, version, deps, nil)
	}
	if _, err := e.repo.AddMany(context.Background(), []AddOptions{
		// libc6 <-> libgcc-s1, as in Debian.
		add("libc6", "2.36-9", "libgcc-s1"),
		add("libgcc-s1", "12.2.0-14", "libc6>=2.35", "gcc-12-base=12.2.0-14"),
		add("gcc-12-base", "12.2.0-14"),
		add("app", "1.0-1", "libc6>=2.36", "zlib1g"),
		add("zlib1g", "1:1.2.13-1", "libc6>=2.14"),
		// a -> b -> c -> a
		add("c3-a", "1", "c3-b"),
		add("c3-b", "1", "c3-c"),
		add("c3-c", "1", "c3-a>=1"),
		// depends on itself
		add("selfish", "2.0", "selfish>=2", "libc6"),
		add("selfish-old", "1.0", "selfish-old>=2"),
		// a cycle with an unsatisfiable branch
		add("cyc-bad-a", "1", "cyc-bad-b"),
		add("cyc-bad-b", "1", "cyc-bad-a", "nowhere>=1"),
		add("cyc-tight-a", "1", "cyc-tight-b"),
		add("cyc-tight-b", "1", "cyc-tight-a>=2"),
		// a cycle that pins the root to another version
		add("pin", "1", "pin-dep"),
		add("pin", "2", "pin-dep"),
		add("pin-dep", "1", "pin=1"),
	}); err != nil {
		t.Fatal(err)
	}
	c := e.client("")
	checkClosures(t, c, []closureCase{
		{ref: "libc6", want: "libc6@2.36-9 gcc-12-base@12.2.0-14 libgcc-s1@12.2.0-14"},
		{ref: "libgcc-s1", want: "libgcc-s1@12.2.0-14 gcc-12-base@12.2.0-14 libc6@2.36-9"},
		// Dependencies first: the libc6 cycle (its members by name after
		// gcc-12-base, which they need), then zlib1g, which needs libc6.
		{ref: "app", want: "app@1.0-1 gcc-12-base@12.2.0-14 libc6@2.36-9 libgcc-s1@12.2.0-14 zlib1g@1:1.2.13-1"},
		{ref: "c3-b", want: "c3-b@1 c3-a@1 c3-c@1"},
		{ref: "selfish", want: "selfish@2.0 gcc-12-base@12.2.0-14 libc6@2.36-9 libgcc-s1@12.2.0-14"},
		{ref: "selfish-old", errIs: []error{ErrDependency}, errHas: []string{"selfish-old@1.0 needs selfish-old>=2", "selfish-old@1.0 was already chosen"}},
		{ref: "cyc-bad-a", errIs: []error{ErrDependency, ErrNotFound}, errHas: []string{"cyc-bad-b@1 needs nowhere>=1"}},
		{ref: "cyc-tight-a", errIs: []error{ErrDependency}, errHas: []string{"cyc-tight-b@1 needs cyc-tight-a>=2", "cyc-tight-a@1 was already chosen", "the request for cyc-tight-a"}},
		{ref: "pin", errIs: []error{ErrDependency}, errHas: []string{"pin-dep@1 needs pin=1", "pin@2 was already chosen"}},
		{ref: "pin@1", want: "pin@1 pin-dep@1"},
	})
	// The same answer every time.
	first, err := c.ResolveClosure(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		again, _ := c.ResolveClosure(context.Background(), "app")
		if resolvedVersions(again) != resolvedVersions(first) {
			t.Fatalf("ResolveClosure(app) = %s, then %s", resolvedVersions(first), resolvedVersions(again))
		}
	}
}

// TestResolveVirtual: a dependency on a name no real package has is
// satisfied by a package that provides it; versioned dependencies only by
// versioned provides the constraint allows; a real package is preferred
// over a provider; a provider already in the closure over a new one; then
// the newest version of the lexically first provider name.
func TestResolveVirtual(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	if _, err := e.repo.AddMany(context.Background(), []AddOptions{
		debPkg(t, "mawk", "1.3.4-1", nil, []string{"awk"}),
		debPkg(t, "gawk", "1:5.2.1-2", nil, []string{"awk"}),
		debPkg(t, "original-awk", "2012-12-20-6", nil, []string{"awk"}),
		debPkg(t, "base-files", "12.4", []string{"awk"}, nil),
		// versioned: perlapi-5.36.0 is provided by perl-base at that version.
		debPkg(t, "perl-base", "5.36.0-7", nil, []string{"perlapi-5.36.0", "libscalar-list-utils-perl=1:1.63-1"}),
		debPkg(t, "perl-old", "5.32.0-1", nil, []string{"libscalar-list-utils-perl=1:1.55-1", "perlapi-5.32.0"}),
		debPkg(t, "libfoo-perl", "1.0-1", []string{"libscalar-list-utils-perl>=1:1.60"}, nil),
		debPkg(t, "libbar-perl", "1.0-1", []string{"libscalar-list-utils-perl>=1:2"}, nil),
		debPkg(t, "needs-api", "1.0", []string{"perlapi-5.36.0>=1"}, nil), // an unversioned provide satisfies no versioned dependency
		// a real package is preferred over a provider
		debPkg(t, "debconf", "1.5.82", nil, []string{"debconf-2.0"}),
		debPkg(t, "cdebconf", "0.270", nil, []string{"debconf", "debconf-2.0"}),
		debPkg(t, "tzdata", "2024a-0", []string{"debconf>=0.5 | debconf-2.0"}, nil),
		debPkg(t, "uses-debconf", "1", []string{"debconf"}, nil),
		// a provider already in the closure is preferred
		debPkg(t, "wants-mawk", "1", []string{"mawk", "base-files"}, nil),
		// alternatives with a virtual name
		debPkg(t, "dbus-user-session", "1.14", nil, []string{"default-dbus-session-bus", "dbus-session-bus"}),
		debPkg(t, "dconf-service", "0.40", []string{"default-dbus-session-bus | dbus-session-bus"}, nil),
		debPkg(t, "alt-missing-first", "1", []string{"no-such-name | awk"}, nil),
		debPkg(t, "alt-virtual-first", "1", []string{"mail-transport-agent | debconf"}, nil),
		debPkg(t, "alt-in-closure", "1", []string{"debconf", "debconf-2.0 | cdebconf"}, nil),
		// a virtual name that is only wanted, never provided
		debPkg(t, "wants-mta", "1", []string{"mail-transport-agent"}, nil),
		// the provider's own dependencies come along, cycle included
		debPkg(t, "exim4", "4.96-15", []string{"exim4-base"}, []string{"mail-transport-agent"}),
		debPkg(t, "exim4-base", "4.96-15", []string{"exim4", "awk"}, nil),
		debPkg(t, "mailer", "1", []string{"mail-transport-agent"}, nil),
	}); err != nil {
		t.Fatal(err)
	}
	c := e.client("")
	checkClosures(t, c, []closureCase{
		// gawk < mawk < original-awk: the first name, its newest version.
		{ref: "base-files", want: "base-files@12.4 gawk@1:5.2.1-2"},
		{ref: "wants-mawk", want: "wants-mawk@1 mawk@1.3.4-1 base-files@12.4"},
		{ref: "libfoo-perl", want: "libfoo-perl@1.0-1 perl-base@5.36.0-7"},
		{ref: "libbar-perl", errIs: []error{ErrDependency}, errHas: []string{"libbar-perl@1.0-1 needs libscalar-list-utils-perl>=1:2", "no package providing"}},
		{ref: "needs-api", errIs: []error{ErrDependency}, errHas: []string{"needs-api@1.0 needs perlapi-5.36.0>=1"}},
		{ref: "tzdata", want: "tzdata@2024a-0 debconf@1.5.82"},
		{ref: "uses-debconf", want: "uses-debconf@1 debconf@1.5.82"},
		{ref: "dconf-service", want: "dconf-service@0.40 dbus-user-session@1.14"},
		{ref: "alt-missing-first", want: "alt-missing-first@1 gawk@1:5.2.1-2"},
		{ref: "alt-virtual-first", want: "alt-virtual-first@1 gawk@1:5.2.1-2 exim4@4.96-15 exim4-base@4.96-15"},
		{ref: "alt-in-closure", want: "alt-in-closure@1 debconf@1.5.82"},
		{ref: "mailer", want: "mailer@1 gawk@1:5.2.1-2 exim4@4.96-15 exim4-base@4.96-15"},
		{ref: "wants-mta@1", want: "wants-mta@1 gawk@1:5.2.1-2 exim4@4.96-15 exim4-base@4.96-15"},
		{ref: "no-such", errIs: []error{ErrNotFound}},
	})
	// A provider is not a package of the name it provides.
	if _, err := c.Resolve(context.Background(), "awk"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(awk) = %v, want ErrNotFound", err)
	}
	rs, err := c.ResolveClosure(context.Background(), "mawk")
	if err != nil || len(rs) != 1 || !slices.Equal(rs[0].Provides, []string{"awk"}) {
		t.Errorf("ResolveClosure(mawk) = %+v, %v; want mawk alone, providing awk", rs, err)
	}
}

// TestResolveVirtualMissing: a dependency on a name nothing is or
// provides is refused as missing, naming who needs it.
func TestResolveVirtualMissing(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	if _, err := e.repo.AddMany(context.Background(), []AddOptions{
		debPkg(t, "a", "1", []string{"b"}, nil),
		debPkg(t, "b", "1", []string{"a", "c | d"}, nil),
	}); err != nil {
		t.Fatal(err)
	}
	checkClosures(t, e.client(""), []closureCase{
		{ref: "a", errIs: []error{ErrDependency, ErrNotFound}, errHas: []string{"b@1 needs c | d"}},
	})
}

// TestProvidesTrust: a package counts as a provider of NAME only if its
// own signed target says so AND the provides index of a role that may
// sign NAME lists it; in a binned repository that is NAME's bin, and an
// index entry in any other bin is ignored.
func TestProvidesTrust(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, func(cfg *RepoConfig) { cfg.Bins = 16 })
	if _, err := e.repo.AddMany(ctx, []AddOptions{
		debPkg(t, "mawk", "1.3.4-1", nil, []string{"awk"}),
		debPkg(t, "impostor", "1", nil, nil),
		debPkg(t, "base-files", "12.4", []string{"awk"}, nil),
	}); err != nil {
		t.Fatal(err)
	}
	st := e.state()
	sr := succinctOf(st.targets[BinsRole])
	awkBin, mawkBin := binOf(sr, "awk"), binOf(sr, "mawk")
	if got := roleProvides(st.targets[awkBin])["awk"]; !slices.Equal(got, []string{"mawk"}) {
		t.Fatalf("the provides index of awk's bin %s = %q, want [mawk]", awkBin, got)
	}
	checkClosures(t, e.client(""), []closureCase{{ref: "base-files", want: "base-files@12.4 mawk@1.3.4-1"}})

	// The index lists impostor, whose target does not provide awk: ignored.
	e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){
		awkBin: func(s *tufmeta.TargetsType) {
			s.UnrecognizedFields[providesField] = map[string][]string{"awk": {"impostor"}}
		},
	}, roleKeys: []*PrivateKey{e.keys.targets}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
	checkClosures(t, e.client(""), []closureCase{{ref: "base-files", errIs: []error{ErrDependency, ErrNotFound}, errHas: []string{"base-files@12.4 needs awk"}}})

	// mawk's target provides awk, but the index naming it is in mawk's
	// bin, not awk's: ignored.
	if awkBin != mawkBin {
		e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){
			mawkBin: func(s *tufmeta.TargetsType) {
				if s.UnrecognizedFields == nil {
					s.UnrecognizedFields = map[string]any{}
				}
				s.UnrecognizedFields[providesField] = map[string][]string{"awk": {"mawk"}}
			},
		}, roleKeys: []*PrivateKey{e.keys.targets}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
		checkClosures(t, e.client(""), []closureCase{{ref: "base-files", errIs: []error{ErrDependency, ErrNotFound}}})
	}

	// The index in awk's bin names mawk again: resolved.
	e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){
		awkBin: func(s *tufmeta.TargetsType) {
			s.UnrecognizedFields[providesField] = map[string][]string{"awk": {"impostor", "mawk"}}
		},
	}, roleKeys: []*PrivateKey{e.keys.targets}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
	checkClosures(t, e.client(""), []closureCase{{ref: "base-files", want: "base-files@12.4 mawk@1.3.4-1"}})

	// An index signed by a key that is not the bins' is refused with the
	// whole bin.
	e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){
		awkBin: func(s *tufmeta.TargetsType) {
			s.UnrecognizedFields[providesField] = map[string][]string{"awk": {"impostor", "mawk"}}
		},
	}, roleKeys: []*PrivateKey{mustKey(t)}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
	if _, err := e.client("").ResolveClosure(ctx, "base-files"); !errors.Is(err, ErrSignature) {
		t.Errorf("ResolveClosure(base-files) with a forged bin = %v, want ErrSignature", err)
	}
}
