package metadata

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fetcherSuite is the conformance suite every Fetcher must pass. files maps
// repository paths to content; the fetcher under test serves exactly them.
func fetcherSuite(t *testing.T, f Fetcher, files map[string]string) {
	t.Helper()
	ctx := context.Background()
	for p, want := range files {
		got, err := f.Fetch(ctx, p, int64(len(want)))
		if err != nil || string(got) != want {
			t.Errorf("Fetch(%q, exact) = %q, %v, want %q", p, got, err, want)
		}
		if len(want) > 1 {
			if _, err := f.Fetch(ctx, p, int64(len(want)-1)); !errors.Is(err, ErrTooLarge) {
				t.Errorf("Fetch(%q, len-1) = %v, want ErrTooLarge", p, err)
			}
		}
	}
	if _, err := f.Fetch(ctx, "metadata/404.root.json", 100); !errors.Is(err, ErrNotFound) {
		t.Errorf("Fetch(missing) = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"../secret", "/etc/passwd", "metadata/../../x"} {
		if _, err := f.Fetch(ctx, bad, 100); err == nil {
			t.Errorf("Fetch(%q) succeeded", bad)
		}
	}
}

func TestFetchers(t *testing.T) {
	t.Parallel()
	files := map[string]string{"metadata/1.root.json": `{"x":1}`, "manifests/abc": strings.Repeat("m", 1000)}
	dir := t.TempDir()
	mem := NewMemFetcher()
	for p, s := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		mem.Put(p, []byte(s))
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	tests := []struct {
		name string
		f    Fetcher
	}{
		{"dir", DirFetcher{Dir: dir}},
		{"mem", mem},
		{"http", &HTTPFetcher{BaseURL: srv.URL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { fetcherSuite(t, tt.f, files) })
	}
}

func TestClientResolve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	e.add("tool", "1.0.0", "v1")
	e.add("tool", "1.10.0", "v110", "lib>=1")
	e.add("tool", "1.9.0", "v19")
	e.add("tool", "2.0.0-beta.1", "beta")
	e.add("pre", "0.1.0-alpha", "a")
	mem := NewMemFetcher()
	filepath.WalkDir(e.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(e.dir, p)
			b, _ := os.ReadFile(p)
			mem.Put(filepath.ToSlash(rel), b)
		}
		return nil
	})
	for name, c := range map[string]*Client{"dir": e.client(""), "mem": e.clientWith("", mem)} {
		tests := []struct {
			ref, version string
			err          error
		}{
			{"tool", "1.10.0", nil},
			{"tool@1.9.0", "1.9.0", nil},
			{"tool@1.9", "1.9.0", nil},
			{"tool@2.0.0-beta.1", "2.0.0-beta.1", nil},
			{"pre", "0.1.0-alpha", nil},
			{"tool@3.0.0", "", ErrNotFound},
			{"nosuch", "", ErrNotFound},
			{"Bad", "", ErrMalformed},
		}
		for _, tt := range tests {
			r, err := c.Resolve(ctx, tt.ref)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Errorf("%s: Resolve(%q) = %v, want %v", name, tt.ref, err, tt.err)
				}
				continue
			}
			if err != nil || r.Version != tt.version {
				t.Errorf("%s: Resolve(%q) = %+v, %v, want version %s", name, tt.ref, r, err, tt.version)
				continue
			}
			if !SumCID(r.ManifestBytes).Equals(r.ManifestCID) || r.Manifest == nil || r.Length != int64(len(r.ManifestBytes)) {
				t.Errorf("%s: Resolve(%q): manifest does not match its CID", name, tt.ref)
			}
		}
		if r, _ := c.Resolve(ctx, "tool"); len(r.Depends) != 1 || r.Depends[0] != "lib>=1" {
			t.Errorf("%s: Resolve(tool).Depends = %v, want [lib>=1]", name, r.Depends)
		}
		pkgs, err := c.Packages(ctx)
		if err != nil || len(pkgs) != 5 {
			t.Fatalf("%s: Packages() = %d, %v, want 5", name, len(pkgs), err)
		}
		var got []string
		for _, p := range pkgs {
			got = append(got, p.Name+"@"+p.Version)
		}
		if want := "pre@0.1.0-alpha tool@1.0.0 tool@1.9.0 tool@1.10.0 tool@2.0.0-beta.1"; strings.Join(got, " ") != want {
			t.Errorf("%s: Packages() = %v, want %s", name, got, want)
		}
	}
	// The repository lists the same.
	rp, err := e.repo.Packages()
	if err != nil || len(rp) != 5 {
		t.Errorf("Repo.Packages() = %d, %v, want 5", len(rp), err)
	}
}

func TestClientPersistsTrust(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newTestEnv(t, nil)
	e.add("a", "1.0.0", "a")
	cdir := filepath.Join(t.TempDir(), "trusted")
	if _, err := e.client(cdir).Resolve(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(cdir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("client dir mode = %v, %v, want 0700", st.Mode().Perm(), err)
	}
	for _, f := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json"} {
		if _, err := os.Stat(filepath.Join(cdir, f)); err != nil {
			t.Errorf("trusted %s not persisted: %v", f, err)
		}
	}
	// After a restart the configured root is not needed any more.
	c, err := NewClient(ClientConfig{Dir: cdir, Fetcher: DirFetcher{Dir: e.dir}, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.add("b", "1.0.0", "b")
	if _, err := c.Resolve(ctx, "b"); err != nil {
		t.Errorf("Resolve(b) after restart = %v", err)
	}
	if _, err := NewClient(ClientConfig{Dir: filepath.Join(t.TempDir(), "x"), Fetcher: DirFetcher{Dir: e.dir}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("NewClient without any root = %v, want ErrNotFound", err)
	}
	if _, err := NewClient(ClientConfig{Root: []byte("{}"), Fetcher: DirFetcher{Dir: e.dir}}); err == nil {
		t.Errorf("NewClient with a bogus root succeeded")
	}
}

// TestRefreshIfOlder: the first call refreshes, one within maxAge does
// not, one after it does and sees the new timestamp; LastRefresh says
// when and which version.
func TestRefreshIfOlder(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	e.add("a", "1.0.0", "a")
	c := e.client("")
	if got := c.LastRefresh(); !got.At.IsZero() || got.Version != 0 {
		t.Fatalf("LastRefresh before any refresh = %+v, want zero", got)
	}
	steps := []struct {
		name    string
		advance time.Duration
		publish bool
		want    bool
	}{
		{"first", 0, false, true},
		{"within maxAge", 30 * time.Second, true, false},
		{"after maxAge", 31 * time.Second, false, true},
	}
	var version int64
	for _, s := range steps {
		e.clock.Add(s.advance)
		if s.publish {
			e.add("b", "1.0.0", "b")
		}
		did, err := c.RefreshIfOlder(context.Background(), time.Minute)
		if err != nil || did != s.want {
			t.Fatalf("%s: RefreshIfOlder = %v, %v; want %v", s.name, did, err, s.want)
		}
		last := c.LastRefresh()
		if s.want && (!last.At.Equal(e.clock.Now()) || last.Version <= version) {
			t.Errorf("%s: LastRefresh = %+v, want now (%v) and a version above %d", s.name, last, e.clock.Now(), version)
		}
		version = last.Version
	}
}
