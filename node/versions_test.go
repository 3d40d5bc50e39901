package node

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/storkpm/stork/metadata"
)

// TestFetchDebVersions: a daemon fetches packages published under Debian
// versions (epoch ':', '~', '+') by constraint and by exact version; the
// store keeps and reports the versions as published.
func TestFetchDebVersions(t *testing.T) {
	o := newOrigin(t)
	var list []metadata.AddOptions
	for _, p := range []struct{ name, version string }{
		{"util-linux", "1:2.39.5-0+deb12u3"}, {"util-linux", "2.41~rc1-1"}, {"libc6", "2.36-9+deb12u10"},
	} {
		src := filepath.Join(t.TempDir(), "src")
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, "VERSION"), []byte(p.name+" "+p.version), 0o644); err != nil {
			t.Fatal(err)
		}
		list = append(list, metadata.AddOptions{Name: p.name, Version: p.version, Scheme: metadata.SchemeDeb, Source: src, Depends: []string{"libc6>= 2.36"}})
	}
	list[2].Depends = nil
	if _, err := o.repo.AddMany(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	c := startDaemon(t, o, "")
	ctx := context.Background()
	for _, ref := range []string{"util-linux@>= 2.39", "util-linux", "util-linux@1:2.39.5-0+deb12u3"} {
		pkgs, err := c.Fetch(ctx, ref, nil)
		if err != nil || len(pkgs) != 2 || pkgs[0].Version != "1:2.39.5-0+deb12u3" || pkgs[0].State != "complete" || pkgs[1].Version != "2.36-9+deb12u10" {
			t.Fatalf("Fetch(%q) = %+v, %v; want util-linux@1:2.39.5-0+deb12u3 and libc6@2.36-9+deb12u10, complete", ref, pkgs, err)
		}
	}
	pkgs, err := c.Fetch(ctx, "util-linux@<< 1:0", nil)
	if err != nil || len(pkgs) != 2 || pkgs[0].Version != "2.41~rc1-1" {
		t.Fatalf("Fetch(util-linux@<< 1:0) = %+v, %v; want 2.41~rc1-1", pkgs, err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range st.Packages {
		seen[p.Name+"@"+p.Version] = p.State == "complete"
	}
	for _, want := range []string{"util-linux@1:2.39.5-0+deb12u3", "util-linux@2.41~rc1-1", "libc6@2.36-9+deb12u10"} {
		if !seen[want] {
			t.Errorf("status packages = %+v, want %s complete", st.Packages, want)
		}
	}
}
