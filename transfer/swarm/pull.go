package swarm

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	pool "github.com/libp2p/go-buffer-pool"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
)

// Pull-through requests (PullProtocol): a host asks a chunk's fetcher (the
// member ranked first for it, policy.Fetchers) for the chunk; the fetcher
// serves it from its store, or fetches it from the origin once for every
// host that asks (originFetch) and serves it.
//
// Wire format, one request per stream. The asker writes
//
//	uvarint n | manifest CID (n bytes) | uvarint chunk index | flags byte
//	[ uvarint m | chunk CID (m bytes) | uvarint chunk length ]
//
// flags: pullHeldOnly asks for the chunk only if the fetcher holds it
// already (store, cache, or its own download has it): it refuses at once
// otherwise, and never asks the origin for it. pullWithRef says the
// chunk's CID and length follow (the chunk's entry in the asker's
// verified manifest): a fetcher that does not know the package yet can
// serve the chunk from what it holds, or fetch it from its origin at once
// while it resolves the package (pullref.go); a fetcher that knows the
// package refuses a request whose chunk is not the one at that index.
// A fetcher that predates the flag reads the request without the
// trailing fields. pullForwarded marks a request forwarded by a fetcher
// that ranks another member first (download.forward): it is not
// forwarded again; only a request marked pullFirstRank (the asker's
// first choice) is forwarded at all.
//
// and the fetcher answers with status bytes: pullWorking at once when it
// takes the request, again every pullKeepalive while it fetches (as
// pullProgress when the asker set pullWantsProgress and the fetcher's
// origin requests progressed since the last keepalive), then
// one final status: pullOK followed by uvarint length and the chunk's
// bytes, or pullRefused (it does not know the package, or is busy: ask
// the next fetcher), pullMissing (the origin lacks the chunk or sent it
// corrupt) or pullOriginDown (the origin cannot be reached from the
// fetcher: the asker passes it over), or pullAskOther followed by
// uvarint length and a peer ID (it does not know the package, but that
// peer asked it for the chunk before, and fetched it elsewhere: ask it
// whether it holds the chunk).
// Then it closes the stream. A host that does not speak the protocol refuses the
// stream; the asker takes that, and silence past its idle timeout, as a
// refusal.
const (
	pullWorking    byte = 0
	pullOK         byte = 1
	pullRefused    byte = 2
	pullMissing    byte = 3
	pullOriginDown byte = 4
	pullAskOther   byte = 5
	// pullProgress: a keepalive that also says the fetcher's origin
	// requests made progress (the origin sent it a chunk) since its last
	// one; sent only to an asker that set pullWantsProgress.
	pullProgress byte = 6
)

// Request flags.
const (
	pullHeldOnly byte = 1
	pullWithRef  byte = 2
	// pullForwarded: the request comes from a fetcher that ranks the
	// receiver first for the chunk, on behalf of a host that ranked that
	// fetcher first (their members differ, as while an overlay is being
	// made): the receiver serves it as any request, and never forwards it
	// again. A host that does not know the flag serves it as any request.
	pullForwarded byte = 4
	// pullWantsProgress: the asker reads pullProgress keepalives. A host
	// that does not know the flag sends pullWorking only.
	pullWantsProgress byte = 8
	// pullFirstRank: the asker ranks the receiver first for the chunk
	// (it has given up on nobody before it). Only such a request is
	// forwarded: one that comes after the asker gave up on a fetcher may
	// be for the very member the receiver would forward it to.
	pullFirstRank byte = 16
)

// Limits of pull-through serving.
const (
	// pullKeepalive: how often a fetcher still fetching says so.
	pullKeepalive = 250 * time.Millisecond
	// maxPullRanks: the fetchers a host asks for a chunk, in rank order,
	// before it asks the origin itself.
	maxPullRanks = 3
	// maxPullsPerPeer and maxPulls bound the pull-through requests a host
	// serves at once, per asker and in all; beyond, it refuses.
	maxPullsPerPeer = 64
	maxPulls        = 512
	// maxAskPerFetcher bounds the pull-through requests a host has open
	// to one fetcher, across all its downloads: beyond, a request waits
	// its turn here (the idle timeout starts once it is sent), so that an
	// upgrade of hundreds of packages queues at the asker instead of
	// being refused by the fetcher's limits (maxPullsPerPeer, maxPulls,
	// and the transport's streams per peer) and going to the origin.
	maxAskPerFetcher = 16
	// pullCacheBytes and pullCacheTTL bound the chunks a host keeps in
	// memory after fetching them from the origin, so that the askers that
	// come later (and its own download, if the chunk was fetched for
	// peers first) do not make it fetch them again: a fetcher that does
	// not download the package itself holds its chunks nowhere else, and
	// hosts arriving one every few seconds ask it for minutes. Chunks are
	// immutable (named by their hash): only memory bounds the TTL.
	pullCacheBytes = 64 << 20
	pullCacheTTL   = 10 * time.Minute
	// maxPullRequest bounds a request's bytes.
	maxPullRequest = 2*(1+maxCIDLen) + binary.MaxVarintLen32 + 2*binary.MaxVarintLen64 + 1
)

// maxPeerIDLen bounds the peer ID of a pullAskOther answer.
const maxPeerIDLen = 256

// askOtherError is a fetcher's pullAskOther answer: it refused, and
// names the peer to ask instead.
type askOtherError struct{ peer PeerID }

func (e *askOtherError) Error() string {
	return fmt.Sprintf("fetcher does not know the package; %s asked it before", e.peer)
}

func (e *askOtherError) Is(target error) bool { return target == errPullRefused }

