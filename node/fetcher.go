package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	httporigin "github.com/storkpm/stork/transfer/origin"
	"github.com/storkpm/stork/transfer/policy"
	"github.com/storkpm/stork/transfer/swarm"
)

// filePeers is what sourcesFetcher needs of the libp2p side (P2P).
type filePeers interface {
	// FilePeers lists the connected peers to ask, in random order.
	FilePeers() []swarm.PeerID
	// ManifestHolders lists the connected peers whose have-lists name
	// the package of manifest, in random order.
	ManifestHolders(manifest cid.Cid) []swarm.PeerID
	// FindProviders streams the peers that announced a package.
	FindProviders(ctx context.Context, manifest cid.Cid) <-chan swarm.PeerID
	// FetchFile asks one peer for one repository file (unverified).
	FetchFile(ctx context.Context, to swarm.PeerID, path string, maxLen int64) ([]byte, error)
	// PullFile asks one peer for one repository file that it fetches
	// for us if it does not hold it (unverified).
	PullFile(ctx context.Context, to swarm.PeerID, path string, maxLen int64) ([]byte, error)
}

// unlessSameFetcher is an origin that confirms a copy of a file that
// may change, taken from elsewhere, without sending it again
// (httporigin.Client: If-None-Match, a 304).
type unlessSameFetcher interface {
	FetchUnlessSame(ctx context.Context, p string, maxLen int64, have []byte) ([]byte, error)
	// ConfirmsCopies is false once the origin sent a body without the
	// ETag of its bytes: it would send the body anyway, and a member's
	// copy saves nothing.
	ConfirmsCopies() bool
}

var (
	_ filePeers                = (*P2P)(nil)
	_ metadata.CheckingFetcher = (*sourcesFetcher)(nil)
	_ unlessSameFetcher        = (*httporigin.Client)(nil)
)

// Defaults of sourcesFetcher.
const (
	// defaultPeerWave is how many peers are asked at once for one file;
	// each one that fails is replaced by the next, up to defaultMaxPeers.
	// Every good copy of a file is the same, so a few suffice.
	defaultPeerWave = 3
	defaultMaxPeers = 16
	// defaultNewestWait is how long FetchNewest waits for the origin once
	// a peer's copy was accepted: the origin is the source of truth for
	// what is newest, but an origin that does not answer must not hold
	// up a host its peers can serve.
	defaultNewestWait = 2 * time.Second
	// defaultUnlistedWait is how long a manifest's fetch waits for the
	// origin before it also asks the connected peers whose have-lists do
	// not name the package (they hold it only if they got it moments
	// ago): a host resolving an upgrade at the same time as its
	// neighbours would otherwise ask several of them for every manifest,
	// and be refused by all.
	defaultUnlistedWait = time.Second
	// defaultPullWait bounds the wait for one member asked to fetch a
	// repository file for this host (cooperative fetching): a dead or
	// slow member costs this much, then the next is asked, then the
	// origin.
	defaultPullWait = 2 * time.Second
	// filePullRanks is how many members a file is asked of before the
	// origin.
	filePullRanks = 2
	// quietFor: how long a member that left a file pull unanswered is
	// not asked for files; maxQuiet bounds the members so marked.
	quietFor = 30 * time.Second
	maxQuiet = 1024
	// tsKeep: how long a copy of timestamp.json the origin sent or
	// confirmed answers members' pulls without asking it again. A crowd
	// asks within it; a copy older than the origin's costs its askers
	// the bytes, never the newest (they ask the origin themselves).
	tsKeep = time.Second
)

