package swarm

import (
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/storkpm/stork/transfer/policy"
)

// Sites: this host's site (Config.Site, or inferred from Config.RTT), the
// sites its peers announce in their Have, and which peers the downloads'
// Pickers treat as local (policy's site rule, sites.go there).

// siteInferEvery: how often a download's tick may infer the site again.
const siteInferEvery = time.Second

// siteView is what the Swarm knows of sites. Its lock is taken last
// (after a download's and the Swarm's).
type siteView struct {
	mu        sync.Mutex
	inferred  policy.Site
	cluster   map[PeerID]bool   // the inferred site's peers
	announced map[PeerID]string // sites peers announced
	rtts      map[PeerID]time.Duration
	inferAt   time.Time
}

// PeerSite is a peer's site as this host sees it.
type PeerSite struct {
	Peer  PeerID `json:"peer"`
	Site  string `json:"site,omitempty"` // announced; "" none
	Local bool   `json:"local"`          // in our site
}

// Site returns this host's site: the configured one, else the one
// inferred from round-trip times so far, else none (SiteUnknown).
func (s *Swarm) Site() policy.Site {
	s.sites.mu.Lock()
	defer s.sites.mu.Unlock()
	return policy.ResolveSite(s.cfg.Site, s.sites.inferred)
}

// PeerSites lists the peers whose site this host knows or whose round trip
// it measured, sorted by peer ID.
func (s *Swarm) PeerSites() []PeerSite {
	s.sites.mu.Lock()
	defer s.sites.mu.Unlock()
	ids := make(map[PeerID]bool)
	for p := range s.sites.announced {
		ids[p] = true
	}
	for p := range s.sites.rtts {
		ids[p] = true
	}
	out := make([]PeerSite, 0, len(ids))
	for _, p := range slices.Sorted(maps.Keys(ids)) {
		out = append(out, PeerSite{Peer: p, Site: s.sites.announced[p], Local: s.localLocked(p)})
	}
	return out
}

// announce records the site peer announced in its Have ("" none).
func (s *Swarm) announce(peer PeerID, site string) {
	s.sites.mu.Lock()
	defer s.sites.mu.Unlock()
	if s.sites.announced == nil {
		s.sites.announced = make(map[PeerID]string)
	}
	if site == "" {
		delete(s.sites.announced, peer)
	} else {
		s.sites.announced[peer] = site
	}
}

// localLocked reports whether peer is in our site: with a configured site,
// the peer announced the same; with an inferred one, the peer is in the
// RTT cluster. s.sites.mu is held.
func (s *Swarm) localLocked(peer PeerID) bool {
	if s.cfg.Site != "" {
		return policy.SameSite(policy.Site{Name: s.cfg.Site, Source: policy.SiteConfigured}, s.sites.announced[peer])
	}
	return s.sites.cluster[peer]
}

// inferSite measures the download's peers (Config.RTT) and infers the
// site again, when none is configured: at once for a peer not measured
// yet, else at most every siteInferEvery. Once inferred, a site is
// replaced by another one inferred, never by none.
func (s *Swarm) inferSite(peers []PeerID, now time.Time) {
	if s.cfg.Site != "" || s.cfg.RTT == nil {
		return
	}
	s.sites.mu.Lock()
	defer s.sites.mu.Unlock()
	fresh := false
	for _, p := range peers {
		if _, ok := s.sites.rtts[p]; !ok {
			fresh = true
			break
		}
	}
	if !fresh && now.Sub(s.sites.inferAt) < siteInferEvery {
		return
	}
	s.sites.inferAt = now
	if s.sites.rtts == nil {
		s.sites.rtts = make(map[PeerID]time.Duration)
	}
	for _, p := range peers {
		if d := s.cfg.RTT(p); d > 0 {
			s.sites.rtts[p] = d
		}
	}
	site, local := policy.InferSite(s.cfg.Self, s.sites.rtts)
	if site.Source == policy.SiteUnknown && s.sites.inferred.Source != policy.SiteUnknown {
		return // a noisy round trip blurred the boundary: keep the site
	}
	if site != s.sites.inferred {
		s.log.Info("site inferred from round-trip times", "site", site.Name, "peers", len(local))
	}
	s.sites.inferred = site
	s.sites.cluster = make(map[PeerID]bool, len(local))
	for _, p := range local {
		s.sites.cluster[p] = true
	}
}

// applySites gives the download's Picker the site rule once this host
// knows its site, and each peer's place in or out of it. d.mu is held.
func (d *download) applySites(now time.Time) {
	s := d.s
	if s.cfg.Site == "" && s.cfg.RTT != nil {
		peers := make([]PeerID, 0, len(d.peers))
		for p := range d.peers {
			peers = append(peers, p)
		}
		s.inferSite(peers, now)
	}
	if !d.picker.SitesOn() {
		if s.Site().Source == policy.SiteUnknown {
			return
		}
		d.picker.SetSites(s.cfg.Self)
	}
	s.sites.mu.Lock()
	for p := range d.peers {
		d.picker.SetPeerLocal(p, s.localLocked(p))
	}
	s.sites.mu.Unlock()
	d.trimCross()
}