var (
	errPullRefused = errors.New("fetcher refused the pull-through request")
	// errPullSilent: the fetcher could not be reached, or said nothing
	// for pullIdle; the download asks it nothing more.
	errPullSilent     = errors.New("fetcher unreachable or silent")
	errPullOriginDown = errors.New("fetcher cannot reach the origin")
)

// pullIdle is how long an asker waits for any sign of life from a
// fetcher (the stream opened, a status byte or chunk bytes) before it
// gives up on it: half a peer request's timeout, so that a fetcher busy
// serving an upgrade of hundreds of packages (whose streams take a while
// to open) is not taken for a dead one.
func (s *Swarm) pullIdle() time.Duration {
	return max(s.cfg.RequestTimeout/2, time.Second)
}

// pullClaim is how long an asker lets a fetcher hold a chunk with
// pullWorking keepalives and no chunk: the fetcher may wait RequestTimeout
// for a peer sending the chunk to its own download, then fetch it from the
// origin. A fetcher whose origin requests hang (a site cut off from the
// origin by silent drops) keeps saying pullWorking; past this the asker
// takes it for a silent one and asks the next in rank or the origin. A
// pullProgress keepalive starts the claim afresh: behind a slow origin
// (a capped link the swarm shares) a fetcher's request waits there longer
// than this, and a second copy fetched meanwhile would only slow every
// other request down.
func (s *Swarm) pullClaim() time.Duration {
	return 2 * max(s.cfg.RequestTimeout, time.Second)
}

// pull asks fetcher `from` for chunk i (ref) of manifest, calling
// heard(false) once `from` first answers, and heard(true) when it starts
// sending the chunk. The chunk it returns is not verified yet. The
// caller holds one of from's askSlots. The chunk is in a buffer of bufs
// (readPull), returned with it.
func (s *Swarm) pull(ctx context.Context, from PeerID, manifest cid.Cid, i int, ref metadata.ChunkRef, flags byte, bufs *pool.BufferPool, heard func(sending bool)) ([]byte, []byte, error) {
	pn, _ := s.cfg.Network.(PullNetwork)
	if pn == nil {
		return nil, nil, errPullRefused
	}
	idle := s.pullIdle()
	octx, cancel := context.WithTimeout(ctx, idle)
	st, err := pn.OpenPull(octx, from)
	cancel()
	if err != nil {
		s.ctr.pullsSilent.Add(1)
		return nil, nil, fmt.Errorf("pull chunk %s from %s: %w: %w", ref.CID, from, errPullSilent, err)
	}
	s.ctr.pullStreams.Add(1)
	watch := s.watchPull(from, idle, st) // pullalive.go
	defer watch.Stop()
	var claimed atomic.Bool
	claim := time.AfterFunc(s.pullClaim(), func() {
		claimed.Store(true)
		st.Reset()
	})
	defer claim.Stop()
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	var once sync.Once
	var sending bool // the chunk's bytes are on their way
	var got int64    // bytes read of the answer
	progressed := func() {
		claim.Reset(s.pullClaim())
		s.noteUpstream()
	}
	data, raw, err := readPull(st, manifest, i, flags|pullWantsProgress, ref, bufs, func(n int) { got += int64(n); watch.Alive() }, progressed, func(ok bool) {
		if ok {
			sending = true
			s.noteUpstream()
			claim.Stop()
			heard(true)
			return
		}
		once.Do(func() { heard(false) })
	})
	if err != nil {
		st.Reset()
		if sending {
			s.ctr.cutPull.Add(got)
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		countPullErr(&s.ctr, err, claimed.Load())
		if claimed.Load() {
			return nil, nil, fmt.Errorf("pull chunk %s from %s: %w: working for %v without sending it", ref.CID, from, errPullSilent, s.pullClaim())
		}
		return nil, nil, fmt.Errorf("pull chunk %s from %s: %w", ref.CID, from, err)
	}
	st.Close()
	return data, raw, nil
}

// noteUpstream records that a fetcher we asked progressed (upstreamAt),
// with a configured site only: only a site's fetcher passes it on
// (two-level pull-through), and without sites nothing changes.
func (s *Swarm) noteUpstream() {
	if s.cfg.Site != "" {
		s.upstreamAt.Store(time.Now().UnixNano())
	}
}

// askSlot waits for one of the maxAskPerFetcher slots of requests to
// fetcher f and returns the function that gives it back.
func (s *Swarm) askSlot(ctx context.Context, f PeerID) (func(), error) {
	s.pullMu.Lock()
	slots := s.asking[f]
	if slots == nil {
		slots = make(chan struct{}, maxAskPerFetcher)
		s.asking[f] = slots
	}
	s.pullMu.Unlock()
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readPull writes the request for chunk i (ref) of manifest and reads
// the answer, calling alive on every sign of life, progressed on every
// pullProgress, and status on every status byte (sending: pullOK, the
// chunk starts) but a pullWorking followed at once by more (a fetcher
// that had the chunk, or its answer, at hand: its working and its answer
// are one); the chunk must be ref.Length bytes long. The chunk is read
// into a buffer of bufs (nil: a new one), returned with it (nil without
// bufs): the caller puts it back once nothing refers to the chunk.
func readPull(st Stream, manifest cid.Cid, i int, flags byte, ref metadata.ChunkRef, bufs *pool.BufferPool, alive func(n int), progressed func(), status func(sending bool)) ([]byte, []byte, error) {
	length := ref.Length
	req := appendPullRequest(nil, pullRequest{manifest: manifest, index: i, flags: flags | pullWithRef, ref: ref})
	if _, err := st.Write(req); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errPullSilent, err)
	}
	br := bufio.NewReader(&aliveReader{r: st, alive: alive})
	for {
		b, err := br.ReadByte()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errPullSilent, err)
		}
		if b != pullWorking || br.Buffered() == 0 {
			status(b == pullOK)
		}
		switch b {
		case pullWorking:
			continue
		case pullProgress:
			progressed()
			continue
		case pullRefused:
			return nil, nil, errPullRefused
		case pullMissing:
			return nil, nil, fmt.Errorf("fetcher's origin: %w", metadata.ErrNotFound)
		case pullOriginDown:
			return nil, nil, errPullOriginDown
		case pullAskOther:
			n, err := readUvarint(br)
			if err != nil {
				return nil, nil, unexpectedEOF(err)
			}
			if n == 0 || n > maxPeerIDLen {
				return nil, nil, protoErr("pull answer: peer ID of %d bytes", n)
			}
			id := make([]byte, n)
			if _, err := io.ReadFull(br, id); err != nil {
				return nil, nil, unexpectedEOF(err)
			}
			return nil, nil, &askOtherError{peer: PeerID(id)}
		case pullOK:
		default:
			return nil, nil, protoErr("pull status %d", b)
		}
		n, err := readUvarint(br)
		if err != nil {
			return nil, nil, unexpectedEOF(err)
		}
		if n != uint64(length) {
			return nil, nil, protoErr("pulled chunk of %d bytes, want %d", n, length)
		}
		// A pooled buffer: a new one is zeroed and faulted in, which
		// costs several times the copy into it.
		data, raw := pooledChunk(int(n), bufs)
		if _, err := io.ReadFull(br, data); err != nil {
			if raw != nil {
				bufs.Put(raw)
			}
			return nil, nil, unexpectedEOF(err)
		}
		return data, raw, nil
	}
}

