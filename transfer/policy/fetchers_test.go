package policy

import (
	"fmt"
	"slices"
	"testing"
)

func membersOf(ids []PeerID, site func(j int) string) []Member {
	ms := make([]Member, len(ids))
	for j, id := range ids {
		ms[j] = Member{ID: id}
		if site != nil {
			ms[j].Site = site(j)
		}
	}
	return ms
}

func keyOf(k int) uint64 { return ChunkKey(fmt.Appendf(nil, "chunk-%d", k)) }

// Hosts that see the same members agree on each chunk's fetcher, the
// fetcher asks nobody, every other host asks it first, and the chunks
// spread evenly over the members.
func TestFetchersAgreeAndSpread(t *testing.T) {
	t.Parallel()
	const m, keys = 24, 24000
	ids := memberIDs(m)
	all := membersOf(ids, nil)
	fs := make([]*Fetchers, m)
	for j, id := range ids {
		// Each host lists its members in its own order, without itself.
		others := slices.DeleteFunc(slices.Clone(all), func(x Member) bool { return x.ID == id })
		slices.Reverse(others[:j%len(others)])
		fs[j] = NewFetchers(Member{ID: id}, others)
		if fs[j].Len() != m {
			t.Fatalf("host %d: Len() = %d, want %d", j, fs[j].Len(), m)
		}
	}
	per := map[PeerID]int{}
	for k := range keys {
		key := keyOf(k)
		first := fs[0].First(key)
		per[first]++
		for j, f := range fs {
			if got := f.First(key); got != first {
				t.Fatalf("key %d: host %d ranks %s first, host 0 ranks %s", k, j, got, first)
			}
			before := f.Before(key, 0, nil)
			if (ids[j] == first) != (len(before) == 0) {
				t.Fatalf("key %d: host %d (first %s) has %d fetchers before it", k, j, first, len(before))
			}
			if len(before) > 0 && before[0] != first {
				t.Fatalf("key %d: host %d asks %s first, want %s", k, j, before[0], first)
			}
		}
	}
	for _, id := range ids {
		if fair := keys / m; per[id] < fair*3/4 || per[id] > fair*5/4 {
			t.Errorf("%s ranks first for %d of %d keys, want about %d", id, per[id], keys, fair)
		}
	}
}

// The ranks a host walks are the full order: Before(key, 0) of the host at
// rank r lists ranks 0..r-1, in order, and max cuts it.
func TestFetchersRankOrder(t *testing.T) {
	t.Parallel()
	ids := memberIDs(9)
	all := membersOf(ids, nil)
	for k := range 500 {
		key := keyOf(k)
		var order []PeerID
		for _, id := range ids {
			order = append(order, id)
		}
		byRank := make([][]PeerID, len(ids))
		for j, id := range ids {
			byRank[j] = NewFetchers(Member{ID: id}, all).Before(key, 0, nil)
		}
		slices.SortFunc(order, func(a, b PeerID) int {
			return len(byRank[slices.Index(ids, a)]) - len(byRank[slices.Index(ids, b)])
		})
		for r, id := range order {
			got := byRank[slices.Index(ids, id)]
			if !slices.Equal(got, order[:r]) {
				t.Fatalf("key %d: %s at rank %d asks %v, want %v", k, id, r, got, order[:r])
			}
			if r > 2 {
				if cut := NewFetchers(Member{ID: id}, all).Before(key, 2, nil); !slices.Equal(cut, order[:2]) {
					t.Fatalf("key %d: Before(max 2) = %v, want %v", k, cut, order[:2])
				}
			}
		}
	}
}

