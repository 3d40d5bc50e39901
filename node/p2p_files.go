package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"golang.org/x/time/rate"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/swarm"
)

// FilesProtocol is the libp2p protocol ID through which hosts serve each
// other repository files: the TUF metadata they trust and the manifests
// their stores hold. Nothing it carries is trusted: the asker checks every
// copy as it would the origin's (metadata.CheckingFetcher, and the CID in
// a manifest's path).
//
// Wire format, one file per stream: the asker writes a uvarint maxLen and
// a frame (uvarint length, at most maxFilesPath bytes) holding the
// repository path ("metadata/timestamp.json", "metadata/N.ROLE.json",
// "manifests/CID"), then closes its side. The answerer writes one status
// byte and, for filesOK, a frame of at most min(maxLen, maxFilesSize)
// bytes, then closes the stream.
const FilesProtocol = "/stork/files/1.0.0"

// FilesPullProtocol is FilesProtocol's exchange for a file the asker
// ranks this host first to fetch (cooperative fetching of repository
// files, Swarm.FileFetchers): an answerer that does not hold the file
// fetches it (SetFilePuller's function: from the origin, once for all
// the hosts that ask meanwhile) and answers with that copy. Only files
// whose bytes never change are asked so (metadata.CooperativePath), and
// timestamp.json, always answered by the puller (the origin's copy of
// the moment) and then confirmed by the asker's origin; the asker checks
// every copy as it checks the origin's.
const FilesPullProtocol = "/stork/files-pull/1.0.0"

// Answers on FilesProtocol and FilesPullProtocol.
const (
	filesOK       byte = 0
	filesNotFound byte = 1
	filesTooLarge byte = 2
	filesBusy     byte = 3
	filesBad      byte = 4
)

const (
	maxFilesPath = 512
	// maxFilesSize bounds any file served or accepted: the TUF client's
	// default bound for a targets role.
	maxFilesSize = 64 << 20
	// filesTimeout bounds one exchange, on both sides.
	filesTimeout = 20 * time.Second
	// filesServing bounds the files served at once, to all peers.
	filesServing = 8
	// A peer may ask filesRate files per second, in bursts of filesBurst
	// (a closure of many packages asks for many manifests at once).
	filesRate  = 20
	filesBurst = 64
	// maxFilesLimiters bounds the per-peer rate limiters kept.
	maxFilesLimiters = 4096
	// filesPulling bounds the pulls served at once (FilesPullProtocol):
	// most wait for one origin fetch that many askers share.
	filesPulling = 128
)

// Errors of FetchFile that callers act on.
var (
	// ErrFilesBusy: the peer refused for now (its rate limit or its
	// serving slots).
	ErrFilesBusy = errors.New("peer busy")
)

// FilePuller fetches a file a peer asked this host to fetch for it
// (FilesPullProtocol): an error wrapping metadata.ErrInvalidPath for a
// file not fetched so, metadata.ErrNotFound for one the origin does not
// have or this host may not fetch.
type FilePuller func(ctx context.Context, path string, maxLen int64) ([]byte, error)

// FileLookup returns the repository file path (clean, relative) this host
// holds and may serve, at most maxLen bytes: an error wrapping
// metadata.ErrNotFound for anything else, metadata.ErrTooLarge if longer.
type FileLookup func(path string, maxLen int64) ([]byte, error)

// filesServer is the serving side's state.
type filesServer struct {
	mu       sync.Mutex
	lookup   FileLookup
	limiters map[peer.ID]*rate.Limiter
	slots    chan struct{}
	// pull serves FilesPullProtocol past lookup (nil: lookup alone);
	// pullSlots bounds it.
	pull      FilePuller
	pullSlots chan struct{}
}

