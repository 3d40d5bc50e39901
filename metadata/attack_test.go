package metadata

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// The tests in this file play an attacker against a client: each changes
// the repository files the client reads and checks that the client refuses
// them with the right error. Most also check a control (the same steps
// without the attack, or a client without the defence's state) succeeds,
// so that a test fails if its defence is removed.

// state reads the repository's current metadata from disk.
func (e *testEnv) state() *Repo {
	e.t.Helper()
	r, err := OpenRepo(e.dir, nil, e.clock.Now)
	if err != nil {
		e.t.Fatalf("OpenRepo: %v", err)
	}
	if err := r.loadAllRoles(); err != nil {
		e.t.Fatalf("load bins: %v", err)
	}
	return r
}

func (e *testEnv) read(p string) []byte {
	e.t.Helper()
	b, err := os.ReadFile(e.path(filepath.FromSlash(p)))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *testEnv) write(p string, b []byte) {
	e.t.Helper()
	if err := os.WriteFile(e.path(filepath.FromSlash(p)), b, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// signWrite signs m with keys (keeping its signatures if keys is nil) and
// writes it to metadata/name.
func signWrite[T tufmeta.Roles](e *testEnv, name string, m *tufmeta.Metadata[T], keys []*PrivateKey) []byte {
	e.t.Helper()
	if keys != nil {
		if err := signMeta(m, keys); err != nil {
			e.t.Fatal(err)
		}
	}
	b, err := m.ToBytes(true)
	if err != nil {
		e.t.Fatal(err)
	}
	e.write(MetadataDir+"/"+name, b)
	return b
}

// forgery is what an attacker publishes: targets roles (each bumped one
// version and signed by roleKeys, or left with its old signatures if
// roleKeys is nil), then a snapshot and a timestamp over them signed by the
// given keys (normally the repository's online keys).
type forgery struct {
	roles    map[string]func(*tufmeta.TargetsType)
	roleKeys []*PrivateKey
	snapKeys []*PrivateKey
	tsKeys   []*PrivateKey
	editSnap func(*tufmeta.SnapshotType)
}

func (e *testEnv) forge(f forgery) {
	e.t.Helper()
	st := e.state()
	snap, _ := cloneMeta(st.snapshot)
	for role, edit := range f.roles {
		var m *tufmeta.Metadata[tufmeta.TargetsType]
		if old := st.targets[role]; old != nil {
			m, _ = cloneMeta(old)
		}
		if m == nil {
			m = tufmeta.Targets(e.clock.Now().Add(time.Hour))
			m.Signed.Version = 0
		}
		m.Signed.Version++
		edit(&m.Signed)
		b := signWrite(e, fmt.Sprintf("%d.%s.json", m.Signed.Version, role), m, f.roleKeys)
		snap.Signed.Meta[role+".json"] = metaFileFor(m.Signed.Version, b)
	}
	snap.Signed.Version++
	if f.editSnap != nil {
		f.editSnap(&snap.Signed)
	}
	sb := signWrite(e, fmt.Sprintf("%d.snapshot.json", snap.Signed.Version), snap, f.snapKeys)
	ts, _ := cloneMeta(st.timestamp)
	ts.Signed.Version++
	ts.Signed.Meta["snapshot.json"] = metaFileFor(snap.Signed.Version, sb)
	signWrite(e, "timestamp.json", ts, f.tsKeys)
}

// copyTarget returns a function adding target to (a copy of) an existing
// package target.
func addTargetLike(from *tufmeta.TargetFiles, paths ...string) func(*tufmeta.TargetsType) {
	return func(t *tufmeta.TargetsType) {
		for _, p := range paths {
			c := *from
			c.Path = p
			t.Targets[p] = &c
		}
	}
}

func (e *testEnv) target(path string) *tufmeta.TargetFiles {
	e.t.Helper()
	st := e.state()
	for _, m := range st.targets {
		if tf, ok := m.Signed.Targets[path]; ok {
			return tf
		}
	}
	e.t.Fatalf("no target %s", path)
	return nil
}

func refreshErr(t *testing.T, c *Client) error {
	t.Helper()
	return c.Refresh(context.Background())
}

func TestAttackArbitraryPackage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		attack func(e *testEnv)
		want   error
		// inPlace: the served file changes but no metadata points at it, so
		// a client holding the trusted copy never reads it.
		inPlace bool
	}{
		{"target added to targets.json in place", func(e *testEnv) {
			st := e.state()
			tg := st.targets["targets"]
			addTargetLike(e.target("packages/hello/1.0.0"), "packages/evil/1.0.0")(&tg.Signed)
			signWrite(e, fmt.Sprintf("%d.targets.json", tg.Signed.Version), tg, nil)
		}, ErrTooLarge, true}, // longer than the snapshot says; same length would be ErrHashMismatch
		{"target hash changed in targets.json in place (same length)", func(e *testEnv) {
			st := e.state()
			tg := st.targets["targets"]
			tf := tg.Signed.Targets["packages/hello/1.0.0"]
			tf.Hashes["sha256"][0] ^= 0xff
			signWrite(e, fmt.Sprintf("%d.targets.json", tg.Signed.Version), tg, nil)
		}, ErrHashMismatch, true},
		{"target added, snapshot and timestamp re-signed with online keys", func(e *testEnv) {
			e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){"targets": addTargetLike(e.target("packages/hello/1.0.0"), "packages/evil/1.0.0")},
				snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
		}, ErrSignature, false},
		{"targets signed by an attacker key", func(e *testEnv) {
			e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){"targets": addTargetLike(e.target("packages/hello/1.0.0"), "packages/evil/1.0.0")},
				roleKeys: []*PrivateKey{mustKey(t)}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
		}, ErrSignature, false},
		{"targets signed by the snapshot key", func(e *testEnv) {
			e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){"targets": addTargetLike(e.target("packages/hello/1.0.0"), "packages/evil/1.0.0")},
				roleKeys: []*PrivateKey{e.keys.snapshot}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
		}, ErrSignature, false},
		{"snapshot signed by an attacker key", func(e *testEnv) {
			e.forge(forgery{snapKeys: []*PrivateKey{mustKey(t)}, tsKeys: []*PrivateKey{e.keys.timestamp}})
		}, ErrSignature, false},
		{"timestamp signed by an attacker key", func(e *testEnv) {
			e.forge(forgery{snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{mustKey(t)}})
		}, ErrSignature, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, nil)
			e.add("hello", "1.0.0", "hi")
			seen := e.client("")
			if err := refreshErr(t, seen); err != nil {
				t.Fatal(err)
			}
			// Control: the forging machinery with the right keys is accepted.
			control := newTestEnv(t, nil)
			control.add("hello", "1.0.0", "hi")
			control.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){"targets": addTargetLike(control.target("packages/hello/1.0.0"), "packages/evil/1.0.0")},
				roleKeys: []*PrivateKey{control.keys.targets}, snapKeys: []*PrivateKey{control.keys.snapshot}, tsKeys: []*PrivateKey{control.keys.timestamp}})
			if _, err := control.client("").Resolve(context.Background(), "evil"); err != nil {
				t.Fatalf("control: Resolve(evil) = %v, want success with the real keys", err)
			}

			tt.attack(e)
			for name, c := range map[string]*Client{"client that saw the repository": seen, "new client": e.client("")} {
				want := tt.want
				if tt.inPlace && c == seen {
					want = nil
				}
				if err := refreshErr(t, c); !errors.Is(err, want) && !(want == nil && err == nil) {
					t.Errorf("%s: Refresh = %v, want %v", name, err, want)
				}
				if _, err := c.Resolve(context.Background(), "evil"); err == nil {
					t.Errorf("%s: Resolve(evil) succeeded", name)
				}
			}
		})
	}
}

