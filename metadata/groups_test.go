package metadata

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestGroupPolicyApply(t *testing.T) {
	t.Parallel()
	base := GroupPolicy{Require: []string{"curl", "nginx@>=2.1 <3"}, Forbid: []string{"telnet"}}
	cases := []struct {
		name string
		ch   GroupChange
		want GroupPolicy
		err  error
	}{
		{"add new", GroupChange{Add: []string{"bash@5.2"}}, GroupPolicy{Require: []string{"bash@5.2", "curl", "nginx@>=2.1 <3"}, Forbid: []string{"telnet"}}, nil},
		{"add replaces constraint", GroupChange{Add: []string{"nginx@>=3"}}, GroupPolicy{Require: []string{"curl", "nginx@>=3"}, Forbid: []string{"telnet"}}, nil},
		{"add a forbidden name", GroupChange{Add: []string{"telnet"}}, GroupPolicy{Require: []string{"curl", "nginx@>=2.1 <3", "telnet"}}, nil},
		{"remove forbids", GroupChange{Remove: []string{"curl"}}, GroupPolicy{Require: []string{"nginx@>=2.1 <3"}, Forbid: []string{"curl", "telnet"}}, nil},
		{"drop forgets", GroupChange{Drop: []string{"curl", "telnet"}}, GroupPolicy{Require: []string{"nginx@>=2.1 <3"}}, nil},
		{"one name twice", GroupChange{Add: []string{"x"}, Remove: []string{"x"}}, GroupPolicy{}, ErrMalformed},
		{"bad ref", GroupChange{Add: []string{"Bad!"}}, GroupPolicy{}, ErrMalformed},
		{"bad constraint", GroupChange{Add: []string{"x@>=!!"}}, GroupPolicy{}, ErrMalformed},
		{"bad removed name", GroupChange{Remove: []string{"a/b"}}, GroupPolicy{}, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := base.Apply(tc.ch)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Apply(%+v) = %v, want %v", tc.ch, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply(%+v) = %v", tc.ch, err)
			}
			if !slices.Equal(got.Require, tc.want.Require) || !slices.Equal(got.Forbid, tc.want.Forbid) {
				t.Fatalf("Apply(%+v) = %+v, want %+v", tc.ch, got, tc.want)
			}
		})
	}
}

func TestDecodeGroupPolicy(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		ok       bool
	}{
		{"empty", `{}`, true},
		{"both", `{"require":["a","b@1.0"],"forbid":["c"]}`, true},
		{"unknown field", `{"require":["a"],"x":1}`, false},
		{"trailing", `{} {}`, false},
		{"unsorted", `{"require":["b","a"]}`, false},
		{"twice", `{"require":["a","a@1"]}`, false},
		{"required and forbidden", `{"require":["a"],"forbid":["a"]}`, false},
		{"bad name", `{"forbid":["A"]}`, false},
		{"not json", `require a`, false},
		{"huge", `{"forbid":["` + strings.Repeat("a", maxGroupPolicySize) + `"]}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := DecodeGroupPolicy([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("DecodeGroupPolicy(%.40q) = %v, want ok %v", tc.in, err, tc.ok)
			}
			if err == nil {
				b, err := p.Encode()
				if err != nil {
					t.Fatalf("Encode: %v", err)
				}
				if _, err := DecodeGroupPolicy(b); err != nil {
					t.Fatalf("round trip of %q: %v", b, err)
				}
			}
		})
	}
}

func FuzzDecodeGroupPolicy(f *testing.F) {
	f.Add([]byte(`{"require":["a","b@>=1 <2"],"forbid":["c"]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeGroupPolicy(b)
		if err != nil {
			return
		}
		enc, err := p.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded policy: %v", err)
		}
		q, err := DecodeGroupPolicy(enc)
		if err != nil || !slices.Equal(p.Require, q.Require) || !slices.Equal(p.Forbid, q.Forbid) {
			t.Fatalf("round trip: %+v -> %q -> %+v, %v", p, enc, q, err)
		}
	})
}

// groupEnv is a repository with packages and two groups, "web" delegated
// to webKey and "db" delegated to dbKey.
type groupEnv struct {
	*testEnv
	webKey, dbKey *PrivateKey
}