// pooledChunk returns n bytes aligned as alignedBuf's, in a buffer of
// bufs (raw, to be put back whole), or a new one (raw nil) without bufs.
// bufs keeps a pool per power of two: chunks of every size are reused.
func pooledChunk(n int, bufs *pool.BufferPool) (data, raw []byte) {
	if bufs == nil {
		data, _ = alignedBuf(n, 0, nil)
		return data, nil
	}
	raw = bufs.Get(n + alignedChunk)
	return alignIn(raw, 0, n), raw
}

// aliveReader calls alive after every read that returned bytes, with
// their count.
type aliveReader struct {
	r     io.Reader
	alive func(n int)
}

func (a *aliveReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.alive(n)
	}
	return n, err
}

// pullRequest is one pull-through request: chunk index of manifest,
// the flags, and, with pullWithRef, the chunk (ref.CID undefined
// without).
type pullRequest struct {
	manifest cid.Cid
	index    int
	flags    byte
	ref      metadata.ChunkRef
}

// appendPullRequest appends r's wire form to b; r.ref is written with
// pullWithRef.
func appendPullRequest(b []byte, r pullRequest) []byte {
	mb := r.manifest.Bytes()
	b = binary.AppendUvarint(b, uint64(len(mb)))
	b = append(b, mb...)
	b = binary.AppendUvarint(b, uint64(r.index))
	b = append(b, r.flags)
	if r.flags&pullWithRef == 0 {
		return b
	}
	cb := r.ref.CID.Bytes()
	b = binary.AppendUvarint(b, uint64(len(cb)))
	b = append(b, cb...)
	return binary.AppendUvarint(b, uint64(r.ref.Length))
}

// readPullRequest reads a request.
func readPullRequest(br *bufio.Reader) (pullRequest, error) {
	var r pullRequest
	var err error
	if r.manifest, err = readPullCID(br); err != nil {
		return r, err
	}
	i, err := readUvarint(br)
	if err != nil {
		return r, unexpectedEOF(err)
	}
	if i > 1<<32-1 {
		return r, protoErr("pull request: index %d", i)
	}
	r.index = int(i)
	if r.flags, err = br.ReadByte(); err != nil {
		return r, unexpectedEOF(err)
	}
	if r.flags&pullWithRef == 0 {
		return r, nil
	}
	if r.ref.CID, err = readPullCID(br); err != nil {
		return r, err
	}
	if r.ref.CID.Prefix() != chunkPrefix {
		return r, protoErr("pull request: chunk CID %s is not CIDv1 raw sha2-256", r.ref.CID)
	}
	n, err := readUvarint(br)
	if err != nil {
		return r, unexpectedEOF(err)
	}
	if n == 0 || n > metadata.MaxChunkSize {
		return r, protoErr("pull request: chunk of %d bytes", n)
	}
	r.ref.Length = int64(n)
	return r, nil
}

// chunkPrefix is the prefix of every chunk CID (metadata.SumCID).
var chunkPrefix = metadata.SumCID(nil).Prefix()

// readPullCID reads a request's uvarint-prefixed CID, in canonical form.
func readPullCID(br *bufio.Reader) (cid.Cid, error) {
	n, err := readUvarint(br)
	if err != nil {
		return cid.Undef, unexpectedEOF(err)
	}
	if n == 0 || n > maxCIDLen {
		return cid.Undef, protoErr("pull request: CID of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return cid.Undef, unexpectedEOF(err)
	}
	c, err := cid.Cast(b)
	if err != nil || string(c.Bytes()) != string(b) {
		return cid.Undef, protoErr("pull request: bad CID")
	}
	return c, nil
}

// pullWriter serialises a fetcher's writes (the keepalives and the
// answer).
type pullWriter struct {
	mu sync.Mutex
	st Stream
}

func (w *pullWriter) status(b byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.st.Write([]byte{b})
	return err
}

// askOther answers pullAskOther, naming peer.
func (w *pullWriter) askOther(peer PeerID) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := binary.AppendUvarint([]byte{pullAskOther}, uint64(len(peer)))
	_, err := w.st.Write(append(b, peer...))
	return err
}