// sourcesFetcher is the daemon's repository fetcher: it asks the origin
// and its peers (FilesProtocol) at once and takes the first copy that
// verifies (metadata.CheckingFetcher): any peer may serve metadata because
// the client checks it as it checks the origin's, and manifests because
// their path names their CID. With no peers it is the origin alone, with
// the CheckingFetcher contract (which lets the client go on with its
// trusted metadata while the origin is unreachable).
type sourcesFetcher struct {
	origin metadata.Fetcher
	peers  filePeers // nil: none
	// local returns what this host holds (its store's manifests), asked
	// before anyone else; nil: nothing.
	local FileLookup
	log   *slog.Logger
	url   string // the origin's, for logs

	wave, maxPeers int
	newestWait     time.Duration
	unlistedWait   time.Duration

	// coop returns, in rank order, at most max members to ask for a file
	// members fetch for each other (pullable) before the origin: those
	// ranked before this host for key (Swarm.FileFetchers). nil: none
	// (no cooperative fetching).
	coop     func(key uint64, max int) []swarm.PeerID
	pullWait time.Duration
	// flights shares one origin fetch of such a file among this host's
	// own fetches and the pulls its peers ask of it.
	flights fileFlights
	// tsFlights shares one origin request for timestamp.json among this
	// host's refresh and its peers' pulls for tsKeep. tsLast is the last
	// copy taken (from the origin, or from a member and then confirmed):
	// the next request asks the origin whether it is still the one
	// served.
	tsFlights fileFlights
	tsLast    []byte
	// pullsTaken, pullsFailed count the files asked of members
	// (pullFirst) by result (stork_node_file_pulls_total).
	pullsTaken, pullsFailed atomic.Int64

	// down records an origin outage seen by metadata fetches, so that it
	// is logged once (WARN) and its end once (INFO).
	mu        sync.Mutex
	downSince time.Time
	// quiet: the members that left a file pull unanswered, until when
	// they are not asked (isQuiet).
	quiet map[swarm.PeerID]time.Time
}

func newSourcesFetcher(origin metadata.Fetcher, url string, peers filePeers, local FileLookup, log *slog.Logger) *sourcesFetcher {
	return &sourcesFetcher{
		origin: origin, peers: peers, local: local, log: log, url: url,
		wave: defaultPeerWave, maxPeers: defaultMaxPeers, newestWait: defaultNewestWait, unlistedWait: defaultUnlistedWait,
		pullWait: defaultPullWait, tsFlights: fileFlights{keep: tsKeep},
	}
}

// Fetch implements metadata.Fetcher. A manifest (manifests/CID) is taken
// from this host's store if it holds it, else asked of the origin and the
// peers at once; every copy is checked against its CID. Any other file
// comes from the origin.
func (f *sourcesFetcher) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	name, ok := strings.CutPrefix(p, metadata.ManifestsDir+"/")
	if !ok {
		return f.origin.Fetch(ctx, p, maxLen)
	}
	c, err := cid.Decode(name)
	if err != nil || c.String() != name {
		return nil, fmt.Errorf("fetch %s: %w: not a manifest CID", p, metadata.ErrInvalidPath)
	}
	check := func(b []byte) error { return metadata.VerifyCID(c, b) }
	if f.local != nil {
		if b, err := f.local(p, maxLen); err == nil && check(b) == nil {
			return b, nil
		}
	}
	return f.FetchChecked(ctx, p, maxLen, check)
}

// FetchChecked implements metadata.CheckingFetcher. A file whose bytes
// never change is first asked of the members ranked before this host
// (pullFirst).
func (f *sourcesFetcher) FetchChecked(ctx context.Context, p string, maxLen int64, check func([]byte) error) ([]byte, error) {
	if b, ok := f.pullFirst(ctx, p, maxLen, check); ok {
		return b, nil
	}
	return f.race(ctx, p, maxLen, func(b []byte) (int64, error) { return 0, check(b) }, false)
}

// FetchNewest implements metadata.CheckingFetcher. With an origin that
// confirms copies (unlessSameFetcher, ConfirmsCopies), timestamp.json is
// first asked of the members ranked before this host, and the origin is
// then asked whether that copy is the one it serves: a 304 without a
// body, or the newer copy. Every host still asks the origin, so that
// what is newest stays the origin's to tell, and a crowd's hosts take
// its bytes once.
func (f *sourcesFetcher) FetchNewest(ctx context.Context, p string, maxLen int64, check func([]byte) (int64, error)) ([]byte, error) {
	if p == metadata.TimestampPath && f.pullable(p) {
		var v int64
		if b, ok := f.pullFirst(ctx, p, maxLen, func(b []byte) (err error) { v, err = check(b); return err }); ok {
			return f.confirmTimestamp(ctx, b, v, maxLen, check), nil
		}
	}
	return f.race(ctx, p, maxLen, check, true)
}