func newGroupEnv(t *testing.T) *groupEnv {
	t.Helper()
	e := &groupEnv{testEnv: newTestEnv(t, nil), webKey: mustKey(t), dbKey: mustKey(t)}
	e.add("nginx", "2.1.0", "n21")
	e.add("nginx", "2.4.0", "n24")
	e.add("nginx", "3.0.0", "n30")
	e.add("libssl", "1.0.0", "ssl")
	e.add("curl", "8.0.0", "curl", "libssl>=1")
	ctx := context.Background()
	// web is delegated first, so a walk that did not check the paths of a
	// delegation would meet web's role before db's.
	for _, gk := range []struct {
		g string
		k *PrivateKey
	}{{"web", e.webKey}, {"db", e.dbKey}} {
		if err := e.repo.Delegate(ctx, DelegateOptions{Role: GroupRole(gk.g), Groups: []string{gk.g}, Keys: []*tufmeta.Key{gk.k.Public()}}); err != nil {
			t.Fatalf("Delegate(%s): %v", gk.g, err)
		}
	}
	return e
}

// maintainer opens the repository as a group maintainer holding key and
// the online keys.
func (e *groupEnv) maintainer(key *PrivateKey) *Repo {
	e.t.Helper()
	r, err := OpenRepo(e.dir, append([]*PrivateKey{key}, e.keys.online()...), e.clock.Now)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// TestGroupSetAndRead: a maintainer sets its group; the repository and a
// client read the same policy, signed by the group's role; the union of
// two groups resolves to one closure with the newest allowed versions.
func TestGroupSetAndRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newGroupEnv(t)
	web := e.maintainer(e.webKey)
	res, err := web.SetGroup(ctx, "web", GroupChange{Add: []string{"nginx@>=2.1 <3", "curl", "ghost"}, Remove: []string{"telnet"}})
	if err != nil {
		t.Fatalf("SetGroup(web) = %v", err)
	}
	if res.Role != GroupRole("web") || !slices.Equal(res.Missing, []string{"ghost"}) {
		t.Fatalf("SetGroup(web) = %+v, want role group-web and missing [ghost]", res)
	}
	if res, err = web.SetGroup(ctx, "web", GroupChange{Add: []string{"curl"}}); err != nil || !res.Unchanged {
		t.Fatalf("SetGroup(web) again = %+v, %v, want unchanged", res, err)
	}
	if _, err := web.SetGroup(ctx, "web", GroupChange{Drop: []string{"ghost"}}); err != nil {
		t.Fatal(err)
	}
	db := e.maintainer(e.dbKey)
	if _, err := db.SetGroup(ctx, "db", GroupChange{Add: []string{"nginx@2.4.0"}}); err != nil {
		t.Fatalf("SetGroup(db) = %v", err)
	}
	want := GroupPolicy{Require: []string{"curl", "nginx@>=2.1 <3"}, Forbid: []string{"telnet"}}
	gi, err := e.repo.Group("web")
	if err != nil || !slices.Equal(gi.Policy.Require, want.Require) || !slices.Equal(gi.Policy.Forbid, want.Forbid) {
		t.Fatalf("Repo.Group(web) = %+v, %v, want %+v", gi, err, want)
	}
	c := e.client("")
	cg, err := c.Group(ctx, "web")
	if err != nil || !slices.Equal(cg.Policy.Require, want.Require) || cg.Role != GroupRole("web") {
		t.Fatalf("Client.Group(web) = %+v, %v, want %+v by group-web", cg, err, want)
	}
	all, err := c.Groups(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "db" || all[1].Name != "web" {
		t.Fatalf("Client.Groups = %+v, %v, want db and web", all, err)
	}
	if _, err := c.Group(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Client.Group(nope) = %v, want ErrNotFound", err)
	}
	set, err := c.ResolveSet(ctx, append(slices.Clone(cg.Policy.Require), all[0].Policy.Require...))
	if err != nil {
		t.Fatalf("ResolveSet = %v", err)
	}
	var got []string
	for _, r := range set {
		got = append(got, r.Name+"@"+r.Version)
	}
	slices.Sort(got)
	if w := []string{"curl@8.0.0", "libssl@1.0.0", "nginx@2.4.0"}; !slices.Equal(got, w) {
		t.Fatalf("ResolveSet = %v, want %v (both constraints on nginx hold)", got, w)
	}
	if _, err := c.ResolveSet(ctx, []string{"nginx@>=3", "nginx@<3"}); !errors.Is(err, ErrDependency) {
		t.Fatalf("ResolveSet(conflict) = %v, want ErrDependency", err)
	}
}

// TestGroupKeyCannotChangeAnotherGroup: the web maintainer's key signs
// web and nothing else: SetGroup(db) needs db's key, and a db policy
// forged into the web role is not seen by a client.
func TestGroupKeyCannotChangeAnotherGroup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newGroupEnv(t)
	if _, err := e.maintainer(e.dbKey).SetGroup(ctx, "db", GroupChange{Add: []string{"curl"}}); err != nil {
		t.Fatal(err)
	}
	web := e.maintainer(e.webKey)
	if _, err := web.SetGroup(ctx, "db", GroupChange{Add: []string{"nginx"}}); !errors.Is(err, ErrMissingKey) {
		t.Fatalf("SetGroup(db) with web's key = %v, want ErrMissingKey", err)
	}
	if _, err := web.SetGroup(ctx, "other", GroupChange{Add: []string{"nginx"}}); !errors.Is(err, ErrMissingKey) {
		t.Fatalf("SetGroup(other) with web's key = %v, want ErrMissingKey (top-level targets signs undelegated groups)", err)
	}
	if _, err := web.SetGroup(ctx, "web", GroupChange{Add: []string{"nginx"}}); err != nil {
		t.Fatal(err)
	}
	// The web maintainer writes a db policy into its own role.
	forged, err := groupTarget("db", GroupPolicy{Require: []string{"nginx@3.0.0"}})
	if err != nil {
		t.Fatal(err)
	}
	e.forge(forgery{
		roles:    map[string]func(*tufmeta.TargetsType){GroupRole("web"): func(tt *tufmeta.TargetsType) { tt.Targets[forged.Path] = forged }},
		roleKeys: []*PrivateKey{e.webKey}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp},
	})
	c := e.client("")
	gi, err := c.Group(ctx, "db")
	if err != nil || !slices.Equal(gi.Policy.Require, []string{"curl"}) || gi.Role != GroupRole("db") {
		t.Fatalf("Client.Group(db) = %+v, %v, want db's own policy [curl]", gi, err)
	}
	if w, err := c.Group(ctx, "web"); err != nil || !slices.Equal(w.Policy.Require, []string{"nginx"}) {
		t.Fatalf("Client.Group(web) = %+v, %v", w, err)
	}
}

