package node

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/share"
	httporigin "github.com/storkpm/stork/transfer/origin"
)

// TestFetchStartsDownloadsAsManifestsArrive: a closure's packages are
// downloaded as their manifests come in, in the closure's order: with the
// last manifest held at the origin, the packages before it are already
// complete in the store, and the fetch ends once it is let through.
func TestFetchStartsDownloadsAsManifestsArrive(t *testing.T) {
	o := newBswOrigin(t)
	publishUpgrade(t, o, 4, 64<<10)
	// The closure's order, as the daemon will resolve it.
	src, err := httporigin.NewClient(httporigin.Config{URL: o.url})
	if err != nil {
		t.Fatal(err)
	}
	mc, err := metadata.NewClient(metadata.ClientConfig{Dir: filepath.Join(t.TempDir(), "meta"), Root: o.root, Fetcher: src})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	closure, err := mc.ResolveClosure(ctx, "upgrade")
	if err != nil {
		t.Fatal(err)
	}
	last := closure[len(closure)-1]
	held := "/" + metadata.ManifestsDir + "/" + last.ManifestCID.String()
	release := make(chan struct{})
	gate := func(r *http.Request) {
		if r.URL.Path == held {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}
	o.gate.Store(&gate)
	n := startBswNode(t, o, nil)
	done := make(chan error, 1)
	go func() {
		_, err := n.c.Fetch(ctx, "upgrade", nil)
		done <- err
	}()
	for _, r := range closure[:len(closure)-1] {
		for {
			info, err := n.d.store.Package(r.ManifestCID)
			if err == nil && info.State == share.StateComplete {
				break
			}
			select {
			case err := <-done:
				t.Fatalf("Fetch(upgrade) = %v with %s's manifest held", err, last.Name)
			case <-ctx.Done():
				t.Fatalf("%s not complete while %s's manifest was held: downloads wait for the whole closure", r.Name, last.Name)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Fetch(upgrade) = %v", err)
	}
	if info, err := n.d.store.Package(last.ManifestCID); err != nil || info.State != share.StateComplete {
		t.Fatalf("%s after the fetch: %+v, %v", last.Name, info, err)
	}
}