func TestAttackWrongSoftware(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	a := e.add("alpha", "1.0.0", "aaaa")
	b := e.add("bravo", "1.0.0", "bbbb")
	c := e.client("")
	warm := e.client("")
	ctx := context.Background()
	if _, err := warm.Resolve(ctx, "alpha"); err != nil {
		t.Fatalf("control: Resolve(alpha) = %v", err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	pa, pb := ManifestsDir+"/"+a.ManifestCID.String(), ManifestsDir+"/"+b.ManifestCID.String()
	ma, mb := e.read(pa), e.read(pb)
	if len(ma) != len(mb) {
		t.Fatalf("test setup: manifests differ in length (%d, %d)", len(ma), len(mb))
	}
	e.write(pa, mb)
	e.write(pb, ma)
	for _, ref := range []string{"alpha", "bravo@1.0.0"} {
		if r, err := c.Resolve(ctx, ref); !errors.Is(err, ErrHashMismatch) {
			t.Errorf("Resolve(%q) = %+v, %v, want ErrHashMismatch", ref, r, err)
		}
	}
	// A client that verified alpha's manifest before the swap keeps using
	// the verified bytes: the swapped file is never even read.
	if r, err := warm.Resolve(ctx, "alpha"); err != nil || !bytes.Equal(r.ManifestBytes, ma) {
		t.Errorf("warm Resolve(alpha) = %v; want the genuine, cached manifest", err)
	}
	// A manifest edited in place (another chunk list) is refused too.
	e.write(pa, bytes.Replace(ma, []byte(`"mode":420`), []byte(`"mode":493`), 1))
	if _, err := c.Resolve(ctx, "alpha"); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("Resolve(alpha) with edited manifest = %v, want ErrHashMismatch", err)
	}
}

func TestAttackRollback(t *testing.T) {
	t.Parallel()
	type saved struct {
		ts            []byte
		snapVer       int64
		snap          []byte
		tgVer         int64
		tg            []byte
		rootDirClient string
	}
	tests := []struct {
		name   string
		attack func(e *testEnv, old saved)
	}{
		{"older timestamp", func(e *testEnv, old saved) {
			e.write(MetadataDir+"/timestamp.json", old.ts)
		}},
		{"new timestamp pointing at an older snapshot", func(e *testEnv, old saved) {
			ts, _ := cloneMeta(e.state().timestamp)
			ts.Signed.Version++
			ts.Signed.Meta["snapshot.json"] = metaFileFor(old.snapVer, old.snap)
			signWrite(e, "timestamp.json", ts, []*PrivateKey{e.keys.timestamp})
		}},
		{"new snapshot pointing at older targets", func(e *testEnv, old saved) {
			e.forge(forgery{snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp},
				editSnap: func(s *tufmeta.SnapshotType) { s.Meta["targets.json"] = metaFileFor(old.tgVer, old.tg) }})
		}},
	}
	for _, tt := range tests {
		for _, restart := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/restart=%v", tt.name, restart), func(t *testing.T) {
				t.Parallel()
				e := newTestEnv(t, nil)
				e.add("pkg", "1.0.0", "one")
				st := e.state()
				var old saved
				old.ts = e.read(MetadataDir + "/timestamp.json")
				old.snapVer = st.snapshot.Signed.Version
				old.snap = e.read(fmt.Sprintf("%s/%d.snapshot.json", MetadataDir, old.snapVer))
				old.tgVer = st.targets["targets"].Signed.Version
				old.tg = e.read(fmt.Sprintf("%s/%d.targets.json", MetadataDir, old.tgVer))
				e.add("pkg", "1.1.0", "two")

				cdir := filepath.Join(t.TempDir(), "trusted")
				c := e.client(cdir)
				if r, err := c.Resolve(context.Background(), "pkg"); err != nil || r.Version != "1.1.0" {
					t.Fatalf("Resolve(pkg) = %+v, %v, want 1.1.0", r, err)
				}
				tt.attack(e, old)
				if restart {
					c = e.client(cdir)
				}
				if err := refreshErr(t, c); !errors.Is(err, ErrRollback) {
					t.Errorf("Refresh = %v, want ErrRollback", err)
				}
				if r, err := c.Resolve(context.Background(), "pkg"); err == nil {
					t.Errorf("Resolve(pkg) after rollback = %s, want an error", r.Version)
				}
				// Control: a client that never saw the newer metadata has
				// nothing to roll back from and accepts the old state.
				if r, err := e.client("").Resolve(context.Background(), "pkg"); err != nil || r.Version != "1.0.0" {
					t.Errorf("fresh client: Resolve(pkg) = %+v, %v, want 1.0.0", r, err)
				}
			})
		}
	}
}