// chunk answers pullOK with data, written in pieces of ratePiece, each
// after pace allows it.
func (w *pullWriter) chunk(data []byte, pace func(n int) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	hdr := binary.AppendUvarint([]byte{pullOK}, uint64(len(data)))
	if _, err := w.st.Write(hdr); err != nil {
		return err
	}
	for off := 0; off < len(data); off += ratePiece {
		piece := data[off:min(off+ratePiece, len(data))]
		if err := pace(len(piece)); err != nil {
			return err
		}
		if _, err := w.st.Write(piece); err != nil {
			return err
		}
	}
	return nil
}

// sendPulled sends a pulled chunk to p, paced like a session's pieces at
// Config.UploadRate: a pull-through answer is this host's upload too.
func (s *Swarm) sendPulled(ctx context.Context, p PeerID, w *pullWriter, data []byte) error {
	return w.chunk(data, func(n int) error { return s.waitUpload(ctx, p, n) })
}

// HandlePull serves one inbound pull-through request from p: the chunk
// from the store, from our own download of the package once it has it,
// or from the origin, fetched once for every host that asks. Only chunks
// of packages this host holds, downloads or can resolve through
// Config.Manifests are served (a chunk named by its CID is fetched before
// its package is resolved, within pullref.go's bounds), and at most
// maxPullsPerPeer requests per peer and maxPulls in all at once. It
// returns when the answer is sent; call it from the network's
// stream-handler goroutine.
func (s *Swarm) HandlePull(p PeerID, st Stream) {
	s.mu.Lock()
	if s.closed || s.cfg.NoPullThrough {
		s.mu.Unlock()
		st.Reset()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	br := bufio.NewReaderSize(io.LimitReader(st, maxPullRequest), maxPullRequest)
	t := time.AfterFunc(s.cfg.RequestTimeout, func() { st.Reset() })
	req, err := readPullRequest(br)
	if !t.Stop() || err != nil {
		s.log.Debug("pull request refused", "peer", p, "err", err)
		st.Reset()
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// The Swarm closing resets the stream, so that no write to an asker
	// that stopped reading (a killed host whose connection is not yet
	// known dead) keeps Close waiting.
	defer context.AfterFunc(s.ctx, func() { st.Reset() })()
	// The asker going away (a reset) ends our wait; so does its Close
	// after our answer, which is harmless.
	s.goroutine(func() {
		_, _ = io.Copy(io.Discard, st)
		cancel()
	})
	w := &pullWriter{st: st}
	code, data := s.servePull(ctx, p, w, req)
	switch code {
	case pullOK:
		err = s.sendPulled(ctx, p, w, data)
		if err == nil {
			s.bytesUploaded.Add(int64(len(data)))
			s.ctr.upPull.Add(int64(len(data)))
			s.countPeer(p, 0, int64(len(data)))
			s.log.Debug("chunk sent", "route", "pull", "peer", p, "manifest", req.manifest, "index", req.index, "bytes", len(data), "whole", true)
		}
	case pullAskOther:
		err = w.askOther(PeerID(data))
	default:
		err = w.status(code)
	}
	if err != nil {
		st.Reset()
		return
	}
	st.Close()
}

// servePull finds the chunk req asks for, for peer p, saying
// pullWorking through w while it does; it returns the final status and
// the chunk (for pullAskOther, the peer ID to ask).
func (s *Swarm) servePull(ctx context.Context, p PeerID, w *pullWriter, req pullRequest) (byte, []byte) {
	if !s.admitPull(p) {
		return pullRefused, nil
	}
	defer s.releasePull(p)
	// Working at once, and every pullKeepalive after, while the package
	// is resolved (which may refresh metadata) and the chunk found: the
	// asker's idle timeout is for hosts that are gone, not busy.
	if w.status(pullWorking) != nil {
		return pullRefused, nil
	}
	stop := s.keepalive(w, req.flags&pullWantsProgress != 0)
	defer stop()
	heldOnly := req.flags&pullHeldOnly != 0
	pi, d, err := s.pkg(req.manifest)
	if err != nil && req.ref.CID.Defined() {
		// A chunk named by its CID is served from what this host holds
		// whatever its package, or fetched from the origin while the
		// package is resolved (pullref.go).
		if data := s.heldChunk(req.ref); data != nil {
			return pullOK, data
		}
		if !heldOnly {
			if s.admitUnconfirmed(p, req) {
				return pullAnswer(s.pullData(ctx, p, req.manifest, req.ref, nil, req.index))
			}
		}
	}
	if err != nil && !heldOnly {
		// A package we do not know is one whose chunks we do not hold: a
		// held-only ask resolves nothing (which may wait for a metadata
		// refresh) while the asker's origin request waits.
		pi, d, err = s.pullPackage(ctx, req.manifest)
	}
	i := req.index
	if err != nil || i >= len(pi.refs) || req.ref.CID.Defined() && !sameChunk(pi.refs[i], req.ref) {
		s.log.Debug("pull request for an unknown chunk", "peer", p, "manifest", req.manifest, "index", i, "err", err)
		if err != nil {
			if a := s.noteRefused(req.manifest, i, p, !heldOnly); a != "" {
				return pullAskOther, []byte(a)
			}
		}
		return pullRefused, nil
	}
	if heldOnly {
		if data := s.heldChunk(pi.refs[i]); data != nil {
			return pullOK, data
		}
		return pullRefused, nil
	}
	if d != nil && (req.flags&(pullForwarded|pullFirstRank) == pullFirstRank || d.upstreamFirst(i)) {
		if data := d.forward(ctx, p, i); data != nil {
			return pullOK, data
		}
	}
	return pullAnswer(s.pullData(ctx, p, req.manifest, pi.refs[i], d, i))
}

// sameChunk reports whether a and b name the same chunk.
func sameChunk(a, b metadata.ChunkRef) bool {
	return a.Length == b.Length && a.CID.Equals(b.CID)
}

// pullAnswer is the status that answers a pull-through request whose
// chunk pullData returned (data, err).
func pullAnswer(data []byte, err error) (byte, []byte) {
	switch {
	case err == nil:
		return pullOK, data
	case errors.Is(err, errPullRefused), errors.Is(err, context.Canceled):
		return pullRefused, nil
	case errors.Is(err, metadata.ErrNotFound), errors.Is(err, metadata.ErrHashMismatch), errors.Is(err, metadata.ErrTooLarge):
		return pullMissing, nil
	}
	return pullOriginDown, nil
}

// keepalive says pullWorking through w every pullKeepalive until the
// function it returns is called (which waits for the last write); with
// progress, pullProgress instead when the origin sent this host a chunk
// since the last keepalive, or a fetcher it asked did or said its own
// requests progressed (a site's fetcher waiting on the chunk's global
// fetcher, behind a slow origin).
func (s *Swarm) keepalive(w *pullWriter, progress bool) func() {
	done := make(chan struct{})
	var kw sync.WaitGroup
	kw.Add(1)
	if !s.goroutine(func() {
		defer kw.Done()
		t := time.NewTicker(pullKeepalive)
		defer t.Stop()
		last, lastUp := s.originAt.Load(), s.upstreamAt.Load()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				b := pullWorking
				at, up := s.originAt.Load(), s.upstreamAt.Load()
				if progress && (at != last || up != lastUp) {
					b, last, lastUp = pullProgress, at, up
				}
				if w.status(b) != nil {
					return
				}
			}
		}
	}) {
		kw.Done()
	}
	return func() {
		close(done)
		kw.Wait()
	}
}

