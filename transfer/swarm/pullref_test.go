package swarm_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/policy"
	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// heldResolver resolves manifests from repo once release is closed (or
// the caller's context ends), counting the calls begun and ended.
type heldResolver struct {
	repo    swarm.ManifestResolver
	release chan struct{}
	begun   atomic.Int64
	ended   atomic.Int64
}

func (r *heldResolver) ResolveManifest(ctx context.Context, c cid.Cid) (*metadata.Manifest, error) {
	r.begun.Add(1)
	defer r.ended.Add(1)
	select {
	case <-r.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r.repo.ResolveManifest(ctx, c)
}

// rankedNames returns one name per prefix (prefix+k, for some k) such
// that the hosts rank them in this order for key.
func rankedNames(t *testing.T, key uint64, prefixes ...string) []string {
	t.Helper()
	for k := range 5000 {
		var ms []policy.Member
		for _, p := range prefixes {
			ms = append(ms, policy.Member{ID: swarm.PeerID(fmt.Sprintf("%s%d", p, k))})
		}
		// Ranked by hash alone: the last ranks every other before it, in
		// the order every host ranks them.
		ok := policy.NewFetchers(ms[len(ms)-1], ms).Before(key, 0, nil)
		if len(ok) != len(ms)-1 {
			continue
		}
		match := true
		for j, id := range ok {
			match = match && id == ms[j].ID
		}
		if match {
			names := make([]string, len(ms))
			for j, m := range ms {
				names[j] = string(m.ID)
			}
			return names
		}
	}
	t.Fatalf("no names rank %v in order", prefixes)
	return nil
}

// A fetcher asked for a chunk of a package it has not resolved yet
// fetches the chunk from its origin at once, the asker's request naming
// the chunk: the asker has its chunk, from the fetcher's origin and not
// its own, while the fetcher's resolution of the package (a metadata
// refresh in a daemon) has not ended. Today's fetcher resolved the
// package first, and the asker waited for it.
func TestSwarmPullThroughFetchesBeforeResolving(t *testing.T) {
	p := newTestPackage(t, 31, 1<<20, 1<<20)
	key := policy.ChunkKey(p.m.UniqueChunks()[0].CID.Bytes())
	names := rankedNames(t, key, "f", "a")
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	res := &heldResolver{repo: c.repo, release: make(chan struct{})}
	fOrigin, aOrigin := newSwarmOrigin(p, 0, 0), newSwarmOrigin(p, 0, 0)
	// A long request timeout: the held resolution does not end by itself
	// while the asker waits.
	c.add(names[0], fOrigin, func(cfg *swarm.Config) {
		cfg.Manifests = res
		cfg.RequestTimeout = 30 * time.Second
	})
	a := c.add(names[1], aOrigin, func(cfg *swarm.Config) { cfg.RequestTimeout = 30 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ended int64
	done := make(chan error, 1)
	go func() {
		_, err := a.download(ctx, p)
		ended = res.ended.Load()
		done <- err
	}()
	// Released once the asker is done, or after 15 s at most (today's
	// fetcher sends nothing before).
	select {
	case err := <-done:
		close(res.release)
		if err != nil {
			t.Fatalf("asker: Download: %v", err)
		}
	case <-time.After(15 * time.Second):
		close(res.release)
		if err := <-done; err != nil {
			t.Fatalf("asker: Download: %v", err)
		}
	}
	checkCopy(t, a, p)
	if ended != 0 {
		t.Errorf("the fetcher's resolutions of the package: %d ended when the asker had the chunk; want none (the asker did not wait for one)", ended)
	}
	// The resolution runs beside the fetch from the origin, so it may
	// begin just after the asker has its chunk; it must begin.
	for deadline := time.Now().Add(10 * time.Second); res.begun.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if res.begun.Load() == 0 {
		t.Error("the fetcher never resolved the package")
	}
	if got := aOrigin.reqs.Load(); got != 0 {
		t.Errorf("the asker asked its own origin %d times, want 0 (the fetcher fetches)", got)
	}
	if got := fOrigin.bytes.Load(); got != p.size {
		t.Errorf("the fetcher's origin sent %d bytes, want the package's %d", got, p.size)
	}
}

// pullRaw writes a pull-through request for chunk ref under manifest
// (index i, the chunk named) on a stream from mn to f and returns the
// final status byte and the chunk's length (0 unless pullOK).
func pullRaw(t *testing.T, mn *transfertest.MemNode, f swarm.PeerID, manifest cid.Cid, i int, ref metadata.ChunkRef) (byte, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := mn.OpenPull(ctx, f)
	if err != nil {
		t.Fatalf("OpenPull: %v", err)
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	if _, err := st.Write(pullRequestWithRef(manifest, i, ref)); err != nil {
		t.Fatalf("write request: %v", err)
	}
	br := bufio.NewReader(st)
	for {
		b, err := br.ReadByte()
		if err != nil {
			t.Fatalf("read answer: %v", err)
		}
		if b == 0 { // pullWorking
			continue
		}
		if b != 1 { // not pullOK
			return b, 0
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			t.Fatalf("read length: %v", err)
		}
		if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
			t.Fatalf("read chunk: %v", err)
		}
		return b, int(n)
	}
}

// What one asker can make a fetcher fetch from the origin before the
// fetcher has confirmed the chunks' package is bounded: 16 MiB of 1 MiB
// chunks are fetched and served, the 17th is not fetched (its request
// waits for the package, which the fetcher does not resolve in time, or
// cannot: refused), and the origin sends 16 MiB. The bytes of a package
// the fetcher cannot resolve stay counted once its resolution failed.
func TestSwarmPullThroughUnconfirmedBytesBounded(t *testing.T) {
	p := newTestPackage(t, 32, 1<<20, 20<<20)
	for _, tc := range []struct {
		name     string
		resolver func(c *cluster) (swarm.ManifestResolver, func())
	}{
		{"resolution held", func(c *cluster) (swarm.ManifestResolver, func()) {
			r := &heldResolver{repo: c.repo, release: make(chan struct{})}
			return r, func() { close(r.release) }
		}},
		{"not published", func(*cluster) (swarm.ManifestResolver, func()) {
			return &countingResolver{}, func() {}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, transfertest.LinkShape{})
			res, release := tc.resolver(c)
			defer release()
			origin := newSwarmOrigin(p, 0, 0)
			f := c.add("fetcher", origin, func(cfg *swarm.Config) {
				cfg.Manifests = res
				cfg.RequestTimeout = 300 * time.Millisecond
			})
			h := c.net.Node("asker", nil)
			refs := p.m.ChunkRefs()
			const budget = 16
			for i := range budget + 1 {
				code, n := pullRaw(t, h, f.id, p.c, i, refs[i])
				served := code == 1 && n == int(refs[i].Length)
				if i < budget && !served {
					t.Fatalf("request %d: status %d, %d bytes; want the chunk", i, code, n)
				}
				if i == budget && served {
					t.Fatalf("request %d, past 16 MiB unconfirmed: served", i)
				}
			}
			if got := origin.bytes.Load(); got != budget<<20 {
				t.Errorf("origin sent %d bytes for unconfirmed requests, want %d", got, budget<<20)
			}
		})
	}
}

// An asker that named a chunk which is not the one its package has at
// that index gets no more origin fetches before confirmation: once the
// fetcher has resolved the package and found the lie, the asker's
// requests for chunks of a package the fetcher does not know are
// refused without asking the origin.
func TestSwarmPullThroughRefutedAskerStruck(t *testing.T) {
	p := newTestPackage(t, 33, 64<<10, 2*64<<10)
	other := newTestPackage(t, 35, 64<<10, 40*64<<10)
	c := newCluster(t, transfertest.LinkShape{})
	c.repo.Publish(p.c, p.m)
	chunks := map[cid.Cid][]byte{}
	for _, q := range []*testPackage{p, other} {
		for k, v := range q.chunks {
			chunks[k] = v
		}
	}
	origin := newSwarmOrigin(&testPackage{chunks: chunks}, 0, 0)
	f := c.add("fetcher", origin, nil)
	h := c.net.Node("asker", nil)
	// Chunk 1 named as chunk 0: fetched (it is a chunk), then refuted.
	if code, _ := pullRaw(t, h, f.id, p.c, 0, p.m.ChunkRefs()[1]); code != 1 {
		t.Fatalf("first request: status %d, want the chunk", code)
	}
	// The refutation runs beside the answer: a few requests may be
	// fetched before it lands.
	refs := other.m.ChunkRefs()
	refused := -1
	for i := range refs {
		if code, _ := pullRaw(t, h, f.id, other.c, i, refs[i]); code != 1 {
			refused = i
			break
		}
	}
	if refused < 0 {
		t.Fatalf("every request after the refuted one was served")
	}
	before := origin.reqs.Load()
	for i := refused + 1; i < min(refused+4, len(refs)); i++ {
		if code, _ := pullRaw(t, h, f.id, other.c, i, refs[i]); code == 1 {
			t.Errorf("request %d after the refutation: served", i)
		}
	}
	if got := origin.reqs.Load(); got != before {
		t.Errorf("origin asked %d times after the refutation, want 0", got-before)
	}
}

// refusingMember adds to c a member that refuses every pull-through
// request, counting them.
func refusingMember(c *cluster, id string) *atomic.Int64 {
	var n atomic.Int64
	mn := c.net.Node(swarm.PeerID(id), nil)
	mn.SetPullHandler(func(from swarm.PeerID, st swarm.Stream) {
		n.Add(1)
		_, _ = st.Write([]byte{2}) // pullRefused
		st.Close()
	})
	return &n
}

// A host that fetched a chunk from the origin for a peer, and then
// downloads the package itself, takes the chunk from what it fetched: it
// asks no other member whether it holds the chunk first (today it asked
// the next in rank, a round trip before its own chunk).
func TestSwarmPullThroughFetcherUsesWhatItFetched(t *testing.T) {
	p := newTestPackage(t, 34, 1<<20, 1<<20)
	key := policy.ChunkKey(p.m.UniqueChunks()[0].CID.Bytes())
	names := rankedNames(t, key, "f", "w", "a")
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	origin := newSwarmOrigin(p, 0, 0)
	f := c.add(names[0], origin, nil)
	asked := refusingMember(c, names[1])
	a := c.add(names[2], origin, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.download(ctx, p); err != nil {
		t.Fatalf("asker: Download: %v", err)
	}
	if n := asked.Load(); n != 0 {
		t.Fatalf("the asker asked the second in rank %d times, want 0", n)
	}
	if _, err := f.download(ctx, p); err != nil {
		t.Fatalf("fetcher: Download: %v", err)
	}
	checkCopy(t, f, p)
	if n := asked.Load(); n != 0 {
		t.Errorf("the fetcher asked the next in rank %d times, want 0", n)
	}
	if copies := float64(origin.bytes.Load()) / float64(p.size); copies != 1 {
		t.Errorf("origin sent %.2f copies, want 1", copies)
	}
}

// A pull-through request whose fetcher has started sending the chunk is
// not cancelled when a peer comes to have the chunk: the bytes on their
// way are not lost, and the chunk does not wait for the peer's upload.
// The fetcher here sends all of the chunk but its last byte at once, and
// the rest once the asker has had a session with a seeder (which uploads
// slowly) for 1 s, unless the asker reset the stream meanwhile; the
// asker takes the chunk from the fetcher. Today's asker cancelled the
// request once the seeder's have-map arrived.
func TestSwarmPullThroughSendingNotOvertaken(t *testing.T) {
	p := newTestPackage(t, 36, 1<<20, 1<<20)
	data := p.chunks[p.m.UniqueChunks()[0].CID]
	key := policy.ChunkKey(p.m.UniqueChunks()[0].CID.Bytes())
	names := rankedNames(t, key, "f", "s", "a")
	c := newCluster(t, transfertest.LinkShape{Latency: time.Millisecond})
	origin := newSwarmOrigin(p, 0, 0)
	connected := make(chan struct{})
	var once sync.Once
	var reset atomic.Bool
	fn := c.net.Node(swarm.PeerID(names[0]), nil)
	fn.SetPullHandler(func(from swarm.PeerID, st swarm.Stream) {
		defer st.Close()
		msg := binary.AppendUvarint([]byte{1}, uint64(len(data))) // pullOK
		if _, err := st.Write(append(msg, data[:len(data)-1]...)); err != nil {
			reset.Store(true)
			return
		}
		// The asker's reset, seen as the end of its request stream.
		gone := make(chan struct{})
		go func() {
			defer close(gone)
			_, _ = io.Copy(io.Discard, st)
		}()
		for _, wait := range []<-chan struct{}{connected, nil} {
			t := time.NewTimer(10 * time.Second)
			if wait == nil {
				t.Reset(time.Second)
			}
			select {
			case <-gone:
				reset.Store(true)
				t.Stop()
				return
			case <-wait:
			case <-t.C:
			}
			t.Stop()
		}
		if _, err := st.Write(data[len(data)-1:]); err != nil {
			reset.Store(true)
		}
	})
	s := c.add(names[1], origin, func(cfg *swarm.Config) { cfg.UploadRate = 64 << 10 })
	s.seed(p)
	s.mn.SetHandler(func(from swarm.PeerID, st swarm.Stream) {
		if from == swarm.PeerID(names[2]) {
			once.Do(func() { close(connected) })
		}
		s.swarm.HandleStream(from, st)
	})
	a := c.add(names[2], origin, func(cfg *swarm.Config) { cfg.RequestTimeout = 10 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := a.download(ctx, p); err != nil {
		t.Fatalf("asker: Download: %v", err)
	}
	checkCopy(t, a, p)
	if reset.Load() {
		t.Errorf("the asker cancelled the request of the fetcher sending the chunk")
	}
	if got := a.swarm.Stats().Peers[swarm.PeerID(names[0])].Downloaded; got != p.size {
		t.Errorf("the asker took %d bytes from the fetcher, want the chunk's %d", got, p.size)
	}
}

// pullRequestWithRef encodes a pull-through request for chunk i of
// manifest that names its chunk (flag pullWithRef: the CID and length),
// as the swarm's pull writes it.
func pullRequestWithRef(manifest cid.Cid, i int, ref metadata.ChunkRef) []byte {
	mb, cb := manifest.Bytes(), ref.CID.Bytes()
	req := binary.AppendUvarint(nil, uint64(len(mb)))
	req = append(req, mb...)
	req = binary.AppendUvarint(req, uint64(i))
	req = append(req, 2) // pullWithRef
	req = binary.AppendUvarint(req, uint64(len(cb)))
	req = append(req, cb...)
	return binary.AppendUvarint(req, uint64(ref.Length))
}
