package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"

	"github.com/storkpm/stork/transfer/swarm"
)

// findAllOf reads p's providers of c until every one of want came (true)
// or the search ended or 5s passed.
func findAllOf(p *P2P, c cid.Cid, want []swarm.PeerID) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	left := map[swarm.PeerID]bool{}
	for _, id := range want {
		left[id] = true
	}
	for id := range p.FindProviders(ctx, c) {
		delete(left, id)
		if len(left) == 0 {
			cancel()
		}
	}
	return len(left) == 0
}

// TestP2PHaveListsNoRoundTrips: hosts that all fetch the same many
// packages (an upgrade) learn who provides each from their neighbours'
// have-lists: finding the providers of every package asks no neighbour
// on /stork/have and walks the DHT not once.
func TestP2PHaveListsNoRoundTrips(t *testing.T) {
	t.Parallel()
	const hosts, npkg = 6, 40
	var lookups, questions atomic.Int64
	count := func(cfg *P2PConfig) {
		cfg.lookupObserver = func(time.Duration, bool) { lookups.Add(1) }
	}
	var ps []*P2P
	for range hosts {
		p := testP2P(t, count, ps...)
		p.host.SetStreamHandler(HaveProtocol, func(s network.Stream) {
			questions.Add(1)
			p.handleHave(s)
		})
		ps = append(ps, p)
	}
	var pkgs []cid.Cid
	for k := range npkg {
		pkgs = append(pkgs, testCID(t, fmt.Sprint("upgrade package ", k)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range ps {
		for _, c := range pkgs {
			if err := p.Provide(ctx, c); err != nil {
				t.Fatalf("Provide: %v", err)
			}
		}
	}
	others := func(k int) []swarm.PeerID {
		var out []swarm.PeerID
		for j, q := range ps {
			if j != k {
				out = append(out, q.ID())
			}
		}
		return out
	}
	// Every host knows every other as a provider of the last package
	// announced: the announcements have spread.
	last := pkgs[len(pkgs)-1]
	for k, p := range ps {
		deadline := time.Now().Add(20 * time.Second)
		for !findAllOf(p, last, others(k)) {
			if time.Now().After(deadline) {
				t.Fatalf("host %d never found all %d others providing %s", k, hosts-1, last)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	lookups.Store(0)
	questions.Store(0)
	for k, p := range ps {
		for _, c := range pkgs {
			if !findAllOf(p, c, others(k)) {
				t.Errorf("host %d: FindProviders(%s) missed some of the %d others", k, c, hosts-1)
			}
		}
	}
	if l, q := lookups.Load(), questions.Load(); l != 0 || q != 0 {
		t.Errorf("finding the providers of %d packages at %d hosts took %d DHT lookups and %d /stork/have questions, want 0 and 0 (have-lists)", npkg, hosts, l, q)
	}
}

func TestDecodeHaveList(t *testing.T) {
	t.Parallel()
	mh := func(s string) string {
		h, err := multihash.Sum([]byte(s), multihash.SHA2_256, -1)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	good := encodeHaveList([]string{mh("a"), mh("b")})
	for _, tc := range []struct {
		name string
		b    []byte
		want int // entries; -1: an error
	}{
		{"two", good, 2},
		{"empty", nil, -1},
		{"zero entries", []byte{0}, -1},
		{"count beyond the frame", []byte{3, 1, 0}, -1},
		{"count beyond the batch", append([]byte{0x81, 0x20}, bytes.Repeat([]byte{1, 0}, maxHaveListBatch+1)...), -1},
		{"truncated entry", good[:len(good)-1], -1},
		{"trailing bytes", append(bytes.Clone(good), 0), -1},
		{"zero-length key", []byte{1, 0}, -1},
		{"key too long", append([]byte{1, 0x81, 0x01}, bytes.Repeat([]byte{0x12}, 129)...), -1},
		{"not a multihash", []byte{1, 3, 0x12, 0x20, 0}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := decodeHaveList(tc.b)
			if tc.want < 0 {
				if !errors.Is(err, errHaveList) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("decodeHaveList(%x) = %d keys, %v; want a one-line error wrapping errHaveList", tc.b, len(keys), err)
				}
				return
			}
			if err != nil || len(keys) != tc.want {
				t.Fatalf("decodeHaveList(%x) = %d keys, %v; want %d", tc.b, len(keys), err, tc.want)
			}
		})
	}
}

// TestP2PHaveListRefused: a peer that sends a malformed or oversized
// have-list frame has its stream reset and nothing it listed kept.
func TestP2PHaveListRefused(t *testing.T) {
	t.Parallel()
	a := testP2P(t, nil)
	b := testP2P(t, nil, a)
	aid, _ := peer.Decode(string(a.ID()))
	key := string(testCID(t, "listed by a liar").Hash())
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"oversized", binaryFrame(maxHaveListFrame+1, nil)},
		{"malformed", binaryFrame(-1, []byte{2, 34, 0x12})},
		{"valid then garbage", append(binaryFrame(-1, encodeHaveList([]string{key})), binaryFrame(-1, []byte{0})...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := b.host.NewStream(ctx, aid, HaveListProtocol)
			if err != nil {
				t.Fatalf("open have-list stream: %v", err)
			}
			defer s.Reset()
			_, _ = s.Write(tc.frame)
			// a resets the stream: a read (a never writes) ends in an error.
			_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := s.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "deadline") {
				t.Fatalf("after a %s frame, read = %v; want the stream reset", tc.name, err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				ids, _, _ := a.listedBy(key)
				if len(ids) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after a %s frame, a still lists %v as providers", tc.name, ids)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestP2PHaveListAfterQuickReconnect: a peer identified again while our
// sender to it still runs on the old connection gets a new sender once
// the old one ends, so it learns our list again (it forgets the list with
// the old stream). The old stream's end is a reset by the receiver.
func TestP2PHaveListAfterQuickReconnect(t *testing.T) {
	t.Parallel()
	a := testP2P(t, nil)
	b := testP2P(t, nil, a)
	aid, _ := peer.Decode(string(a.ID()))
	bid, _ := peer.Decode(string(b.ID()))
	c := testCID(t, "held by a")
	if err := a.Provide(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	listed := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if ids, _, _ := b.listedBy(string(c.Hash())); len(ids) == 1 && ids[0] == aid {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("b does not list a as holding the package %s", what)
			}
		}
	}
	listed("at first")
	a.startHaveList(bid) // b identified again: its sender is running
	b.mu.Lock()
	old := b.nbHave[aid]
	b.mu.Unlock()
	_ = old.s.Reset() // the old connection's stream ends
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b.mu.Lock()
		nl := b.nbHave[aid]
		b.mu.Unlock()
		if nl != nil && nl != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a sent b no new have-list after the old stream ended")
		}
	}
	listed("after the old stream ended")
}

// binaryFrame is a frame of body, or (n >= 0) only a header announcing n
// bytes.
func binaryFrame(n int, body []byte) []byte {
	if n >= 0 {
		return binary.AppendUvarint(nil, uint64(n))
	}
	var buf bytes.Buffer
	_ = writeFrame(&buf, body)
	return buf.Bytes()
}

func FuzzHaveList(f *testing.F) {
	h, _ := multihash.Sum([]byte("seed"), multihash.SHA2_256, -1)
	f.Add(encodeHaveList([]string{string(h)}))
	f.Add(encodeHaveList([]string{string(h), string(h)}))
	f.Add([]byte{})
	f.Add([]byte{1, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := decodeHaveList(b)
		if err != nil {
			return
		}
		if len(keys) == 0 || len(keys) > maxHaveListBatch {
			t.Fatalf("decodeHaveList(%x) = %d keys, outside 1..%d", b, len(keys), maxHaveListBatch)
		}
		for _, k := range keys {
			if len(k) == 0 || len(k) > maxHaveListKey {
				t.Fatalf("decodeHaveList(%x): a key of %d bytes", b, len(k))
			}
		}
		again, err := decodeHaveList(encodeHaveList(keys))
		if err != nil || strings.Join(again, "") != strings.Join(keys, "") || len(again) != len(keys) {
			t.Fatalf("decode(encode(decode(%x))) = %d keys, %v; want the same %d keys", b, len(again), err, len(keys))
		}
	})
}

// TestP2PHaveQuestionsSkipListingNeighbours: a package no neighbour
// lists makes FindProviders walk the DHT and ask the neighbours on
// /stork/have; with enoughNeighbours have-lists or more, a neighbour
// whose have-list this host receives is not asked (its list would name
// it), and in an overlay of fewer, where the DHT is fragile, every
// neighbour still is.
func TestP2PHaveQuestionsSkipListingNeighbours(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		hosts int
		asked bool
	}{{enoughNeighbours + 2, false}, {3, true}} {
		t.Run(fmt.Sprint(tc.hosts, " hosts"), func(t *testing.T) {
			t.Parallel()
			var questions atomic.Int64
			var ps []*P2P
			for range tc.hosts {
				p := testP2P(t, nil, ps...)
				p.host.SetStreamHandler(HaveProtocol, func(s network.Stream) {
					questions.Add(1)
					p.handleHave(s)
				})
				ps = append(ps, p)
			}
			// The asker receives every neighbour's have-list.
			deadline := time.Now().Add(20 * time.Second)
			for {
				ps[0].mu.Lock()
				n := len(ps[0].nbHave)
				ps[0].mu.Unlock()
				if n == tc.hosts-1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the asker receives %d have-lists, want %d", n, tc.hosts-1)
				}
				time.Sleep(20 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for range ps[0].FindProviders(ctx, testCID(t, "nobody's package")) {
				t.Error("a provider of a package nobody announced")
			}
			if got := questions.Load(); tc.asked && got != int64(tc.hosts-1) {
				t.Errorf("%d hosts: %d /stork/have questions, want one to each of the %d neighbours", tc.hosts, got, tc.hosts-1)
			} else if !tc.asked && got != 0 {
				t.Errorf("%d hosts, every neighbour's have-list received: %d /stork/have questions, want none", tc.hosts, got)
			}
		})
	}
}

// TestP2PMeshedNoDHT: in an overlay that is one neighbourhood of
// have-lists (every DHT peer a neighbour whose list this host receives,
// enoughNeighbours or more) and a DHT lookup made lately, announcing a
// package PUTs no DHT record and finding one walks no DHT; the others
// still find the provider, from its have-list. Past meshedLookupEvery
// the next provide looks the DHT up again. A host with a DHT peer that sends no have-list (here one
// that serves only the DHT) provides and walks as before.
func TestP2PMeshedNoDHT(t *testing.T) {
	t.Parallel()
	const hosts = enoughNeighbours + 2
	var lookups atomic.Int64
	count := func(cfg *P2PConfig) {
		cfg.lookupObserver = func(time.Duration, bool) { lookups.Add(1) }
	}
	var ps []*P2P
	for range hosts {
		ps = append(ps, testP2P(t, count, ps...))
	}
	// Each host's first provide looks the DHT up (meeting the hosts it
	// had not met); within meshedLookupEvery of it the DHT is left out.
	warm, cancelWarm := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelWarm()
	for k, p := range ps {
		if err := p.Provide(warm, testCID(t, fmt.Sprint("first package of host ", k))); err != nil {
			t.Fatalf("Provide: %v", err)
		}
	}
	meshedAll := func() bool {
		for _, p := range ps {
			if !p.meshed() {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(20 * time.Second)
	for !meshedAll() {
		if time.Now().After(deadline) {
			t.Fatalf("%d hosts connected to one another never all saw one neighbourhood of have-lists", hosts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	provides := func(p *P2P) int64 { return p.counts.dhtProvides.Load() }
	before := provides(ps[0])
	lookups.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pkg := testCID(t, "package of a meshed overlay")
	if err := ps[0].Provide(ctx, pkg); err != nil {
		t.Fatalf("Provide: %v", err)
	}
	for _, p := range ps[1:] {
		waitProvider(t, p, pkg, ps[0].ID())
	}
	time.Sleep(2 * provideBatchDelay) // the provide loop's batch is done
	if got := provides(ps[0]) - before; got != 0 {
		t.Errorf("meshed: %d provider records PUT to the DHT, want 0", got)
	}
	if got := lookups.Load(); got != 0 {
		t.Errorf("meshed: %d DHT walks to find the provider, want 0", got)
	}
	// Past meshedLookupEvery since its last lookup, a host looks the DHT
	// up again with its next provide: once for a batch of them.
	ps[0].lookedUp.Store(time.Now().Add(-meshedLookupEvery - time.Second).UnixNano())
	before = provides(ps[0])
	for k := range 5 {
		if err := ps[0].Provide(ctx, testCID(t, fmt.Sprint("package after a while ", k))); err != nil {
			t.Fatalf("Provide: %v", err)
		}
	}
	for provides(ps[0]) == before {
		if ctx.Err() != nil {
			t.Fatalf("meshed, but no DHT lookup for %v: no provider record PUT", meshedLookupEvery)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2 * provideBatchDelay) // the provide loop's batch is done
	if got := provides(ps[0]) - before; got != 1 {
		t.Errorf("meshed, last lookup %v ago: %d provider records PUT for a batch of 5, want 1",
			meshedLookupEvery, got)
	}
	// A DHT peer that sends no have-list: the overlay is not one
	// neighbourhood of have-lists any more, and the DHT is used again.
	testP2P(t, func(cfg *P2PConfig) { cfg.noHaveLists = true }, ps...)
	deadline = time.Now().Add(20 * time.Second)
	for ps[0].meshed() {
		if time.Now().After(deadline) {
			t.Fatal("a DHT peer without a have-list left the overlay meshed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	before = provides(ps[0])
	pkg2 := testCID(t, "package of an overlay not meshed")
	if err := ps[0].Provide(ctx, pkg2); err != nil {
		t.Fatalf("Provide: %v", err)
	}
	for provides(ps[0]) == before {
		if ctx.Err() != nil {
			t.Fatal("not meshed: no provider record PUT to the DHT")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestP2PHaveListAgainAfterFailure: a have-list stream that ends while
// the peer is still connected (here the receiver resets the first one, as
// an open that times out on a loaded host fails) is opened again, so the
// pair does not go without a have-list for the rest of the connection.
func TestP2PHaveListAgainAfterFailure(t *testing.T) {
	t.Parallel()
	b := testP2P(t, nil)
	var refused atomic.Int64
	b.host.SetStreamHandler(HaveListProtocol, func(s network.Stream) {
		if refused.Add(1) == 1 {
			_ = s.Reset()
			return
		}
		b.handleHaveList(s)
	})
	a := testP2P(t, nil, b)
	aid, _ := peer.Decode(string(a.ID()))
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b.hasHaveList(aid) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b has no have-list from a 15s after refusing its first stream (%d streams came)", refused.Load())
		}
	}
}
