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

// holdFetcher holds the fetch of one path until release is closed, and
// closes held when that fetch starts.
type holdFetcher struct {
	f             Fetcher
	path          string
	held, release chan struct{}
	once          sync.Once
}

func (h *holdFetcher) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	if p == h.path {
		h.once.Do(func() { close(h.held) })
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return h.f.Fetch(ctx, p, maxLen)
}

// TestResolveClosureEachHandsMembersEarly: the members of a closure are
// handed over in the closure's order as soon as their manifests (and
// those before them) are in, while a later manifest is still on its
// way; the result is ResolveClosure's.
func TestResolveClosureEachHandsMembersEarly(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	var deps []string
	var last *AddResult
	for k := range 8 {
		name := fmt.Sprintf("p%d", k)
		last = e.add(name, "1.0.0", "body "+name)
		deps = append(deps, name)
	}
	e.add("all", "1.0.0", "meta", deps...)
	h := &holdFetcher{f: DirFetcher{Dir: e.dir}, path: ManifestsDir + "/" + last.ManifestCID.String(), held: make(chan struct{}), release: make(chan struct{})}
	c := e.clientWith("", h)
	handed := make(chan string, 16)
	type result struct {
		rs  []*Resolved
		err error
	}
	done := make(chan result, 1)
	go func() {
		rs, err := c.ResolveClosureEach(context.Background(), "all", func(r *Resolved) {
			if r.Manifest == nil {
				t.Errorf("handed %s without its manifest", r.Name)
			}
			handed <- r.Name
		})
		done <- result{rs, err}
	}()
	want := append([]string{"all"}, deps...)
	var got []string
	for len(got) < len(want)-1 {
		select {
		case n := <-handed:
			got = append(got, n)
		case r := <-done:
			t.Fatalf("ResolveClosureEach returned (%v) with %v handed, the last manifest held", r.err, got)
		case <-time.After(10 * time.Second):
			t.Fatalf("handed %v in 10 s while %s's manifest was held, want %v first", got, deps[len(deps)-1], want[:len(want)-1])
		}
	}
	// The held manifest's fetch may start after the members before it
	// were handed (the fetches run side by side): wait for it, since
	// nothing after it can be handed while it is held.
	select {
	case <-h.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the held manifest was never asked for")
	}
	select {
	case n := <-handed:
		t.Fatalf("%s handed while its manifest was held", n)
	case <-time.After(50 * time.Millisecond):
	}
	close(h.release)
	r := <-done
	if r.err != nil {
		t.Fatalf("ResolveClosureEach(all) = %v", r.err)
	}
	got = append(got, <-handed)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("handed %v, want %v", got, want)
	}
	var names []string
	for _, x := range r.rs {
		names = append(names, x.Name)
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("ResolveClosureEach(all) = %v, want %v", names, want)
	}
}
