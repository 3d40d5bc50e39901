package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storkpm/stork/metadata"
)

// TestCrowdFetchesFilesOnce: six daemons that see each other fetch one
// small package at once. With cooperative fetching the origin sends each
// chunk, manifest and fixed-version metadata file about once (a slow
// member may cost one more request), not once per host; without it,
// most hosts ask the origin. Every host asks the origin for the
// timestamp, and with cooperative fetching it sends the bytes about once.
func TestCrowdFetchesFilesOnce(t *testing.T) {
	const hosts = 6
	for _, coop := range []bool{true, false} {
		o := newBswOrigin(t)
		nodes := startCrowd(t, o, hosts, func(c *Config) {
			c.NoPullThrough = !coop
			c.NoSiteInference = true
		})
		r := runCrowd(t, o, nodes, "files-once", 64<<10, 0)
		for _, n := range nodes {
			n.stop()
		}
		manifests, timestamps := 0, int64(0)
		o.reqs.Range(func(k, v any) bool {
			p, n := strings.TrimPrefix(k.(string), "/"), v.(*atomic.Int64).Load()
			if p == "metadata/timestamp.json" {
				timestamps = n
			}
			if !metadata.CooperativePath(p) {
				return true
			}
			if strings.HasPrefix(p, metadata.ManifestsDir+"/") {
				manifests++
			}
			switch {
			case coop && n > 2:
				t.Errorf("cooperative fetching: the origin was asked %d times for %s by %d hosts, want at most 2", n, p, hosts)
			case !coop && strings.HasPrefix(p, metadata.ManifestsDir+"/") && n <= 2:
				// Each host races the origin and its peers: a host may
				// take a peer's copy, but most ask the origin.
				t.Errorf("without cooperative fetching: the origin was asked %d times for %s by %d hosts, want more than 2", n, p, hosts)
			}
			return true
		})
		if manifests != 1 || timestamps < hosts {
			t.Errorf("coop=%v: the origin served %d manifests and %d timestamps, want 1 and at least one per host (%d)", coop, manifests, timestamps, hosts)
		}
		// Every host asks the origin for the timestamp, but with
		// cooperative fetching most have it confirm a member's copy (a
		// 304, no body).
		ts, err := os.ReadFile(filepath.Join(o.dir, "metadata", "timestamp.json"))
		if err != nil {
			t.Fatal(err)
		}
		var tsBytes int64
		if v, ok := o.pathBytes.Load("/metadata/timestamp.json"); ok {
			tsBytes = v.(*atomic.Int64).Load()
		}
		if copies := float64(tsBytes) / float64(len(ts)); coop && copies > 2 || !coop && copies <= 2 {
			t.Errorf("coop=%v: the origin sent %.1f copies of timestamp.json to %d hosts, want at most 2 with cooperative fetching, more without", coop, copies, hosts)
		}
		if coop && r.copies > 1.1 {
			t.Errorf("cooperative fetching: origin chunk copies %.2f, want at most 1.1", r.copies)
		}
		t.Logf("coop=%v: origin copies %.2f, all origin bytes %.2f copies of the package", coop, r.copies, r.allCopies)
	}
}

// TestUpgradeFetchesManifestsOnce: four daemons that see each other fetch
// an upgrade of 20 small packages at once. Each manifest leaves the
// origin about once: a member resolving the upgrade itself (its metadata
// client busy with its own closure) still answers its peers' pulls.
func TestUpgradeFetchesManifestsOnce(t *testing.T) {
	const hosts = 4
	o := newBswOrigin(t)
	set := publishUpgrade(t, o, 20, 64<<10)
	nodes := startCrowd(t, o, hosts, func(c *Config) { c.NoSiteInference = true })
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := bswFetchAll(ctx, nodes, "upgrade"); err != nil {
		t.Fatal(err)
	}
	var manifests, requests int64
	o.reqs.Range(func(k, v any) bool {
		if strings.HasPrefix(k.(string), "/"+metadata.ManifestsDir+"/") {
			manifests++
			requests += v.(*atomic.Int64).Load()
		}
		return true
	})
	if manifests < int64(len(set.manifests)) || requests > manifests+manifests/4 {
		t.Errorf("the origin served %d manifests %d times to %d hosts, want each about once (at most %d requests)", manifests, requests, hosts, manifests+manifests/4)
	}
	t.Logf("%d manifests, %d origin requests for them", manifests, requests)
}