// admitPull takes one of p's pull-through slots, if it has one left and
// the host does.
func (s *Swarm) admitPull(p PeerID) bool {
	s.pullMu.Lock()
	defer s.pullMu.Unlock()
	if s.pullsAll >= maxPulls || s.pulls[p] >= maxPullsPerPeer {
		return false
	}
	s.pullsAll++
	s.pulls[p]++
	return true
}

func (s *Swarm) releasePull(p PeerID) {
	s.pullMu.Lock()
	defer s.pullMu.Unlock()
	s.pullsAll--
	if s.pulls[p]--; s.pulls[p] <= 0 {
		delete(s.pulls, p)
	}
}

// pullAsk names a chunk by package and index: a request for a package
// this host does not know names no chunk CID it could check.
type pullAsk struct {
	manifest cid.Cid
	index    int
}

// refusedAsk is the host that asked for a chunk, and when.
type refusedAsk struct {
	peer PeerID
	at   time.Time
}

// maxRefusedAsks bounds the refused requests remembered.
const maxRefusedAsks = 4096

// noteRefused is called when peer asked for chunk i of manifest, a
// package this host does not know: it returns the peer that asked for it
// before, within pullCacheTTL, if another did (the peer to name in a
// pullAskOther answer), or else, if remember, remembers peer: it then
// fetches the chunk elsewhere, from the next fetcher or the origin, so it
// holds the chunk, or soon will, when another host asks, or this host
// comes to download the package ranked first for the chunk
// (refusedAsker).
func (s *Swarm) noteRefused(manifest cid.Cid, i int, peer PeerID, remember bool) PeerID {
	s.pullMu.Lock()
	defer s.pullMu.Unlock()
	k := pullAsk{manifest, i}
	if a, ok := s.refusedAsks[k]; ok && a.peer != peer && time.Since(a.at) <= pullCacheTTL {
		return a.peer
	}
	if !remember {
		return ""
	}
	if s.refusedAsks == nil || len(s.refusedAsks) >= maxRefusedAsks {
		s.refusedAsks = make(map[pullAsk]refusedAsk)
	}
	s.refusedAsks[k] = refusedAsk{peer: peer, at: time.Now()}
	return ""
}

// refusedAsker returns the host that asked for chunk i of manifest when
// this host did not know the package, within pullCacheTTL ("" none).
func (s *Swarm) refusedAsker(manifest cid.Cid, i int) PeerID {
	s.pullMu.Lock()
	defer s.pullMu.Unlock()
	a, ok := s.refusedAsks[pullAsk{manifest, i}]
	if !ok || time.Since(a.at) > pullCacheTTL {
		return ""
	}
	return a.peer
}

// pullPackage returns what is known of manifest: a running download's
// package, one the store holds, or one Config.Manifests resolves.
func (s *Swarm) pullPackage(ctx context.Context, manifest cid.Cid) (*pkgInfo, *download, error) {
	pi, d, err := s.pkg(manifest)
	if err == nil {
		return pi, d, nil
	}
	if s.cfg.Manifests == nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	m, err := s.cfg.Manifests.ResolveManifest(ctx, manifest)
	if err != nil {
		return nil, nil, err
	}
	if got, err := m.CID(); err != nil || !got.Equals(manifest) {
		return nil, nil, fmt.Errorf("resolved manifest %s: %w", manifest, metadata.ErrHashMismatch)
	}
	pi = newPkgInfo(m)
	s.mu.Lock()
	if len(s.pkgs) > 256 {
		clear(s.pkgs)
	}
	s.pkgs[manifest] = pi
	s.mu.Unlock()
	return pi, nil, nil
}