// confirmTimestamp has the origin confirm b, a member's copy of
// timestamp.json of version v that passed check, and returns the
// origin's copy, or b if the origin cannot be reached or sent a copy
// that does not check. No other peer is asked: the member had its copy
// from the origin within tsKeep, so theirs would be no newer. b becomes
// the copy the next request asks the origin to confirm if it is newer
// than the last one taken (or that one no longer checks).
func (f *sourcesFetcher) confirmTimestamp(ctx context.Context, b []byte, v, maxLen int64, check func([]byte) (int64, error)) []byte {
	if lastV, err := check(f.lastTimestamp()); err != nil || v > lastV {
		f.takeTimestamp(b)
	}
	got, err := f.fromOrigin(ctx, metadata.TimestampPath, maxLen)
	f.noteOrigin(err)
	if err == nil {
		if _, err = check(got); err == nil {
			return got
		}
	}
	f.log.Debug("timestamp: the origin did not confirm the member's copy; taking it", "err", err)
	return b
}

// pullable reports whether p is a file members fetch for each other:
// one whose bytes never change, or timestamp.json when the origin
// confirms copies (its asker still asks the origin).
func (f *sourcesFetcher) pullable(p string) bool {
	if p == metadata.TimestampPath {
		us, ok := f.origin.(unlessSameFetcher)
		return ok && us.ConfirmsCopies()
	}
	return metadata.CooperativePath(p)
}

// copyResult is one source's answer.
type copyResult struct {
	from   swarm.PeerID // "" for the origin
	data   []byte
	err    error
	origin bool
}

// race asks the origin and up to wave peers at once; a peer that fails is
// replaced by the next candidate (none once the origin said the file does
// not exist; see candidates for the order). Without newest, the first
// accepted copy wins. With newest, the best accepted copy wins once the
// origin's is accepted, or newestWait after the first accepted peer copy,
// or when every source has answered.
// Each peer request is bounded by filesTimeout, the search for candidates
// too, and the origin's request by its own stall and rate limits.
func (f *sourcesFetcher) race(ctx context.Context, p string, maxLen int64, check func([]byte) (int64, error), newest bool) ([]byte, error) {
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, which ends every request
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan copyResult, f.maxPeers+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		b, err := f.fromOrigin(ctx, p, maxLen)
		results <- copyResult{data: b, err: err, origin: true}
	}()
	originFailed := make(chan struct{})
	next := f.candidates(ctx, p, &wg, originFailed)
	var (
		asked, running int
		best           []byte
		bestV          int64 = -1
		originDone     bool
		originErr      error // the origin's failure, or its copy's check error
		wait           <-chan time.Time
	)
	for !originDone || running > 0 || next != nil {
		var nextCh <-chan swarm.PeerID
		if running < f.wave && asked < f.maxPeers && !errors.Is(originErr, metadata.ErrNotFound) {
			nextCh = next
		} else if originDone && running == 0 {
			break
		}
		var r copyResult
		select {
		case id, ok := <-nextCh:
			if !ok {
				next = nil
				continue
			}
			asked++
			running++
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := f.peers.FetchFile(ctx, id, p, maxLen)
				results <- copyResult{from: id, data: b, err: err}
			}()
			continue
		case r = <-results:
		case <-wait:
			return best, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("fetch %s: %w", p, ctx.Err())
		}
		if r.origin {
			originDone = true
			f.noteOrigin(r.err)
		} else {
			running--
		}
		err := r.err
		if err == nil {
			var v int64
			if v, err = check(r.data); err == nil && v > bestV {
				best, bestV = r.data, v
			}
			if err != nil && r.origin {
				// Not kept for the next fetch or a peer's pull.
				f.flights.forget(p)
			}
		}
		switch {
		case err != nil && r.origin:
			originErr = err
			close(originFailed)
		case err != nil:
			f.log.Debug("peer copy refused", "path", p, "peer", r.from, "err", err)
		case !newest || r.origin:
			return best, nil
		case wait == nil:
			wait = time.After(f.newestWait)
		}
	}
	if best != nil {
		return best, nil
	}
	return nil, f.noCopy(p, originErr)
}

// pullFirst asks the members ranked before this host for p, a file
// members fetch for each other (pullable), one after the other, each for
// at most pullWait (cooperative fetching: the first-ranked fetches it
// from the origin once for all the hosts that ask it). It returns the first copy
// that passes check; false if none did, p is another file, or this host
// ranks first: the caller then races the origin and its peers.
func (f *sourcesFetcher) pullFirst(ctx context.Context, p string, maxLen int64, check func([]byte) error) ([]byte, bool) {
	if f.coop == nil || f.peers == nil || !f.pullable(p) {
		return nil, false
	}
	for _, id := range f.coop(policy.ChunkKey([]byte(p)), filePullRanks) {
		if f.isQuiet(id) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, f.pullWait)
		b, err := f.peers.PullFile(pctx, id, p, maxLen)
		silent := errors.Is(pctx.Err(), context.DeadlineExceeded)
		cancel()
		if silent && ctx.Err() == nil {
			f.setQuiet(id)
		}
		if err == nil {
			err = check(b)
		}
		if err == nil {
			f.pullsTaken.Add(1)
			return b, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		f.pullsFailed.Add(1)
		f.log.Debug("file pull failed", "path", p, "peer", id, "err", err)
	}
	return nil, false
}

