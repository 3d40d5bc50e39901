package metadata

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// barrierFetcher holds every manifest fetch until `want` of them are in
// flight at once; one that waits past `bound` fails.
type barrierFetcher struct {
	f     Fetcher
	want  int
	bound time.Duration
	mu    sync.Mutex
	n     int
	all   chan struct{}
}

func (b *barrierFetcher) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	if !strings.HasPrefix(p, ManifestsDir+"/") {
		return b.f.Fetch(ctx, p, maxLen)
	}
	b.mu.Lock()
	if b.n++; b.n == b.want {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
		return b.f.Fetch(ctx, p, maxLen)
	case <-time.After(b.bound):
		return nil, errors.New("barrier fetcher: manifest fetched alone")
	}
}

// TestResolveClosureFetchesManifestsAtOnce: a closure's manifests are
// fetched several at a time (an upgrade of hundreds of packages is not a
// round trip per package), and the result keeps the closure's order.
func TestResolveClosureFetchesManifestsAtOnce(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	var deps []string
	for k := range 8 {
		name := fmt.Sprintf("p%d", k)
		e.add(name, "1.0.0", "body "+name)
		deps = append(deps, name)
	}
	e.add("all", "1.0.0", "meta", deps...)
	c := e.clientWith("", &barrierFetcher{f: DirFetcher{Dir: e.dir}, want: 4, bound: 10 * time.Second, all: make(chan struct{})})
	rs, err := c.ResolveClosure(context.Background(), "all")
	if err != nil {
		t.Fatalf("ResolveClosure(all) = %v, want its 9 packages fetched 4 or more at a time", err)
	}
	var got []string
	for _, r := range rs {
		if r.Manifest == nil {
			t.Errorf("ResolveClosure(all): %s has no manifest", r.Name)
		}
		got = append(got, r.Name)
	}
	if want := "all " + strings.Join(deps, " "); strings.Join(got, " ") != want {
		t.Errorf("ResolveClosure(all) = %v, want %s", got, want)
	}
}
