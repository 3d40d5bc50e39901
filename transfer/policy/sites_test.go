package policy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// A chunk a same-site peer holds is asked of it, never of a peer in
// another site holding it too; without the rule the cross-site peer gets
// asked for some.
func TestSitesSameSitePreferred(t *testing.T) {
	t.Parallel()
	const n = 256
	for _, sites := range []bool{true, false} {
		p := NewPicker(PickerConfig{NumChunks: n, Rand: rand.New(rand.NewPCG(3, 4)), MaxInflightPerPeer: 1 << 10, MaxInflightBytes: 1 << 40})
		half := NewBitfield(n)
		for i := range n {
			if i%2 == 0 {
				half.Set(i)
			}
		}
		p.PeerJoined("local", half)
		p.PeerJoined("remote", half)
		if sites {
			p.SetSites("self")
			p.SetPeerLocal("local", true)
		}
		now := time.Unix(0, 0)
		asked := 0
		for range n {
			i, ok := p.NextForPeer("remote", now)
			if !ok {
				break
			}
			p.Requested(i, "remote", now)
			if half.Has(i) {
				asked++
			}
		}
		if sites && asked != 0 {
			t.Errorf("with sites: %d chunks a same-site peer holds were asked across, want 0", asked)
		}
		if !sites && asked == 0 {
			t.Errorf("without sites: no chunk a same-site peer holds was asked across; the test shows nothing")
		}
	}
}

// Of a chunk no same-site peer holds, exactly one host of the site asks
// across: the one ranked first among the site's hosts.
func TestSitesOneDesignatedPerChunk(t *testing.T) {
	t.Parallel()
	const n = 512
	site := []PeerID{"a1", "a2", "a3", "a4"}
	ps := make([]*Picker, len(site))
	for k, self := range site {
		ps[k] = NewPicker(PickerConfig{NumChunks: n})
		ps[k].SetSites(self)
		for _, q := range site {
			if q != self {
				ps[k].PeerJoined(q, nil)
				ps[k].SetPeerLocal(q, true)
			}
		}
	}
	for i := range n {
		got := 0
		for _, p := range ps {
			if p.AcrossAllowed(i) {
				got++
			}
		}
		if got != 1 {
			t.Fatalf("chunk %d: %d hosts of the site may ask across, want 1", i, got)
		}
	}
	// a4 leaves: its chunks pass to the others, still one each.
	for _, p := range ps[:3] {
		p.PeerLeft("a4")
	}
	for i := range n {
		got := 0
		for _, p := range ps[:3] {
			if p.AcrossAllowed(i) {
				got++
			}
		}
		if got != 1 {
			t.Fatalf("after a4 left, chunk %d: %d hosts may ask across, want 1", i, got)
		}
	}
	// A local holder takes the chunk off every host's cross-site list.
	ps[0].PeerHave("a2", 7)
	if ps[0].AcrossAllowed(7) || ps[0].LocalHolders(7) != 1 {
		t.Errorf("chunk 7 held by a same-site peer: AcrossAllowed = %v, LocalHolders = %d; want false, 1", ps[0].AcrossAllowed(7), ps[0].LocalHolders(7))
	}
}