// trimCross stops trading with the peers of other sites beyond
// Config.CrossSitePeers, keeping those the Picker ranks best: peers that
// joined before this host knew its site (an inferred site is known only
// once round trips are measured) or before their site was known. Their
// sessions stay open, as admitSite's. d.mu is held.
func (d *download) trimCross() {
	s := d.s
	var cross []PeerID
	for p, ss := range d.peers {
		ss.mu.Lock()
		joined := ss.gotHave
		ss.mu.Unlock()
		if !joined {
			continue
		}
		s.sites.mu.Lock()
		c := s.crossLocked(p)
		s.sites.mu.Unlock()
		if c {
			cross = append(cross, p)
		}
	}
	// Ranked are those the Picker knows: one whose have-map is in but not
	// yet taken (peerJoined) goes through admitSite instead.
	ranked := d.picker.RankPeers(cross)
	if len(ranked) <= s.cfg.CrossSitePeers {
		return
	}
	for _, p := range ranked[s.cfg.CrossSitePeers:] {
		ss := d.peers[p]
		delete(d.peers, p)
		d.picker.PeerLeft(p)
		ss.dl.CompareAndSwap(d, nil)
		s.log.Debug("peer of another site no longer traded with: cross-site peers over the cap", "peer", p, "manifest", d.c, "cap", s.cfg.CrossSitePeers)
	}
}

// announcedSite is the site this host announces in its Have: the
// configured one only (an inferred site is this host's own guess).
func (s *Swarm) announcedSite() string { return s.cfg.Site }

// crossLocked reports whether peer is known to be in another site than
// ours: with a configured site, the peer announced another one or none;
// with an inferred one, its round trip was measured and put it outside
// our cluster. With no site of ours, no peer is. s.sites.mu is held.
func (s *Swarm) crossLocked(peer PeerID) bool {
	if s.cfg.Site != "" {
		return !s.localLocked(peer)
	}
	if s.sites.inferred.Source == policy.SiteUnknown {
		return false
	}
	_, measured := s.sites.rtts[peer]
	return measured && !s.sites.cluster[peer]
}

// crossPeers counts the download's peers, but except, whose have-map
// arrived and that are in another site. d.mu is held.
func (d *download) crossPeers(except PeerID) int {
	var joined []PeerID
	for p, ss := range d.peers {
		if p == except {
			continue
		}
		ss.mu.Lock()
		ok := ss.gotHave
		ss.mu.Unlock()
		if ok {
			joined = append(joined, p)
		}
	}
	s := d.s
	s.sites.mu.Lock()
	defer s.sites.mu.Unlock()
	n := 0
	for _, p := range joined {
		if s.crossLocked(p) {
			n++
		}
	}
	return n
}

// admitSite reports whether ss, whose have-map just arrived, may trade
// with the download (policy.AcceptSitePeer): a peer of our site always,
// one of another site only while fewer than Config.CrossSitePeers of the
// download's peers are. A refused session is detached from the download
// and stays open: the peer may still fetch from us, and a session kept
// open is not opened again. d.mu is held.
func (d *download) admitSite(ss *session) bool {
	s := d.s
	s.sites.mu.Lock()
	cross := s.crossLocked(ss.peer)
	s.sites.mu.Unlock()
	if !cross || policy.AcceptSitePeer(false, d.crossPeers(ss.peer), s.cfg.CrossSitePeers) {
		return true
	}
	delete(d.peers, ss.peer)
	ss.dl.CompareAndSwap(d, nil)
	s.log.Debug("peer of another site not traded with: cross-site peers at the cap", "peer", ss.peer, "manifest", d.c, "cap", s.cfg.CrossSitePeers)
	return false
}

// choosePeers returns which of the providers found (findPeers passes
// them one at a time, as they arrive) to open sessions to:
// all of them while this host knows no site (connect caps their number);
// else those of our site first, then others, at most as many as the
// download has room for, and none known to be in another site once
// Config.CrossSitePeers of the download's peers are
// (policy.ChooseSitePeers).
func (d *download) choosePeers(found []PeerID, rng *rand.Rand) []PeerID {
	s := d.s
	if s.Site().Source == policy.SiteUnknown {
		return found
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	want := s.cfg.MaxPeersPerDownload - len(d.peers) - len(d.connecting)
	room := s.cfg.CrossSitePeers - d.crossPeers("")
	s.mu.Lock()
	open := s.sessions[d.c]
	fresh := make([]PeerID, 0, len(found))
	for _, p := range found {
		if _, ok := open[p]; !ok && !d.banned[p] && !d.dropped[p] && !d.connecting[p] && d.peers[p] == nil {
			fresh = append(fresh, p)
		}
	}
	s.mu.Unlock()
	s.sites.mu.Lock()
	var local []PeerID
	cross := make(map[PeerID]bool)
	for _, p := range fresh {
		if s.localLocked(p) {
			local = append(local, p)
		} else if s.crossLocked(p) {
			cross[p] = true
		}
	}
	s.sites.mu.Unlock()
	ok := func(p PeerID) bool {
		if !cross[p] {
			return true
		}
		room--
		return room >= 0
	}
	return policy.ChooseSitePeers(local, fresh, want, s.cfg.CrossSitePeers, ok, rng, nil)
}