func TestAttackFreeze(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name    string
		advance time.Duration
		resign  func(e *testEnv) error // what the (frozen) repository still re-signs
	}{
		{"timestamp expired", 25 * time.Hour, func(e *testEnv) error { return nil }},
		{"snapshot expired", 8 * 24 * time.Hour, func(e *testEnv) error {
			r := e.state()
			r.keys = keyMap(e.keys.all())
			return r.commitTimestamp()
		}},
		{"targets expired", 91 * 24 * time.Hour, func(e *testEnv) error {
			r := e.state()
			r.keys = keyMap(e.keys.all())
			return r.commit(commitSpec{})
		}},
		{"root expired", 366 * 24 * time.Hour, func(e *testEnv) error {
			r := e.state()
			r.keys = keyMap(e.keys.all())
			tg, _ := cloneMeta(r.targets["targets"])
			return r.commit(commitSpec{roles: map[string]*tufmeta.Metadata[tufmeta.TargetsType]{"targets": tg}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, nil)
			e.add("pkg", "1.0.0", "one")
			cdir := filepath.Join(t.TempDir(), "trusted")
			if err := e.client(cdir).Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			e.clock.Add(tt.advance)
			if err := tt.resign(e); err != nil {
				t.Fatal(err)
			}
			for name, c := range map[string]*Client{"same client dir": e.client(cdir), "new client": e.client("")} {
				if err := c.Refresh(ctx); !errors.Is(err, ErrExpired) {
					t.Errorf("%s: Refresh = %v, want ErrExpired", name, err)
				}
			}
		})
	}
}

func TestAttackMixAndMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		attack func(e *testEnv, st *Repo)
		want   error
	}{
		{"older signed targets served under the current name", func(e *testEnv, st *Repo) {
			v := st.targets["targets"].Signed.Version
			e.write(fmt.Sprintf("%s/%d.targets.json", MetadataDir, v), e.read(fmt.Sprintf("%s/%d.targets.json", MetadataDir, v-1)))
		}, ErrHashMismatch},
		{"older signed snapshot served under the current name", func(e *testEnv, st *Repo) {
			v := st.snapshot.Signed.Version
			e.write(fmt.Sprintf("%s/%d.snapshot.json", MetadataDir, v), e.read(fmt.Sprintf("%s/%d.snapshot.json", MetadataDir, v-1)))
		}, ErrHashMismatch},
		{"snapshot lists a version only; older targets served under it", func(e *testEnv, st *Repo) {
			v := st.targets["targets"].Signed.Version
			e.forge(forgery{snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp},
				editSnap: func(s *tufmeta.SnapshotType) { s.Meta["targets.json"] = &tufmeta.MetaFiles{Version: v} }})
			e.write(fmt.Sprintf("%s/%d.targets.json", MetadataDir, v), e.read(fmt.Sprintf("%s/%d.targets.json", MetadataDir, v-1)))
		}, ErrRollback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, nil)
			e.add("pkg", "1.0.0", "one")
			e.add("pkg", "1.1.0", "two")
			tt.attack(e, e.state())
			if err := e.client("").Refresh(context.Background()); !errors.Is(err, tt.want) {
				t.Errorf("Refresh = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAttackEndlessData(t *testing.T) {
	t.Parallel()
	pad := func(b []byte, n int) []byte { return append(b, bytes.Repeat([]byte(" "), n)...) }
	tests := []struct {
		name    string
		attack  func(e *testEnv, st *Repo, res *AddResult)
		resolve bool // the attack shows at Resolve rather than Refresh
	}{
		{"timestamp larger than the client's bound", func(e *testEnv, st *Repo, _ *AddResult) {
			p := MetadataDir + "/timestamp.json"
			e.write(p, pad(e.read(p), 20000))
		}, false},
		{"snapshot longer than the timestamp says", func(e *testEnv, st *Repo, _ *AddResult) {
			p := fmt.Sprintf("%s/%d.snapshot.json", MetadataDir, st.snapshot.Signed.Version)
			e.write(p, pad(e.read(p), 1))
		}, false},
		{"targets longer than the snapshot says", func(e *testEnv, st *Repo, _ *AddResult) {
			p := fmt.Sprintf("%s/%d.targets.json", MetadataDir, st.targets["targets"].Signed.Version)
			e.write(p, pad(e.read(p), 1<<20))
		}, false},
		{"manifest longer than its target says", func(e *testEnv, st *Repo, res *AddResult) {
			p := ManifestsDir + "/" + res.ManifestCID.String()
			e.write(p, pad(e.read(p), 1))
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, nil)
			res := e.add("pkg", "1.0.0", "one")
			c := e.client("")
			ctx := context.Background()
			if tt.resolve {
				if err := c.Refresh(ctx); err != nil {
					t.Fatal(err)
				}
			}
			tt.attack(e, e.state(), res)
			var err error
			if tt.resolve {
				_, err = c.Resolve(ctx, "pkg")
			} else {
				err = c.Refresh(ctx)
			}
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("got %v, want ErrTooLarge", err)
			}
		})
	}
}