// heldChunk returns chunk ref if this host holds it (its store or the
// chunks it fetched for peers lately), nil otherwise.
func (s *Swarm) heldChunk(ref metadata.ChunkRef) []byte {
	// The memory first: a chunk fetched for peers lately is asked for by
	// many at once, and reading it from the store for each would copy it
	// from disk each time.
	s.pullMu.Lock()
	data := s.cachedLocked(ref.CID)
	s.pullMu.Unlock()
	if data != nil {
		return data
	}
	// ReadChunk alone: a HasChunk first would look the chunk up twice
	// when it is held, and save nothing when it is not.
	if data, err := s.cfg.Store.ReadChunk(ref.CID); err == nil && int64(len(data)) == ref.Length {
		return data
	}
	return nil
}

// pulledChunk returns chunk ref if this host fetched it from the origin
// lately (for peers, or a download), nil otherwise.
func (s *Swarm) pulledChunk(ref metadata.ChunkRef) []byte {
	s.pullMu.Lock()
	defer s.pullMu.Unlock()
	if data := s.cachedLocked(ref.CID); int64(len(data)) == ref.Length {
		return data
	}
	return nil
}

// pullData returns chunk i (ref) of manifest for asker's pull-through
// request: from the store; from our download d of the package once it
// has the chunk, if a peer, or a fetcher we asked, is sending it to d
// (awaitDownload); without d, from the chunk's global fetcher if we are
// our site's (two-level pull-through: the asker's request came before
// our own download began); or from the origin, joined with any fetch of the same chunk under way
// (originFetchFor: not while this host's origin is known unreachable).
// A chunk fetched here goes into d too.
func (s *Swarm) pullData(ctx context.Context, asker PeerID, manifest cid.Cid, ref metadata.ChunkRef, d *download, i int) ([]byte, error) {
	if data := s.heldChunk(ref); data != nil {
		return data, nil
	}
	if up := s.upstreamOf(ref); d == nil && up != "" && up != asker {
		data, err := s.upstreamFetch(ctx, up, manifest, i, ref)
		if err == nil || ctx.Err() != nil {
			return data, err
		}
		s.log.Debug("global fetcher did not serve the chunk; fetching it", "fetcher", up, "chunk", ref.CID, "err", err)
	}
	if d != nil {
		if data, err := s.awaitDownload(ctx, d, asker, ref, i); data != nil || err != nil {
			return data, err
		}
	}
	sent := time.Now()
	data, err := s.originFetchFor(ctx, ref)
	if err != nil {
		return nil, err
	}
	if d != nil {
		s.goroutine(func() { d.deliver(i, policy.OriginPeer, data, sent) })
	}
	return data, nil
}