// siteRun drives one Picker per host through rounds: each host asks its
// peers (same-site first) what its Picker says, every request is answered
// at the end of the round, and every peer hears of the new chunk. A seed
// host alone in site "seed" holds every chunk. It returns the chunks
// received across sites, per site.
func siteRun(t *testing.T, sites bool, nSites, perSite, n int) map[string]int {
	t.Helper()
	type host struct {
		id   PeerID
		site string
		p    *Picker
		have Bitfield
	}
	seed := &host{id: "seed", site: "seed", have: NewBitfield(n)}
	for i := range n {
		seed.have.Set(i)
	}
	hosts := []*host{seed}
	for s := range nSites {
		for k := range perSite {
			id := PeerID(fmt.Sprintf("h%d-%d", s, k))
			h := &host{id: id, site: fmt.Sprintf("s%d", s), have: NewBitfield(n)}
			h.p = NewPicker(PickerConfig{NumChunks: n, Rand: rand.New(rand.NewPCG(uint64(s), uint64(k)))})
			if sites {
				h.p.SetSites(id)
			}
			hosts = append(hosts, h)
		}
	}
	for _, h := range hosts[1:] {
		for _, q := range hosts {
			if q != h {
				h.p.PeerJoined(q.id, q.have)
				h.p.SetPeerLocal(q.id, q.site == h.site)
			}
		}
	}
	type req struct {
		to, from *host
		i        int
	}
	across := map[string]int{}
	now := time.Unix(0, 0)
	for round := 0; round < 20*n; round++ {
		now = now.Add(10 * time.Millisecond)
		var reqs []req
		done := true
		for _, h := range hosts[1:] {
			if h.p.Done() {
				continue
			}
			done = false
			peers := slices.Clone(hosts)
			slices.SortStableFunc(peers, func(a, b *host) int {
				return boolInt(a.site != h.site) - boolInt(b.site != h.site)
			})
			for _, q := range peers {
				if q == h {
					continue
				}
				for range n {
					i, ok := h.p.NextForPeer(q.id, now)
					if !ok {
						break
					}
					h.p.Requested(i, q.id, now)
					reqs = append(reqs, req{h, q, i})
				}
			}
		}
		if done {
			return across
		}
		now = now.Add(10 * time.Millisecond)
		for _, r := range reqs {
			if r.to.have.Has(r.i) {
				continue
			}
			r.to.p.Received(r.i, r.from.id, now, 1<<20)
			r.to.have.Set(r.i)
			if r.from.site != r.to.site {
				across[r.to.site]++
			}
			for _, q := range hosts[1:] {
				if q != r.to {
					q.p.PeerHave(r.to.id, r.i)
				}
			}
		}
	}
	t.Fatalf("sites=%v: not done after %d rounds", sites, 20*n)
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// With sites known, each site pulls about one copy across its link; the
// same run without the rule pulls several.
func TestSitesOneCopyPerSite(t *testing.T) {
	t.Parallel()
	const nSites, perSite, n = 3, 4, 256
	with := siteRun(t, true, nSites, perSite, n)
	without := siteRun(t, false, nSites, perSite, n)
	for s := range nSites {
		name := fmt.Sprintf("s%d", s)
		cw, co := float64(with[name])/n, float64(without[name])/n
		t.Logf("site %s: %.2f copies across with sites, %.2f without", name, cw, co)
		if cw > 1.3 {
			t.Errorf("site %s with sites: %.2f copies across, want <= 1.3", name, cw)
		}
		if co < 2*cw {
			t.Errorf("site %s: %.2f copies across without sites, %.2f with; want at least twice as many without", name, co, cw)
		}
	}
}

func TestInferSite(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	us := time.Microsecond
	tests := []struct {
		name  string
		rtts  map[PeerID]time.Duration
		site  Site
		local []PeerID
	}{
		{"none measured", map[PeerID]time.Duration{"b": 0}, Site{}, nil},
		{"two sites", map[PeerID]time.Duration{"b": 200 * us, "c": 300 * us, "x": 20 * ms, "y": 21 * ms},
			Site{"~a", SiteInferred}, []PeerID{"b", "c"}},
		{"noisy LAN", map[PeerID]time.Duration{"b": 150 * us, "c": 900 * us, "d": 1100 * us, "x": 15 * ms, "y": 30 * ms},
			Site{"~a", SiteInferred}, []PeerID{"b", "c", "d"}},
		{"name is the lowest ID", map[PeerID]time.Duration{"0z": 2 * ms, "c": 3 * ms, "x": 40 * ms},
			Site{"~0z", SiteInferred}, []PeerID{"0z", "c"}},
		{"all alike", map[PeerID]time.Duration{"b": 10 * ms, "c": 12 * ms, "d": 15 * ms}, Site{}, nil},
		{"no gap", map[PeerID]time.Duration{"b": 10 * ms, "c": 19 * ms, "d": 25 * ms, "e": 35 * ms}, Site{}, nil},
		{"loaded loopback", map[PeerID]time.Duration{"b": 80 * us, "c": 120 * us, "d": 2 * ms, "e": 4 * ms}, Site{}, nil},
		{"loopback spike", map[PeerID]time.Duration{"b": 100 * us, "c": 7 * ms, "d": 8 * ms}, Site{}, nil},
	}
	for _, tt := range tests {
		site, local := InferSite("a", tt.rtts)
		if site != tt.site || !slices.Equal(local, tt.local) {
			t.Errorf("%s: InferSite = %v, %v; want %v, %v", tt.name, site, local, tt.site, tt.local)
		}
	}
	// Hosts of one site that measure their peers agree on the name.
	a, _ := InferSite("a", map[PeerID]time.Duration{"b": ms, "x": 30 * ms})
	b, _ := InferSite("b", map[PeerID]time.Duration{"a": ms, "x": 31 * ms})
	if a != b {
		t.Errorf("InferSite: a says %v, b says %v; want the same", a, b)
	}
}

func TestResolveSite(t *testing.T) {
	t.Parallel()
	inf := Site{"~a", SiteInferred}
	if got := ResolveSite("rack1", inf); got != (Site{"rack1", SiteConfigured}) {
		t.Errorf("ResolveSite(rack1, inferred) = %v, want the configured site", got)
	}
	if got := ResolveSite("", inf); got != inf {
		t.Errorf("ResolveSite(\"\", inferred) = %v, want %v", got, inf)
	}
	if got := ResolveSite("", Site{}); got.Source != SiteUnknown {
		t.Errorf("ResolveSite(\"\", none) = %v, want unknown", got)
	}
	for _, bad := range []string{"", "~x", "a b", string(make([]byte, MaxSiteLen+1))} {
		if CheckSiteName(bad) == nil {
			t.Errorf("CheckSiteName(%q) = nil, want an error", bad)
		}
	}
	if err := CheckSiteName("dc-1.rack_2"); err != nil {
		t.Errorf("CheckSiteName(dc-1.rack_2) = %v", err)
	}
}

func TestChooseSitePeers(t *testing.T) {
	t.Parallel()
	local := []int{1, 2, 3, 4, 5, 6}
	all := []int{1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 17}
	rng := rand.New(rand.NewPCG(1, 1))
	got := ChooseSitePeers(local, all, 8, 2, func(q int) bool { return true }, rng, nil)
	nLocal := 0
	for _, q := range got {
		if q < 10 {
			nLocal++
		}
	}
	if len(got) != 8 || nLocal < 6 {
		t.Errorf("ChooseSitePeers(8 wanted, 2 cross) = %v: %d local, want 8 peers, all 6 local ones among them", got, nLocal)
	}
	if !AcceptSitePeer(true, 5, 2) || AcceptSitePeer(false, 2, 2) || !AcceptSitePeer(false, 1, 2) {
		t.Errorf("AcceptSitePeer: a local peer is always accepted, a cross-site one below the cap only")
	}
}

// A chunk we do not rank first for waits for the host that does, then is
// asked across once our ranked wait (OriginFallbackDelay before any
// measurement) has passed with no local peer holding it.
func TestSitesRankedWait(t *testing.T) {
	t.Parallel()
	const n = 64
	p := NewPicker(PickerConfig{NumChunks: n, OriginFallbackDelay: time.Second, MaxInflightPerPeer: 1 << 10, MaxInflightBytes: 1 << 40, InitialBDP: 1 << 40})
	p.SetSites("self")
	p.PeerJoined("local", nil)
	p.SetPeerLocal("local", true)
	t0 := time.Unix(100, 0)
	p.NextForPeer("local", t0) // the Picker's clock starts
	all := NewBitfield(n)
	for i := range n {
		all.Set(i)
	}
	p.PeerJoined("remote", all)
	waiting := 0
	for i := range n {
		if !p.AcrossAllowed(i) {
			waiting++
		}
	}
	if waiting == 0 || waiting == n {
		t.Fatalf("%d of %d chunks wait for the other host of the site, want some but not all", waiting, n)
	}
	asked := map[int]bool{}
	for range n {
		i, ok := p.NextForPeer("remote", t0)
		if !ok {
			break
		}
		p.Requested(i, "remote", t0)
		asked[i] = true
	}
	if len(asked) != n-waiting {
		t.Errorf("asked across %d chunks at once, want the %d we rank first for", len(asked), n-waiting)
	}
	t1 := t0.Add(1100 * time.Millisecond)
	more := 0
	for range n {
		i, ok := p.NextForPeer("remote", t1)
		if !ok {
			break
		}
		p.Requested(i, "remote", t1)
		if asked[i] {
			t.Fatalf("chunk %d asked twice", i)
		}
		more++
	}
	if more != waiting {
		t.Errorf("after the wait, %d more chunks asked across, want the %d that waited", more, waiting)
	}
}
