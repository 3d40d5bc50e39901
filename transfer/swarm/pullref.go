package swarm

import (
	"context"
	"slices"
	"time"

	"github.com/ipfs/go-cid"
)

// Pull-through requests for chunks of packages the fetcher does not know
// yet. A request that names its chunk (pullWithRef: CID and length) lets
// a fetcher that has not resolved the package start the origin fetch at
// once, instead of after resolving the package (a metadata refresh and a
// manifest fetch, which in a flash crowd the fetcher's own fetch of the
// package is waiting for too). The chunk is still one of a package the
// signed metadata publishes, checked after the fact: the fetcher resolves
// the package meanwhile (Config.Manifests). An asker whose chunk is not
// the one at that index of the resolved manifest gets no more such
// fetches for pullCacheTTL; the bytes of a chunk whose package the
// fetcher cannot resolve (its metadata does not publish it, or not yet)
// stay counted against the asker for pullCacheTTL.
//
// What an asker can make a fetcher fetch this way is bounded: only from
// the fetcher's own origin, only a chunk by its CIDv1 raw sha2-256 (no
// other URL), at most metadata.MaxChunkSize bytes, verified against the
// CID before it is served or kept; and, per asker, the bytes of such
// requests whose package is not confirmed (counted from the request until
// its package is resolved, and for pullCacheTTL if it cannot be) at most
// unconfirmedPeerBytes, or one chunk; in all, the bytes whose package is
// being resolved at most unconfirmedBytes.
// Beyond that a request waits for the package to be resolved, as one
// without the chunk's CID does.

// Bounds of fetching chunks for packages not confirmed yet.
const (
	unconfirmedPeerBytes = 16 << 20
	unconfirmedBytes     = 128 << 20
	// maxStruck bounds the askers remembered as refuted.
	maxStruck = 4096
)

// unconfirmedPulls is a fetcher's account of the chunks it fetches for
// askers before it knows their packages (pullMu).
type unconfirmedPulls struct {
	bytes map[PeerID]int64 // per asker, being confirmed
	all   int64
	// unresolved: per asker, the chunks whose package could not be
	// resolved, counted until they expire.
	unresolved map[PeerID][]unresolvedPull
	// struck: askers whose chunk was not the one their package has at
	// that index (or whose package could not be resolved), and when.
	struck map[PeerID]time.Time
	// resolving: the packages being resolved to confirm requests.
	resolving map[cid.Cid]*resolveCall
}

// unresolvedPull is a chunk fetched for an asker whose package could
// not be resolved: n bytes, counted against the asker until until.
type unresolvedPull struct {
	n     int64
	until time.Time
}

// unresolvedLocked returns p's unresolved bytes, dropping the expired
// (pullMu held).
func (u *unconfirmedPulls) unresolvedLocked(p PeerID, now time.Time) int64 {
	l := slices.DeleteFunc(u.unresolved[p], func(x unresolvedPull) bool { return now.After(x.until) })
	if len(l) == 0 {
		delete(u.unresolved, p)
		return 0
	}
	u.unresolved[p] = l
	var n int64
	for _, x := range l {
		n += x.n
	}
	return n
}

// resolveCall is one resolution of a package, shared by the requests
// that wait for it to be confirmed.
type resolveCall struct {
	done chan struct{}
	pi   *pkgInfo
	err  error
}

// admitUnconfirmed takes req's chunk into p's unconfirmed bytes if p and
// the host have room, and starts confirming it: its package is resolved
// in the background, and the bytes are p's until then. It reports false
// when the fetch must wait for the package (no resolver, p refuted
// lately, no room, or the Swarm closing).
func (s *Swarm) admitUnconfirmed(p PeerID, req pullRequest) bool {
	if s.cfg.Manifests == nil {
		return false
	}
	n := req.ref.Length
	s.pullMu.Lock()
	u := &s.unconf
	if at, ok := u.struck[p]; ok && time.Since(at) <= pullCacheTTL {
		s.pullMu.Unlock()
		return false
	}
	mine := u.bytes[p] + u.unresolvedLocked(p, time.Now())
	if mine > 0 && mine+n > unconfirmedPeerBytes || u.all > 0 && u.all+n > unconfirmedBytes {
		s.pullMu.Unlock()
		return false
	}
	if u.bytes == nil {
		u.bytes = make(map[PeerID]int64)
	}
	u.bytes[p] += n
	u.all += n
	s.pullMu.Unlock()
	if !s.goroutine(func() { s.confirmPull(p, req) }) {
		s.settleUnconfirmed(p, n, confirmed)
		return false
	}
	return true
}

// Outcomes of confirming a chunk fetched before its package was known.
const (
	confirmed  = iota
	unresolved // the package could not be resolved
	refuted    // the package's chunk at that index is another
)

// confirmPull resolves req's package and checks that req's chunk is the
// one at that index; then it settles p's bytes (settleUnconfirmed).
func (s *Swarm) confirmPull(p PeerID, req pullRequest) {
	pi, err := s.resolveShared(req.manifest)
	outcome := confirmed
	switch {
	case err != nil:
		outcome = unresolved
	case req.index >= len(pi.refs) || !sameChunk(pi.refs[req.index], req.ref):
		outcome = refuted
	}
	if outcome != confirmed {
		s.log.Debug("pull request's chunk not confirmed", "peer", p, "manifest", req.manifest, "index", req.index, "chunk", req.ref.CID, "refuted", outcome == refuted, "err", err)
	}
	s.settleUnconfirmed(p, req.ref.Length, outcome)
}

// settleUnconfirmed ends the confirmation of p's chunk of n bytes: its
// bytes are p's no more once confirmed, for pullCacheTTL if unresolved;
// a refuted p gets no more fetches before confirmation for pullCacheTTL.
func (s *Swarm) settleUnconfirmed(p PeerID, n int64, outcome int) {
	s.pullMu.Lock()
	defer s.pullMu.Unlock()
	u := &s.unconf
	u.all -= n
	if u.bytes[p] -= n; u.bytes[p] <= 0 {
		delete(u.bytes, p)
	}
	now := time.Now()
	switch outcome {
	case unresolved:
		if u.unresolved == nil || len(u.unresolved) >= maxStruck {
			u.unresolved = make(map[PeerID][]unresolvedPull)
		}
		u.unresolved[p] = append(u.unresolved[p], unresolvedPull{n: n, until: now.Add(pullCacheTTL)})
	case refuted:
		if u.struck == nil || len(u.struck) >= maxStruck {
			u.struck = make(map[PeerID]time.Time)
		}
		u.struck[p] = now
	}
}

// resolveShared returns what is known of manifest (pullPackage), one
// resolution at a time per manifest, on the Swarm's context.
func (s *Swarm) resolveShared(manifest cid.Cid) (*pkgInfo, error) {
	s.pullMu.Lock()
	u := &s.unconf
	c := u.resolving[manifest]
	if c == nil {
		c = &resolveCall{done: make(chan struct{})}
		if u.resolving == nil {
			u.resolving = make(map[cid.Cid]*resolveCall)
		}
		u.resolving[manifest] = c
		s.pullMu.Unlock()
		c.pi, _, c.err = s.pullPackage(s.ctx, manifest)
		s.pullMu.Lock()
		delete(u.resolving, manifest)
		s.pullMu.Unlock()
		close(c.done)
		return c.pi, c.err
	}
	s.pullMu.Unlock()
	select {
	case <-c.done:
		return c.pi, c.err
	case <-s.ctx.Done():
		return nil, context.Cause(s.ctx)
	}
}