// awaitDownload returns chunk i (ref), for asker, once our download d has
// stored it, while it is on its way to d (awaitChunk): from a session
// peer, for at most RequestTimeout in all; through a pull-through request
// whose fetcher answered, for as long as that request lasts (its own
// timeouts bound it). nil, nil if it did not come. A host that ranks next
// for a chunk is asked for it by hosts that gave up on its first fetcher,
// slow to send it on a loaded host: fetching the chunk from the origin
// while that fetcher's copy reaches us too would make it a second copy.
func (s *Swarm) awaitDownload(ctx context.Context, d *download, asker PeerID, ref metadata.ChunkRef, i int) ([]byte, error) {
	ch, _ := d.awaitChunk(i, asker)
	if ch == nil {
		return nil, nil
	}
	t := time.NewTimer(s.cfg.RequestTimeout)
	defer t.Stop()
	timeout := t.C
	for ch != nil {
		select {
		case <-ch:
		case <-timeout:
			timeout = nil
		case <-ctx.Done():
		}
		if data, err := s.cfg.Store.ReadChunk(ref.CID); err == nil && int64(len(data)) == ref.Length {
			return data, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var pulled bool
		ch, pulled = d.awaitChunk(i, asker)
		if timeout == nil && !pulled {
			return nil, nil
		}
	}
	return nil, nil
}

// upstreamOf returns chunk ref's global fetcher when this host ranks
// first for it in its site, among the network's members now (two-level
// pull-through, memberSites); "" otherwise.
func (s *Swarm) upstreamOf(ref metadata.ChunkRef) PeerID {
	pn, ok := s.cfg.Network.(PullNetwork)
	if !ok || s.cfg.Site == "" {
		return ""
	}
	me, sited, _, ok := s.memberSites(pn.Members())
	if !ok {
		return ""
	}
	f := policy.NewFetchers(me, sited)
	key := policy.ChunkKey(ref.CID.Bytes())
	if len(f.Before(key, 1, nil)) > 0 {
		return ""
	}
	if up := f.Upstream(key, 1, nil); len(up) > 0 {
		return up[0]
	}
	return ""
}

// upstreamFetch returns chunk i (ref) of manifest from up, its global
// fetcher, verified: one request however many hosts of our site ask
// meanwhile, and the chunk kept a while (as one from the origin) for
// those that come later and for our own download. With up "" it only
// joins a request under way (errNoUpstreamCall: none).
func (s *Swarm) upstreamFetch(ctx context.Context, up PeerID, manifest cid.Cid, i int, ref metadata.ChunkRef) ([]byte, error) {
	s.pullMu.Lock()
	if data := s.cachedLocked(ref.CID); data != nil {
		s.pullMu.Unlock()
		return data, nil
	}
	c := s.upCalls[ref.CID]
	if c == nil && up == "" {
		s.pullMu.Unlock()
		return nil, errNoUpstreamCall
	}
	if c == nil {
		fctx, cancel := context.WithCancel(s.ctx)
		c = &originCall{done: make(chan struct{}), cancel: cancel}
		if !s.goroutine(func() { s.runUpstreamCall(fctx, c, up, manifest, i, ref) }) {
			s.pullMu.Unlock()
			cancel()
			return nil, ErrClosed
		}
		s.upCalls[ref.CID] = c
	}
	return s.awaitCall(ctx, s.upCalls, ref.CID, c, nil)
}

// errNoUpstreamCall: upstreamFetch without a fetcher found no request
// under way to join.
var errNoUpstreamCall = errors.New("no request to a global fetcher under way")

// runUpstreamCall asks up for c's chunk (forwarded: up serves it and
// forwards it nowhere) and verifies it.
func (s *Swarm) runUpstreamCall(ctx context.Context, c *originCall, up PeerID, manifest cid.Cid, i int, ref metadata.ChunkRef) {
	var data []byte
	release, err := s.askSlot(ctx, up)
	if err == nil {
		// Not pooled: the chunk is kept (rememberLocked) for our site.
		data, _, err = s.pull(ctx, up, manifest, i, ref, pullForwarded, nil, func(bool) {})
		release()
	}
	if err == nil {
		err = ref.Verify(data)
	}
	s.pullMu.Lock()
	c.data, c.err = data, err
	if err == nil {
		s.rememberLocked(ref.CID, data, up)
	}
	if s.upCalls[ref.CID] == c {
		delete(s.upCalls, ref.CID)
	}
	s.pullMu.Unlock()
	c.cancel()
	close(c.done)
}

// originCall is one fetch of a chunk from the origin, shared by every
// caller that wants the chunk meanwhile.
type originCall struct {
	done    chan struct{}
	data    []byte
	err     error
	waiters int
	cancel  context.CancelFunc
}

// originFetch returns chunk ref from the origin, verified: from the cache
// of chunks recently fetched, or joined with a fetch of it under way, or
// fetched now. The fetch runs until it ends, every caller waiting for it
// has gone, or Config.OriginRequestTimeout has passed. A caller stops
// waiting, with errOriginUnreachable, once stop is closed (nil: never).
func (s *Swarm) originFetch(ctx context.Context, ref metadata.ChunkRef, stop <-chan struct{}) ([]byte, error) {
	if s.cfg.Origin == nil {
		return nil, fmt.Errorf("chunk %s: %w: no origin", ref.CID, errPullRefused)
	}
	s.pullMu.Lock()
	if data := s.cachedLocked(ref.CID); data != nil {
		s.pullMu.Unlock()
		return data, nil
	}
	c := s.originCalls[ref.CID]
	if c == nil {
		s.ctr.originFetches.Add(1)
		s.log.Debug("origin chunk request", "chunk", ref.CID)
		fctx, cancel := context.WithTimeout(s.ctx, s.cfg.OriginRequestTimeout)
		c = &originCall{done: make(chan struct{}), cancel: cancel}
		if !s.goroutine(func() { s.runOriginCall(fctx, c, ref) }) {
			s.pullMu.Unlock()
			cancel()
			return nil, ErrClosed
		}
		s.originCalls[ref.CID] = c
	}
	return s.awaitCall(ctx, s.originCalls, ref.CID, c, stop)
}

// awaitCall waits for c, the call for chunk key in calls, as one more of
// its waiters (pullMu held; awaitCall releases it), until ctx ends or
// stop is closed (errOriginUnreachable). The last waiter whose ctx ends
// cancels the call: nobody wants it any more, and a later caller starts
// afresh. One that stops leaves the call running, as a probe of the
// origin whose chunk is kept if it comes (a request of a healthy origin
// that was sending it when another failed).
func (s *Swarm) awaitCall(ctx context.Context, calls map[cid.Cid]*originCall, key cid.Cid, c *originCall, stop <-chan struct{}) ([]byte, error) {
	c.waiters++
	s.pullMu.Unlock()
	select {
	case <-c.done:
		return c.data, c.err
	case <-stop:
		s.pullMu.Lock()
		c.waiters--
		s.pullMu.Unlock()
		return nil, fmt.Errorf("chunk %s: %w: another origin request failed while this one waited", key, errOriginUnreachable)
	case <-ctx.Done():
		s.pullMu.Lock()
		if c.waiters--; c.waiters == 0 {
			c.cancel()
			if calls[key] == c {
				delete(calls, key)
			}
		}
		s.pullMu.Unlock()
		return nil, ctx.Err()
	}
}

// errOriginUnreachable: this host's origin is known unreachable (an
// origin request failed as an outage, and none sent since was answered).
var errOriginUnreachable = errors.New("origin unreachable from this host")

// originFetchFor is originFetch for a peer's pull-through request, which
// must not wait on an origin this host cannot reach (a site cut off from
// the origin by silent drops, whose requests hang until the origin
// client's stall timeout): the asker would wait that long for each chunk
// it asks, and each of the other sites' fetchers for each chunk this host
// ranks first for. With the outage known it fails at once (the asker
// passes this host over, pullOriginDown) and probes the origin in the
// background (probeOrigin); and it stops waiting as soon as an outage is
// noted (another origin request of this host failed as one: this one
// waits on the same dead link). Only a failure notes an outage: a slow
// origin (a capped link the swarm shares, whose queue holds a request
// long) keeps its requests waiting.
func (s *Swarm) originFetchFor(ctx context.Context, ref metadata.ChunkRef) ([]byte, error) {
	down, outage := s.originState()
	if !down {
		data, err := s.originFetch(ctx, ref, outage)
		if err != nil && ctx.Err() == nil && originOutage(err) {
			s.ctr.originDownWaited.Add(1)
		}
		return data, err
	}
	if data := s.pulledChunk(ref); data != nil {
		return data, nil
	}
	s.ctr.originDownAtOnce.Add(1)
	s.probeOrigin(ref)
	return nil, fmt.Errorf("chunk %s: %w", ref.CID, errOriginUnreachable)
}

// probeOrigin asks the origin for chunk ref in the background, unless a
// probe is under way already: a host whose origin is known unreachable
// and that has no download of its own probing it (it serves pull-through
// requests only) learns so when it answers again (runOriginCall), and
// the chunk is kept for the askers that come next.
func (s *Swarm) probeOrigin(ref metadata.ChunkRef) {
	if s.cfg.Origin == nil || !s.probing.CompareAndSwap(false, true) {
		return
	}
	if !s.goroutine(func() {
		defer s.probing.Store(false)
		_, _ = s.originFetch(s.ctx, ref, nil)
	}) {
		s.probing.Store(false)
	}
}

// runOriginCall fetches c's chunk and verifies it, and notes whether the
// origin answered (noteOrigin: a request for peers counts as one for a
// download).
func (s *Swarm) runOriginCall(ctx context.Context, c *originCall, ref metadata.ChunkRef) {
	sent := time.Now()
	data, err := s.cfg.Origin.FetchChunk(ctx, ref.CID, ref.Length)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("origin request for chunk %s: no answer in %v: %w", ref.CID, s.cfg.OriginRequestTimeout, ctx.Err())
	}
	if _, checked := s.cfg.Origin.(CheckedSource); err == nil && (!checked || int64(len(data)) != ref.Length) {
		err = ref.Verify(data) // a CheckedSource has checked the hash already
	}
	if errors.Is(err, metadata.ErrHashMismatch) {
		s.chunks[fromOrigin][failed].Add(1)
	}
	if err == nil {
		s.originAt.Store(time.Now().UnixNano())
		s.ledger.fetched(ref.CID) // before any caller has the chunk
	}
	if err == nil || originOutage(err) && !errors.Is(ctx.Err(), context.Canceled) {
		s.noteOrigin(err, sent, time.Now())
	}
	s.pullMu.Lock()
	c.data, c.err = data, err
	if err == nil && s.servesPulls() {
		// Cached as the call ends, under the same lock, so that no caller
		// finds neither and fetches it again. A host that serves no
		// pull-through requests has nobody to keep it for.
		s.rememberLocked(ref.CID, data, policy.OriginPeer)
	}
	if s.originCalls[ref.CID] == c {
		delete(s.originCalls, ref.CID)
	}
	s.pullMu.Unlock()
	c.cancel()
	close(c.done)
}