// A member leaving moves only the chunks it ranked first.
func TestFetchersMemberLeaves(t *testing.T) {
	t.Parallel()
	ids := memberIDs(12)
	all := membersOf(ids, nil)
	gone := ids[5]
	before := NewFetchers(Member{ID: ids[0]}, all)
	after := NewFetchers(Member{ID: ids[0]}, slices.DeleteFunc(slices.Clone(all), func(m Member) bool { return m.ID == gone }))
	moved := 0
	for k := range 5000 {
		key := keyOf(k)
		a, b := before.First(key), after.First(key)
		if a != b {
			if a != gone {
				t.Fatalf("key %d: fetcher moved from %s to %s, though %s left", k, a, b, gone)
			}
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("the member that left ranked first for no key")
	}
}

// With its site known a host asks only members of its site (each site
// fetches its own copy); members of unknown site count as elsewhere. With
// its site unknown it ranks every member.
func TestFetchersSite(t *testing.T) {
	t.Parallel()
	ids := memberIDs(12)
	site := func(j int) string { return []string{"a", "b", ""}[j%3] }
	all := membersOf(ids, site)
	inA := NewFetchers(Member{ID: ids[0], Site: "a"}, all)
	anywhere := NewFetchers(Member{ID: ids[0]}, all)
	sawFar := false
	for k := range 2000 {
		key := keyOf(k)
		for _, id := range inA.Before(key, 0, nil) {
			if j := slices.Index(ids, id); site(j) != "a" {
				t.Fatalf("key %d: a host of site a asks %s of site %q", k, id, site(j))
			}
		}
		for _, id := range anywhere.Before(key, 0, nil) {
			if site(slices.Index(ids, id)) != "a" {
				sawFar = true
			}
		}
	}
	if !sawFar {
		t.Error("a host of unknown site never asked a member of another site")
	}
	if alone := NewFetchers(Member{ID: "x"}, nil); !alone.Alone() || alone.First(1) != "x" {
		t.Errorf("a lone host: Alone() = %v, First = %s", alone.Alone(), alone.First(1))
	}
}

// With pull-through on every chunk of the window is due at once at every
// member; without it only the chunks it owns are.
func TestPickerPullThroughAllDue(t *testing.T) {
	t.Parallel()
	const n = 64
	ids := memberIDs(4)
	for _, pull := range []bool{false, true} {
		p := newTestPicker(n, 1, func(c *PickerConfig) {
			c.OriginParallel = n
			c.OriginInitialWindow = n
			c.OriginSwarmWindow = n
		})
		p.SetPullThrough(pull)
		p.SetMembers(ids[1], ids)
		got := drainOrigin(p, t0)
		own := 0
		for i := range n {
			if p.OriginOwner(i) {
				own++
			}
		}
		want := own
		if pull {
			want = n
		}
		if len(got) != want {
			t.Errorf("PullThrough %v: %d chunks asked at once, want %d", pull, len(got), want)
		}
		checkPicker(t, p)
	}
}

// After names the member ranked right after self: the host it names
// has self last among those before it; the last-ranked host has none.
func TestFetchersAfter(t *testing.T) {
	t.Parallel()
	ids := memberIDs(9)
	for _, site := range []func(j int) string{nil, func(j int) string { return []string{"a", "b", ""}[j%3] }} {
		all := membersOf(ids, site)
		for k := range 300 {
			key := keyOf(k)
			last := 0
			for _, self := range all {
				f := NewFetchers(self, all)
				next := f.After(key)
				if next == "" {
					last++
					continue
				}
				var nm Member
				for _, m := range all {
					if m.ID == next {
						nm = m
					}
				}
				if self.Site != "" && nm.Site != self.Site {
					// The next is elsewhere: every member of self's site
					// ranks before self.
					near := 0
					for _, m := range all {
						if m.ID != self.ID && m.Site == self.Site {
							near++
						}
					}
					if got := len(f.Before(key, 0, nil)); got != near {
						t.Fatalf("key %d: %s says %s (elsewhere) comes next, with %d of its site's %d others before it", k, self.ID, next, got, near)
					}
					continue
				}
				// Ranked by a host of self's site, as self ranks.
				view := NewFetchers(Member{ID: nm.ID, Site: self.Site}, all)
				b := view.Before(key, 0, nil)
				if len(b) == 0 || b[len(b)-1] != self.ID {
					t.Fatalf("key %d: %s says %s comes next, whose fetchers before it are %v", k, self.ID, next, b)
				}
			}
			if last != 1 && site == nil {
				t.Fatalf("key %d: %d hosts rank last, want 1", k, last)
			}
		}
	}
}

// Two-level pull-through: for every chunk, the first of each site asks
// the chunk's global fetcher (the first by weight alone, sites aside),
// which is the first of its own site and asks nobody; a host whose site
// is unknown has no upstream (it ranks every member in Before).
func TestFetchersUpstream(t *testing.T) {
	t.Parallel()
	ids := memberIDs(12)
	site := func(j int) string { return []string{"a", "b", "c"}[j%3] }
	all := membersOf(ids, site)
	global := NewFetchers(Member{ID: ids[0]}, membersOf(ids, nil))
	for k := range 1000 {
		key := keyOf(k)
		g := global.First(key)
		firsts := 0
		for _, self := range all {
			f := NewFetchers(self, all)
			if len(f.Before(key, 0, nil)) > 0 {
				continue
			}
			firsts++
			up := f.Upstream(key, 0, nil)
			if self.ID == g {
				if len(up) != 0 {
					t.Fatalf("key %d: the global fetcher %s has upstream %v, want none", k, g, up)
				}
				continue
			}
			if len(up) == 0 || up[0] != g {
				t.Fatalf("key %d: the first of site %s (%s) has upstream %v, want %s first", k, self.Site, self.ID, up, g)
			}
			for _, id := range up {
				if site(slices.Index(ids, id)) == self.Site {
					t.Fatalf("key %d: upstream %v of %s names a member of its own site", k, up, self.ID)
				}
			}
			if got := f.Upstream(key, 1, nil); len(got) != 1 || got[0] != g {
				t.Fatalf("key %d: Upstream(max 1) = %v, want [%s]", k, got, g)
			}
		}
		if firsts != 3 {
			t.Fatalf("key %d: %d hosts rank first in their site, want 3", k, firsts)
		}
		if up := global.Upstream(key, 0, nil); len(up) != 0 {
			t.Fatalf("key %d: a host of unknown site has upstream %v, want none", k, up)
		}
	}
}