func TestAttackInjectedDependency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	setDepends := func(deps ...string) func(*tufmeta.TargetsType) {
		return func(tg *tufmeta.TargetsType) {
			tf := tg.Targets["packages/app/1.0.0"]
			var c targetCustom
			_ = json.Unmarshal(*tf.Custom, &c)
			c.Depends = deps
			b, _ := json.Marshal(c)
			raw := json.RawMessage(b)
			tf.Custom = &raw
		}
	}
	tests := []struct {
		name   string
		attack func(e *testEnv)
		want   error
	}{
		{"depends edited in targets.json in place", func(e *testEnv) {
			st := e.state()
			tg := st.targets["targets"]
			setDepends("lib>=1", "evil")(&tg.Signed)
			signWrite(e, fmt.Sprintf("%d.targets.json", tg.Signed.Version), tg, nil)
		}, ErrTooLarge}, // longer than the snapshot says
		{"depends edited in targets.json in place, same length", func(e *testEnv) {
			st := e.state()
			tg := st.targets["targets"]
			setDepends("lib>=0")(&tg.Signed)
			signWrite(e, fmt.Sprintf("%d.targets.json", tg.Signed.Version), tg, nil)
		}, ErrHashMismatch},
		{"depends edited, snapshot and timestamp re-signed", func(e *testEnv) {
			e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){"targets": setDepends("lib>=1", "evil")},
				snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
		}, ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, nil)
			e.add("lib", "1.0.0", "lib")
			e.add("evil", "1.0.0", "evil")
			e.add("app", "1.0.0", "app", "lib>=1")
			if rs, err := e.client("").ResolveClosure(ctx, "app"); err != nil || len(rs) != 2 {
				t.Fatalf("control: ResolveClosure(app) = %d packages, %v, want 2", len(rs), err)
			}
			tt.attack(e)
			if rs, err := e.client("").ResolveClosure(ctx, "app"); !errors.Is(err, tt.want) {
				t.Errorf("ResolveClosure(app) = %d packages, %v, want %v", len(rs), err, tt.want)
			}
		})
	}
	t.Run("dependency absent from signed metadata", func(t *testing.T) {
		t.Parallel()
		e := newTestEnv(t, nil)
		e.add("app", "1.0.0", "app", "ghost>=1")
		// ghost's manifest lying in the repository does not make it signed.
		e.add("ghost-src", "1.0.0", "ghost")
		_, err := e.client("").ResolveClosure(ctx, "app")
		if !errors.Is(err, ErrDependency) || !errors.Is(err, ErrNotFound) {
			t.Errorf("ResolveClosure(app) = %v, want ErrDependency and ErrNotFound", err)
		}
	})
}

func TestAttackRootThreshold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k1, k2 := mustKey(t), mustKey(t)
	tests := []struct {
		name    string
		signers []*PrivateKey
		want    error
	}{
		{"one of two signatures", []*PrivateKey{k1}, ErrSignature},
		{"other one of two signatures", []*PrivateKey{k2}, ErrSignature},
		{"attacker key and one real key", []*PrivateKey{k1, mustKey(t)}, ErrSignature},
		{"both signatures (control)", []*PrivateKey{k1, k2}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, func(c *RepoConfig) {
				c.RootKeys = []*PrivateKey{k1, k2}
				c.RootThreshold = 2
			})
			e.add("pkg", "1.0.0", "one")
			cdir := filepath.Join(t.TempDir(), "trusted")
			if err := e.client(cdir).Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			// A new root that would hand every role to the attacker.
			evil := mustKey(t)
			nr, _ := cloneMeta(e.state().root)
			nr.Signed.Version = 2
			nr.Signed.Roles["root"].Threshold = 1
			nr.Signed.Roles["root"].KeyIDs = []string{k1.ID()}
			_ = nr.Signed.AddKey(evil.Public(), "timestamp")
			nr.Signed.Roles["timestamp"].KeyIDs = []string{evil.ID()}
			b := signWrite(e, "2.root.json", nr, tt.signers)
			e.write(MetadataDir+"/root.json", b)
			err := e.client(cdir).Refresh(ctx)
			if tt.want == nil {
				// Accepted: the old timestamp key no longer counts.
				if !errors.Is(err, ErrSignature) || !bytes.Contains(e.readClient(cdir, "root.json"), []byte(`"version": 2`)) {
					t.Errorf("control: Refresh = %v; want the new root trusted and the old timestamp refused", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Refresh = %v, want %v", err, tt.want)
			}
			if bytes.Contains(e.readClient(cdir, "root.json"), []byte(`"version": 2`)) {
				t.Errorf("client trusts the forged root")
			}
		})
	}
	t.Run("repository refuses to sign with one of two", func(t *testing.T) {
		t.Parallel()
		e := newTestEnv(t, func(c *RepoConfig) {
			c.RootKeys = []*PrivateKey{k1, k2}
			c.RootThreshold = 2
		})
		r, err := OpenRepo(e.dir, []*PrivateKey{k1, e.keys.targets, e.keys.snapshot, e.keys.timestamp}, e.clock.Now)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.UpdateRoot(ctx, RootUpdate{}); !errors.Is(err, ErrMissingKey) {
			t.Errorf("UpdateRoot with one of two root keys = %v, want ErrMissingKey", err)
		}
	})
}