// SetFileServer serves FilesProtocol with lookup; nil stops serving it.
func (p *P2P) SetFileServer(lookup FileLookup) {
	if lookup == nil {
		p.host.RemoveStreamHandler(FilesProtocol)
		p.host.RemoveStreamHandler(FilesPullProtocol)
		return
	}
	p.files.mu.Lock()
	p.files.lookup = lookup
	if p.files.limiters == nil {
		p.files.limiters = map[peer.ID]*rate.Limiter{}
		p.files.slots = make(chan struct{}, filesServing)
		p.files.pullSlots = make(chan struct{}, filesPulling)
	}
	p.files.mu.Unlock()
	p.host.SetStreamHandler(FilesProtocol, func(s network.Stream) { p.handleFiles(s, false) })
	p.host.SetStreamHandler(FilesPullProtocol, func(s network.Stream) { p.handleFiles(s, true) })
}

// SetFilePuller has FilesPullProtocol fetch what this host does not hold
// with pull (nil: it answers from the file server's lookup alone).
func (p *P2P) SetFilePuller(pull FilePuller) {
	p.files.mu.Lock()
	p.files.pull = pull
	p.files.mu.Unlock()
}

// allow takes one request from id's rate budget.
func (f *filesServer) allow(id peer.ID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.limiters[id]
	if l == nil {
		if len(f.limiters) >= maxFilesLimiters {
			clear(f.limiters) // a fresh budget for all: bounded memory matters more
		}
		l = rate.NewLimiter(filesRate, filesBurst)
		f.limiters[id] = l
	}
	return l.Allow()
}

// handleFiles answers one FilesProtocol request (FilesPullProtocol with
// pull).
func (p *P2P) handleFiles(s network.Stream, pull bool) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(filesTimeout))
	r := bufio.NewReader(s)
	maxLen, err := binary.ReadUvarint(r)
	if err != nil {
		s.Reset()
		return
	}
	b, err := readFrame(r, maxFilesPath)
	if err != nil {
		s.Reset()
		return
	}
	status, data := p.lookupFile(s.Conn().RemotePeer(), string(b), int64(min(maxLen, maxFilesSize)), pull)
	if _, err := s.Write([]byte{status}); err != nil {
		s.Reset()
		return
	}
	if status == filesOK {
		if err := writeFrame(s, data); err != nil {
			s.Reset()
		}
	}
}

// lookupFile decides the answer to from's request for path; with pull,
// a file this host does not hold is fetched (FilesPullProtocol).
func (p *P2P) lookupFile(from peer.ID, path string, maxLen int64, pull bool) (byte, []byte) {
	f := &p.files
	if !f.allow(from) {
		return filesBusy, nil
	}
	slots := f.slots
	if pull {
		slots = f.pullSlots
	}
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	default:
		return filesBusy, nil
	}
	if maxLen <= 0 {
		return filesBad, nil
	}
	f.mu.Lock()
	lookup, puller := f.lookup, f.pull
	f.mu.Unlock()
	data, err := []byte(nil), error(metadata.ErrNotFound)
	if !pull || path != metadata.TimestampPath {
		// A pull of timestamp.json is the puller's: the origin's copy of
		// the moment, not the trusted one this host holds, maybe older.
		data, err = lookup(path, maxLen)
	}
	if pull && puller != nil && errors.Is(err, metadata.ErrNotFound) {
		ctx, cancel := context.WithTimeout(context.Background(), filesTimeout)
		data, err = puller(ctx, path, maxLen)
		cancel()
	}
	switch {
	case err == nil:
		return filesOK, data
	case errors.Is(err, metadata.ErrTooLarge):
		return filesTooLarge, nil
	case errors.Is(err, metadata.ErrInvalidPath):
		return filesBad, nil
	case !errors.Is(err, metadata.ErrNotFound):
		p.log.Debug("files: lookup failed", "peer", from.String(), "path", path, "err", err)
	}
	return filesNotFound, nil
}

// FetchFile asks peer to for the repository file path, at most maxLen
// bytes, within filesTimeout. The answer is unverified. A peer that does
// not hold the file answers with an error wrapping metadata.ErrNotFound.
func (p *P2P) FetchFile(ctx context.Context, to swarm.PeerID, path string, maxLen int64) ([]byte, error) {
	return p.fetchFile(ctx, FilesProtocol, to, path, maxLen)
}