// isQuiet reports whether member id left a file pull unanswered in the
// last quietFor: it is not asked again meanwhile, so that a member
// connected but stuck costs one pullWait, not one per file it ranks
// first for.
func (f *sourcesFetcher) isQuiet(id swarm.PeerID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	until, ok := f.quiet[id]
	if ok && time.Now().After(until) {
		delete(f.quiet, id)
		return false
	}
	return ok
}

// setQuiet marks id quiet for quietFor.
func (f *sourcesFetcher) setQuiet(id swarm.PeerID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.quiet == nil || len(f.quiet) >= maxQuiet {
		f.quiet = map[swarm.PeerID]time.Time{}
	}
	f.quiet[id] = time.Now().Add(quietFor)
}

// fromOrigin fetches p from the origin for this host: a file whose
// bytes never change through flights, so that this host's own fetch and
// its peers' pulls share one request (a manifest's copy is checked
// against its CID first, so that a bad one is not shared), and
// timestamp.json through timestampFromOrigin.
func (f *sourcesFetcher) fromOrigin(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	if us, ok := f.origin.(unlessSameFetcher); ok && p == metadata.TimestampPath {
		return f.timestampFromOrigin(ctx, us, maxLen, false)
	}
	if !metadata.CooperativePath(p) {
		return f.origin.Fetch(ctx, p, maxLen)
	}
	b, err := f.flights.do(ctx, p, func(ctx context.Context) ([]byte, error) {
		b, err := f.origin.Fetch(ctx, p, maxLen)
		if err != nil {
			return nil, err
		}
		if name, ok := strings.CutPrefix(p, metadata.ManifestsDir+"/"); ok {
			if err := metadata.VerifyCID(cid.MustParse(name), b); err != nil {
				return nil, fmt.Errorf("fetch %s: %w", p, err)
			}
		}
		return b, nil
	})
	if err == nil && int64(len(b)) > maxLen {
		return nil, fmt.Errorf("fetch %s: %w: %d bytes, limit %d", p, metadata.ErrTooLarge, len(b), maxLen)
	}
	return b, err
}

// timestampFromOrigin asks the origin for timestamp.json, with the last
// copy taken to be confirmed, in one request shared by the callers of
// that moment (tsFlights). With kept (a member's pull), the copy the
// origin sent or confirmed within tsKeep answers without a request.
func (f *sourcesFetcher) timestampFromOrigin(ctx context.Context, us unlessSameFetcher, maxLen int64, kept bool) ([]byte, error) {
	flight := f.tsFlights.join
	if kept {
		flight = f.tsFlights.do
	}
	b, err := flight(ctx, metadata.TimestampPath, func(ctx context.Context) ([]byte, error) {
		have := f.lastTimestamp()
		b, err := us.FetchUnlessSame(ctx, metadata.TimestampPath, max(maxLen, int64(len(have))), have)
		if err == nil {
			f.takeTimestamp(b)
		}
		return b, err
	})
	if err == nil && int64(len(b)) > maxLen {
		return nil, fmt.Errorf("fetch %s: %w: %d bytes, limit %d", metadata.TimestampPath, metadata.ErrTooLarge, len(b), maxLen)
	}
	return b, err
}

// lastTimestamp is the copy of timestamp.json the next origin request
// asks to confirm (tsLast); takeTimestamp makes b that copy.
func (f *sourcesFetcher) lastTimestamp() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tsLast
}

func (f *sourcesFetcher) takeTimestamp(b []byte) {
	f.mu.Lock()
	f.tsLast = b
	f.mu.Unlock()
}