// TestGroupRefusedKeepsOthers: an expired or below-threshold group role
// is refused for its groups alone; packages and other groups resolve.
func TestGroupRefusedKeepsOthers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("expired", func(t *testing.T) {
		e := newGroupEnv(t)
		if err := e.repo.Delegate(ctx, DelegateOptions{Role: GroupRole("web"), Groups: []string{"web"}, Keys: []*tufmeta.Key{e.webKey.Public()}, Expires: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.maintainer(e.webKey).SetGroup(ctx, "web", GroupChange{Add: []string{"curl"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.maintainer(e.dbKey).SetGroup(ctx, "db", GroupChange{Add: []string{"nginx"}}); err != nil {
			t.Fatal(err)
		}
		e.clock.Add(2 * time.Hour)
		if err := e.repo.Refresh(ctx); err != nil { // re-signs snapshot and timestamp, not web's role
			t.Fatal(err)
		}
		c := e.client("")
		if _, err := c.Group(ctx, "web"); !errors.Is(err, ErrExpired) {
			t.Fatalf("Client.Group(web) = %v, want ErrExpired", err)
		}
		if _, err := c.Group(ctx, "db"); err != nil {
			t.Fatalf("Client.Group(db) = %v", err)
		}
		if _, err := c.Resolve(ctx, "curl"); err != nil {
			t.Fatalf("Resolve(curl) = %v", err)
		}
	})
	t.Run("below threshold", func(t *testing.T) {
		e := newGroupEnv(t)
		if _, err := e.maintainer(e.webKey).SetGroup(ctx, "web", GroupChange{Add: []string{"curl"}}); err != nil {
			t.Fatal(err)
		}
		second := mustKey(t)
		// Two signatures needed now; the role still carries one.
		if err := e.repo.Delegate(ctx, DelegateOptions{Role: GroupRole("web"), Groups: []string{"web"}, Keys: []*tufmeta.Key{e.webKey.Public(), second.Public()}, Threshold: 2}); err != nil {
			t.Fatal(err)
		}
		c := e.client("")
		if _, err := c.Group(ctx, "web"); !errors.Is(err, ErrSignature) {
			t.Fatalf("Client.Group(web) = %v, want ErrSignature", err)
		}
		if _, err := e.maintainer(e.webKey).SetGroup(ctx, "web", GroupChange{Add: []string{"nginx"}}); !errors.Is(err, ErrMissingKey) {
			t.Fatalf("SetGroup(web) with one of two keys = %v, want ErrMissingKey", err)
		}
	})
}

// TestGroupRollbackRefused: a client that trusts version 2 of a group
// policy refuses a repository that serves version 1 again under new
// snapshot and timestamp (signed by the online keys): the refresh fails
// with ErrRollback and the client keeps the policy it trusted.
func TestGroupRollbackRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newGroupEnv(t)
	web := e.maintainer(e.webKey)
	if _, err := web.SetGroup(ctx, "web", GroupChange{Add: []string{"curl"}}); err != nil {
		t.Fatal(err)
	}
	old := e.state()
	oldVer := old.snapshot.Signed.Meta[GroupRole("web")+".json"].Version
	if _, err := web.SetGroup(ctx, "web", GroupChange{Remove: []string{"curl"}}); err != nil {
		t.Fatal(err)
	}
	cdir := t.TempDir()
	c := e.client(cdir)
	if gi, err := c.Group(ctx, "web"); err != nil || len(gi.Policy.Require) != 0 {
		t.Fatalf("Client.Group(web) = %+v, %v, want curl forbidden", gi, err)
	}
	if newVer := e.state().snapshot.Signed.Meta[GroupRole("web")+".json"].Version; oldVer >= newVer {
		t.Fatalf("group role versions %d then %d: nothing to roll back", oldVer, newVer)
	}
	// The attacker serves the old group role under a fresh snapshot.
	e.forge(forgery{
		snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp},
		editSnap: func(s *tufmeta.SnapshotType) {
			s.Meta[GroupRole("web")+".json"] = old.snapshot.Signed.Meta[GroupRole("web")+".json"]
		},
	})
	if err := c.Refresh(ctx); !errors.Is(err, ErrRollback) {
		t.Fatalf("Refresh over a rolled-back group role = %v, want ErrRollback", err)
	}
	c2 := e.clientWith(cdir, DirFetcher{Dir: e.dir})
	if _, err := c2.Group(ctx, "web"); !errors.Is(err, ErrRollback) {
		t.Fatalf("a restarted client: Group(web) = %v, want ErrRollback", err)
	}
}

// TestCheckAndRefreshAnnounced: an announced timestamp that is forged,
// stale, expired or malformed is refused and changes nothing; a newer
// one refreshes through the given fetcher, without fetching
// timestamp.json.
func TestCheckAndRefreshAnnounced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newGroupEnv(t)
	c := e.client("")
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	trusted := c.LastRefresh().Version
	stale := e.read(MetadataDir + "/timestamp.json")
	if _, err := e.maintainer(e.webKey).SetGroup(ctx, "web", GroupChange{Add: []string{"curl"}}); err != nil {
		t.Fatal(err)
	}
	fresh := e.read(MetadataDir + "/timestamp.json")
	cases := []struct {
		name string
		ts   []byte
		err  error
	}{
		{"forged", e.timestampLike(5, e.clock.Now().Add(time.Hour), e.keys.snapshot), ErrSignature},
		{"stale", stale, ErrRollback},
		{"older", e.timestampLike(-2, e.clock.Now().Add(time.Hour), e.keys.timestamp), ErrRollback},
		{"expired", e.timestampLike(5, e.clock.Now().Add(-time.Minute), e.keys.timestamp), ErrExpired},
		{"malformed", []byte(`{"signed":`), ErrMalformed},
	}
	counting := &countingFetcher{f: DirFetcher{Dir: e.dir}}
	for _, tc := range cases {
		if _, err := c.CheckTimestamp(tc.ts); !errors.Is(err, tc.err) {
			t.Errorf("CheckTimestamp(%s) = %v, want %v", tc.name, err, tc.err)
		}
		if err := c.RefreshAnnounced(ctx, tc.ts, counting); !errors.Is(err, tc.err) {
			t.Errorf("RefreshAnnounced(%s) = %v, want %v", tc.name, err, tc.err)
		}
	}
	if got, _ := counting.take(); len(got) != 0 || c.LastRefresh().Version != trusted {
		t.Fatalf("refused announcements fetched %v, version %d (want nothing, %d)", got, c.LastRefresh().Version, trusted)
	}
	if _, err := c.Group(ctx, "web"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Group(web) before the announcement = %v, want ErrNotFound", err)
	}
	if err := c.RefreshAnnounced(ctx, fresh, counting); err != nil {
		t.Fatalf("RefreshAnnounced(fresh) = %v", err)
	}
	if gi, err := c.Group(ctx, "web"); err != nil || !slices.Equal(gi.Policy.Require, []string{"curl"}) {
		t.Fatalf("Group(web) after the announcement = %+v, %v", gi, err)
	}
	got, _ := counting.take()
	if slices.Contains(got, MetadataDir+"/timestamp.json") || !slices.Contains(got, fmt.Sprintf("%s/1.%s.json", MetadataDir, GroupRole("web"))) {
		t.Fatalf("announced refresh fetched %v, want no timestamp.json and the web role through the given fetcher", got)
	}
	if err := c.RefreshAnnounced(ctx, fresh, counting); !errors.Is(err, ErrRollback) {
		t.Fatalf("the same announcement again = %v, want ErrRollback (nothing newer)", err)
	}
}