// PullFile asks peer to for the repository file path as FetchFile does,
// through FilesPullProtocol: a peer that does not hold it fetches it for
// us.
func (p *P2P) PullFile(ctx context.Context, to swarm.PeerID, path string, maxLen int64) ([]byte, error) {
	return p.fetchFile(ctx, FilesPullProtocol, to, path, maxLen)
}

// fetchFile is FetchFile over protocol proto.
func (p *P2P) fetchFile(ctx context.Context, proto protocol.ID, to swarm.PeerID, path string, maxLen int64) ([]byte, error) {
	id, err := peer.Decode(string(to))
	if err != nil {
		return nil, fmt.Errorf("fetch %s from %q: %w", path, to, err)
	}
	if maxLen <= 0 || maxLen > maxFilesSize {
		maxLen = maxFilesSize
	}
	if len(path) > maxFilesPath {
		return nil, fmt.Errorf("fetch %s from %s: %w: path longer than %d bytes", path, id, metadata.ErrInvalidPath, maxFilesPath)
	}
	ctx, cancel := context.WithTimeout(ctx, filesTimeout)
	defer cancel()
	s, err := p.host.NewStream(network.WithNoDial(ctx, "files"), id, proto)
	if err != nil {
		return nil, fmt.Errorf("fetch %s from %s: %w", path, id, err)
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	req := binary.AppendUvarint(nil, uint64(maxLen))
	if _, err := s.Write(req); err != nil {
		s.Reset()
		return nil, fmt.Errorf("fetch %s from %s: %w", path, id, err)
	}
	if err := writeFrame(s, []byte(path)); err != nil {
		s.Reset()
		return nil, fmt.Errorf("fetch %s from %s: %w", path, id, err)
	}
	// The peer answers once it has read the request and may close its
	// side first (on QUIC its STOP_SENDING can beat our FIN, and
	// CloseWrite then fails): the answer decides, not CloseWrite.
	_ = s.CloseWrite()
	data, err := readFilesAnswer(bufio.NewReader(s), maxLen)
	if err != nil {
		s.Reset()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, fmt.Errorf("fetch %s from %s: %w", path, id, err)
	}
	return data, nil
}

func readFilesAnswer(r *bufio.Reader, maxLen int64) ([]byte, error) {
	status, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	switch status {
	case filesOK:
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, err
		}
		if n > uint64(maxLen) {
			return nil, fmt.Errorf("%w: %d bytes, limit %d", metadata.ErrTooLarge, n, maxLen)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		return b, nil
	case filesNotFound:
		return nil, metadata.ErrNotFound
	case filesTooLarge:
		return nil, metadata.ErrTooLarge
	case filesBusy:
		return nil, ErrFilesBusy
	case filesBad:
		return nil, metadata.ErrInvalidPath
	}
	return nil, fmt.Errorf("unknown answer %d", status)
}

// FilePeers returns the connected peers that may serve FilesProtocol (those
// identify showed to speak it, and those not identified yet), in random
// order.
func (p *P2P) FilePeers() []swarm.PeerID {
	var out []swarm.PeerID
	for _, id := range p.host.Network().Peers() {
		if p.gater.blocked(id) {
			continue
		}
		if protos, err := p.host.Peerstore().GetProtocols(id); err != nil || (len(protos) > 0 && !slices.Contains(protos, FilesProtocol)) {
			continue
		}
		out = append(out, swarm.PeerID(id.String()))
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// ManifestHolders returns the connected peers whose have-lists name the
// package of manifest, in random order.
func (p *P2P) ManifestHolders(manifest cid.Cid) []swarm.PeerID {
	ids, _, _ := p.listedBy(string(manifest.Hash()))
	out := make([]swarm.PeerID, 0, len(ids))
	for _, id := range ids {
		out = append(out, swarm.PeerID(id.String()))
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