// forPeer is the daemon's FilePuller: it fetches, for a peer that ranks
// this host first, a repository file this host does not hold, from the
// origin: one request however many peers ask meanwhile, shared with this
// host's own fetch (fromOrigin). A manifest is checked against its CID;
// metadata of a fixed version goes as the origin sent it (the asker
// alone knows what it expects, and checks it). timestamp.json (with an
// origin that confirms copies) is the copy the origin sent or confirmed
// within tsKeep, else asked of it again; its asker then has the origin
// confirm it, so that a member can cost a host the bytes, never make a
// stale copy pass for the newest.
//
// Unlike a chunk's pull-through request (pullManifests.ResolveManifest),
// a manifest's is not looked up among the packages this host's metadata
// publishes: that takes the metadata client, which this host's own
// resolution of an upgrade holds while it fetches the closure's
// manifests, longer than an asker's pullWait. Nothing is lost by it: a
// peer can make this host ask the origin only for what it could ask the
// origin for itself, one request per request, at the files rate limit,
// and what comes back is kept in memory for flightKeep at most.
func (f *sourcesFetcher) forPeer(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	if !f.pullable(p) {
		return nil, fmt.Errorf("pull %s: %w: not a file hosts fetch for each other", p, metadata.ErrInvalidPath)
	}
	if p == metadata.TimestampPath {
		// pullable: the origin confirms copies.
		return f.timestampFromOrigin(ctx, f.origin.(unlessSameFetcher), maxLen, true)
	}
	return f.fromOrigin(ctx, p, maxLen)
}

// noCopy is race's error when no source gave a copy that verifies (see
// metadata.CheckingFetcher).
func (f *sourcesFetcher) noCopy(p string, originErr error) error {
	switch {
	case originErr == nil:
		return fmt.Errorf("fetch %s: %w: no source has it", p, metadata.ErrNotFound)
	case errors.Is(originErr, metadata.ErrNotFound), !originUnreachable(originErr):
		return originErr
	}
	return fmt.Errorf("fetch %s: %w: %w: no peer has a copy that verifies, and the origin %s: %w",
		p, metadata.ErrNotFound, metadata.ErrUnavailable, f.url, originErr)
}

// originUnreachable tells an origin that could not answer from one that
// answered with a copy the caller refused.
func originUnreachable(err error) bool {
	return !errorsIsAny(err, metadata.ErrNotFound, metadata.ErrHashMismatch, metadata.ErrSignature,
		metadata.ErrExpired, metadata.ErrRollback, metadata.ErrMalformed)
}

// candidates streams the peers to ask for p: for a repository file, the
// connected peers. For a manifest, first the connected peers whose
// have-lists name its package; then, once the origin failed or took
// unlistedWait, the other connected peers, and the package's providers.
// The channel closes when they are exhausted or ctx ends; its goroutine
// is counted in wg.
func (f *sourcesFetcher) candidates(ctx context.Context, p string, wg *sync.WaitGroup, originFailed <-chan struct{}) <-chan swarm.PeerID {
	out := make(chan swarm.PeerID)
	if f.peers == nil {
		close(out)
		return out
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(out)
		seen := map[swarm.PeerID]bool{}
		send := func(ids ...swarm.PeerID) bool {
			for _, id := range ids {
				if seen[id] {
					continue
				}
				seen[id] = true
				select {
				case out <- id:
				case <-ctx.Done():
					return false
				}
			}
			return true
		}
		var c cid.Cid
		name, isManifest := strings.CutPrefix(p, metadata.ManifestsDir+"/")
		if isManifest {
			var err error
			c, err = cid.Decode(name)
			isManifest = err == nil
		}
		if !isManifest {
			send(f.peers.FilePeers()...)
			return
		}
		if !send(f.peers.ManifestHolders(c)...) {
			return
		}
		t := time.NewTimer(f.unlistedWait)
		defer t.Stop()
		select {
		case <-originFailed:
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if !send(f.peers.FilePeers()...) {
			return
		}
		fctx, cancel := context.WithTimeout(ctx, filesTimeout)
		defer cancel()
		for id := range f.peers.FindProviders(fctx, c) {
			if !send(id) {
				cancel()
			}
		}
	}()
	return out
}

// noteOrigin logs the start of an origin outage once, at WARN, and its end
// once, at INFO.
func (f *sourcesFetcher) noteOrigin(err error) {
	down := err != nil && originUnreachable(err) && !errors.Is(err, context.Canceled)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case down && f.downSince.IsZero():
		f.downSince = time.Now()
		f.log.Warn("origin unreachable: repository metadata and manifests from peers", "origin", f.url, "err", err)
	case !down && err == nil && !f.downSince.IsZero():
		f.log.Info("origin reachable again", "origin", f.url, "down_for", time.Since(f.downSince).Round(time.Second))
		f.downSince = time.Time{}
	}
}