func (e *testEnv) readClient(cdir, name string) []byte {
	b, _ := os.ReadFile(filepath.Join(cdir, name))
	return b
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// setup publishes hello, lets a client see root v1, then rotates the root
	// and targets keys to new ones.
	setup := func(t *testing.T) (*testEnv, string, *PrivateKey, *PrivateKey) {
		e := newTestEnv(t, nil)
		e.add("hello", "1.0.0", "hi")
		cdir := filepath.Join(t.TempDir(), "trusted")
		if err := e.client(cdir).Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		newRoot, newTargets := mustKey(t), mustKey(t)
		r, err := OpenRepo(e.dir, append(e.keys.all(), newRoot, newTargets), e.clock.Now)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.UpdateRoot(ctx, RootUpdate{RootKeys: []*tufmeta.Key{newRoot.Public()}, TargetsKeys: []*tufmeta.Key{newTargets.Public()}}); err != nil {
			t.Fatalf("UpdateRoot: %v", err)
		}
		return e, cdir, newRoot, newTargets
	}
	t.Run("client follows the rotation", func(t *testing.T) {
		t.Parallel()
		e, cdir, newRoot, newTargets := setup(t)
		var root2 tufmeta.Metadata[tufmeta.RootType]
		if _, err := root2.FromBytes(e.rootBytes(2)); err != nil || len(root2.Signatures) != 2 {
			t.Fatalf("2.root.json: %v, %d signatures, want 2 (old and new root keys)", err, len(root2.Signatures))
		}
		for name, c := range map[string]*Client{"client that saw root 1": e.client(cdir), "new client from root 1": e.client("")} {
			if _, err := c.Resolve(ctx, "hello"); err != nil {
				t.Errorf("%s: Resolve(hello) = %v", name, err)
			}
		}
		r, _ := OpenRepo(e.dir, []*PrivateKey{newRoot, newTargets, e.keys.snapshot, e.keys.timestamp}, e.clock.Now)
		if _, err := r.Add(ctx, AddOptions{Name: "world", Version: "1.0.0", Source: writeTree(t, map[string]string{"w": "w"})}); err != nil {
			t.Fatalf("Add with the new targets key: %v", err)
		}
		if _, err := e.client(cdir).Resolve(ctx, "world"); err != nil {
			t.Errorf("Resolve(world) = %v", err)
		}
		old, _ := OpenRepo(e.dir, e.keys.all(), e.clock.Now)
		if _, err := old.Add(ctx, AddOptions{Name: "x", Version: "1.0.0", Source: writeTree(t, map[string]string{"x": "x"})}); !errors.Is(err, ErrMissingKey) {
			t.Errorf("Add with only the old targets key = %v, want ErrMissingKey", err)
		}
	})
	t.Run("targets signed by the old targets key refused", func(t *testing.T) {
		t.Parallel()
		e, cdir, _, _ := setup(t)
		e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){"targets": addTargetLike(e.target("packages/hello/1.0.0"), "packages/evil/1.0.0")},
			roleKeys: []*PrivateKey{e.keys.targets}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
		for name, c := range map[string]*Client{"client that saw root 1": e.client(cdir), "new client from root 1": e.client("")} {
			if err := c.Refresh(ctx); !errors.Is(err, ErrSignature) {
				t.Errorf("%s: Refresh = %v, want ErrSignature", name, err)
			}
		}
	})
	t.Run("next root signed by the old root key only refused", func(t *testing.T) {
		t.Parallel()
		e, cdir, newRoot, _ := setup(t)
		if err := e.client(cdir).Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		nr, _ := cloneMeta(e.state().root)
		nr.Signed.Version = 3
		signWrite(e, "3.root.json", nr, []*PrivateKey{e.keys.root})
		if err := e.client(cdir).Refresh(ctx); !errors.Is(err, ErrSignature) {
			t.Errorf("Refresh = %v, want ErrSignature", err)
		}
		signWrite(e, "3.root.json", nr, []*PrivateKey{newRoot})
		if err := e.client(cdir).Refresh(ctx); err != nil {
			t.Errorf("control: root 3 signed by the new root key: Refresh = %v", err)
		}
	})
}