// servesPulls reports whether this host serves pull-through requests:
// its Network is a PullNetwork and Config.NoPullThrough is off.
func (s *Swarm) servesPulls() bool {
	_, ok := s.cfg.Network.(PullNetwork)
	return ok && !s.cfg.NoPullThrough
}

// cachedChunk is a chunk fetched from the origin (or, by a site's
// fetcher, from the chunk's global fetcher), kept a while.
type cachedChunk struct {
	c    cid.Cid
	data []byte
	at   time.Time
	from PeerID // policy.OriginPeer, or the global fetcher
}

// rememberLocked keeps data (chunk c, fresh from `from`: the origin or
// the chunk's global fetcher) for later callers, within pullCacheBytes
// and pullCacheTTL (pullMu held).
func (s *Swarm) rememberLocked(c cid.Cid, data []byte, from PeerID) {
	if len(data) > pullCacheBytes/4 {
		return
	}
	if _, ok := s.cacheIdx[c]; ok {
		return
	}
	s.cache = append(s.cache, cachedChunk{c: c, data: data, at: time.Now(), from: from})
	s.cacheIdx[c] = len(data)
	s.cacheBytes += len(data)
	s.expireLocked(time.Now())
}

// cachedLocked returns chunk c if the cache has it (pullMu held).
func (s *Swarm) cachedLocked(c cid.Cid) []byte {
	if _, ok := s.cacheIdx[c]; !ok {
		return nil
	}
	s.expireLocked(time.Now())
	if e := s.cacheEntryLocked(c); e != nil {
		return e.data
	}
	return nil
}

// cachedFromLocked returns where the cached chunk c came from:
// policy.OriginPeer, or the global fetcher it came from; OriginPeer too
// if the cache does not have it (pullMu held).
func (s *Swarm) cachedFromLocked(c cid.Cid) PeerID {
	if e := s.cacheEntryLocked(c); e != nil {
		return e.from
	}
	return policy.OriginPeer
}

// cacheEntryLocked returns the cache's entry for chunk c, nil if none
// (pullMu held).
func (s *Swarm) cacheEntryLocked(c cid.Cid) *cachedChunk {
	if _, ok := s.cacheIdx[c]; !ok {
		return nil
	}
	for k := len(s.cache) - 1; k >= 0; k-- {
		if s.cache[k].c.Equals(c) {
			return &s.cache[k]
		}
	}
	return nil
}

// expireLocked drops the oldest chunks while the cache is over its bytes
// or they are older than pullCacheTTL (pullMu held).
func (s *Swarm) expireLocked(now time.Time) {
	k := 0
	for k < len(s.cache) && (s.cacheBytes > pullCacheBytes || now.Sub(s.cache[k].at) > pullCacheTTL) {
		delete(s.cacheIdx, s.cache[k].c)
		s.cacheBytes -= len(s.cache[k].data)
		k++
	}
	if k > 0 {
		s.cache = append(s.cache[:0], s.cache[k:]...)
	}
}