func TestAttackDelegationOutsidePattern(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	alice := mustKey(t)
	if err := e.repo.Delegate(ctx, DelegateOptions{Role: "alice", Patterns: []string{"alice-*"}, Keys: []*tufmeta.Key{alice.Public()}}); err != nil {
		t.Fatalf("Delegate: %v", err)
	}
	pub, err := OpenRepo(e.dir, []*PrivateKey{alice, e.keys.snapshot, e.keys.timestamp}, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	src := writeTree(t, map[string]string{"f": "alice"})
	res, err := pub.Add(ctx, AddOptions{Name: "alice-tool", Version: "1.0.0", Source: src})
	if err != nil || res.Role != "alice" {
		t.Fatalf("publisher Add(alice-tool) = %+v, %v, want role alice", res, err)
	}
	if _, err := pub.Add(ctx, AddOptions{Name: "bob", Version: "9.9.9", Source: src}); !errors.Is(err, ErrMissingKey) {
		t.Errorf("publisher Add(bob) = %v, want ErrMissingKey (outside its patterns)", err)
	}
	e.add("bob", "1.0.0", "bob")
	if _, err := os.Stat(e.path(MetadataDir, "1.alice.json")); err != nil {
		t.Errorf("delegated role file: %v", err)
	}

	c := e.client("")
	if r, err := c.Resolve(ctx, "alice-tool"); err != nil || r.Role != "alice" {
		t.Fatalf("Resolve(alice-tool) = %+v, %v, want role alice", r, err)
	}

	// The publisher (holding the online keys too) signs targets outside
	// its patterns by hand.
	e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){"alice": addTargetLike(e.target("packages/alice-tool/1.0.0"), "packages/bob/9.9.9", "packages/mallory/1.0.0")},
		roleKeys: []*PrivateKey{alice}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
	for name, c := range map[string]*Client{"client": c, "new client": e.client("")} {
		if err := c.Refresh(ctx); err != nil {
			t.Fatalf("%s: Refresh = %v (the role itself is validly signed)", name, err)
		}
		for _, ref := range []string{"mallory", "bob@9.9.9"} {
			if r, err := c.Resolve(ctx, ref); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: Resolve(%q) = %+v, %v, want ErrNotFound", name, ref, r, err)
			}
		}
		if r, err := c.Resolve(ctx, "bob"); err != nil || r.Version != "1.0.0" || r.Role != "targets" {
			t.Errorf("%s: Resolve(bob) = %+v, %v, want 1.0.0 from targets", name, r, err)
		}
		if r, err := c.Resolve(ctx, "alice-tool"); err != nil {
			t.Errorf("%s: Resolve(alice-tool) = %+v, %v", name, r, err)
		}
		pkgs, _ := c.Packages(ctx)
		for _, p := range pkgs {
			if p.Name == "mallory" || p.Version == "9.9.9" {
				t.Errorf("%s: Packages() lists %s@%s", name, p.Name, p.Version)
			}
		}
	}
	// A delegated role signed by a key it was not given is refused.
	e.forge(forgery{roles: map[string]func(*tufmeta.TargetsType){"alice": func(*tufmeta.TargetsType) {}},
		roleKeys: []*PrivateKey{mustKey(t)}, snapKeys: []*PrivateKey{e.keys.snapshot}, tsKeys: []*PrivateKey{e.keys.timestamp}})
	if err := e.client("").Refresh(ctx); !errors.Is(err, ErrSignature) {
		t.Errorf("Refresh with alice role signed by a stranger = %v, want ErrSignature", err)
	}
}
