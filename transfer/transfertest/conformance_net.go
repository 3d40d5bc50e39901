package transfertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/swarm"
)

// suiteWait bounds every wait of the network and discovery suites: what
// the contract promises must happen well within it on loopback.
const suiteWait = 20 * time.Second

// NetworkHost is one host of a network under test.
type NetworkHost struct {
	ID  swarm.PeerID
	Net swarm.Network
	// Serve makes h serve the host's inbound swarm streams; h owns each
	// stream and closes or resets it.
	Serve func(h func(from swarm.PeerID, st swarm.Stream))
}

// NetworkFixture is what TestNetwork runs on: two hosts of one network,
// each able to open streams to the other, and the well-formed ID of a
// host that is not on it. The hosts are closed when the test ends.
type NetworkFixture struct {
	A, B   NetworkHost
	Absent swarm.PeerID
}

// NewNetworkFunc returns a fresh NetworkFixture.
type NewNetworkFunc func(t *testing.T) NetworkFixture

// TestNetwork is the conformance suite of swarm.Network and swarm.Stream:
// every implementation (MemNet, the daemon's libp2p host) must pass it.
func TestNetwork(t *testing.T, newNet NewNetworkFunc) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newNet(t)) })
	t.Run("LargeInOrder", func(t *testing.T) { testLargeInOrder(t, newNet(t)) })
	t.Run("Reset", func(t *testing.T) { testReset(t, newNet(t)) })
	t.Run("ClosePeer", func(t *testing.T) { testClosePeer(t, newNet(t)) })
	t.Run("Unreachable", func(t *testing.T) {
		f := newNet(t)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if st, err := f.A.Net.OpenStream(ctx, f.Absent); err == nil {
			st.Reset()
			t.Errorf("OpenStream(%s), a host not on the network, succeeded", f.Absent)
		}
	})
}

// serveOne makes f.B serve one stream with h in the handler's goroutine
// and returns a channel that h's result (and the remote ID) arrive on.
func serveOne(f NetworkFixture, h func(st swarm.Stream) error) <-chan handled {
	out := make(chan handled, 1)
	f.B.Serve(func(from swarm.PeerID, st swarm.Stream) {
		out <- handled{from: from, err: h(st)}
	})
	return out
}

type handled struct {
	from swarm.PeerID
	err  error
}

// wait returns what the handler did, failing the test if it did nothing
// within suiteWait.
func wait(t *testing.T, ch <-chan handled, what string) handled {
	t.Helper()
	select {
	case h := <-ch:
		return h
	case <-time.After(suiteWait):
		t.Fatalf("%s: the handler did not return within %v", what, suiteWait)
		return handled{}
	}
}

// open opens a stream from A to B, failing the test if it cannot.
func open(t *testing.T, f NetworkFixture) swarm.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), suiteWait)
	defer cancel()
	st, err := f.A.Net.OpenStream(ctx, f.B.ID)
	if err != nil {
		t.Fatalf("OpenStream(%s): %v", f.B.ID, err)
	}
	return st
}

// readWithin reads len(p) bytes from st, failing the test on an error or
// if they take longer than suiteWait.
func readWithin(t *testing.T, st swarm.Stream, p []byte) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(st, p)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("read %d bytes: %v", len(p), err)
		}
	case <-time.After(suiteWait):
		st.Reset()
		t.Fatalf("read %d bytes: nothing within %v", len(p), suiteWait)
	}
}

// testRoundTrip: bytes go both ways, the handler learns who opened the
// stream, and a Close reaches the other end as EOF.
func testRoundTrip(t *testing.T, f NetworkFixture) {
	res := serveOne(f, func(st swarm.Stream) error {
		defer st.Close()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(st, buf); err != nil || string(buf) != "hello" {
			return errors.Join(errors.New("want hello"), err)
		}
		if _, err := st.Write([]byte("world")); err != nil {
			return err
		}
		if n, err := st.Read(buf); n != 0 || !errors.Is(err, io.EOF) {
			return errors.Join(errors.New("want EOF after the opener's Close"), err)
		}
		return nil
	})
	st := open(t, f)
	if _, err := st.Write([]byte("hello")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := make([]byte, 5)
	readWithin(t, st, got)
	if string(got) != "world" {
		t.Errorf("read %q, want \"world\"", got)
	}
	if err := st.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if h := wait(t, res, "round trip"); h.err != nil || h.from != f.A.ID {
		t.Errorf("handler: stream from %s, %v; want from %s, no error", h.from, h.err, f.A.ID)
	}
}

// testLargeInOrder: megabytes written in pieces of many sizes arrive
// whole and in order.
func testLargeInOrder(t *testing.T, f NetworkFixture) {
	data := make([]byte, 3<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	res := serveOne(f, func(st swarm.Stream) error {
		defer st.Close()
		h := sha256.New()
		if _, err := io.CopyN(h, st, int64(len(data))); err != nil {
			return err
		}
		_, err := st.Write(h.Sum(nil))
		return err
	})
	st := open(t, f)
	defer st.Close()
	for off := 0; off < len(data); {
		n := min(1+rng.IntN(200<<10), len(data)-off)
		if _, err := st.Write(data[off : off+n]); err != nil {
			t.Fatalf("Write at %d: %v", off, err)
		}
		off += n
	}
	got := make([]byte, sha256.Size)
	readWithin(t, st, got)
	if want := sha256.Sum256(data); !bytes.Equal(got, want[:]) {
		t.Errorf("the remote's hash of %d bytes differs: they did not arrive whole and in order", len(data))
	}
	if h := wait(t, res, "large"); h.err != nil {
		t.Errorf("handler: %v", h.err)
	}
}

// testReset: a stream the remote resets fails the opener's reads with an
// error that is not a clean end.
func testReset(t *testing.T, f NetworkFixture) {
	res := serveOne(f, func(st swarm.Stream) error {
		buf := make([]byte, 1)
		_, err := io.ReadFull(st, buf)
		st.Reset()
		return err
	})
	st := open(t, f)
	if _, err := st.Write([]byte{1}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if h := wait(t, res, "reset"); h.err != nil {
		t.Fatalf("handler: %v", h.err)
	}
	if err := readErr(st); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("Read after the remote's Reset = %v, want an error other than EOF", err)
	}
	st.Reset()
}

// testClosePeer: ClosePeer ends the streams to that peer at both ends.
func testClosePeer(t *testing.T, f NetworkFixture) {
	res := serveOne(f, func(st swarm.Stream) error {
		defer st.Reset()
		buf := make([]byte, 1)
		if _, err := io.ReadFull(st, buf); err != nil {
			return err
		}
		if _, err := st.Write(buf); err != nil {
			return err
		}
		if err := readErr(st); err == nil {
			return errors.New("the stream outlived ClosePeer")
		}
		return nil
	})
	st := open(t, f)
	defer st.Reset()
	if _, err := st.Write([]byte{1}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	readWithin(t, st, make([]byte, 1))
	if err := f.A.Net.ClosePeer(f.B.ID); err != nil {
		t.Fatalf("ClosePeer(%s): %v", f.B.ID, err)
	}
	if err := readErr(st); err == nil {
		t.Errorf("Read after ClosePeer succeeded")
	}
	if h := wait(t, res, "close peer"); h.err != nil {
		t.Errorf("handler: %v", h.err)
	}
}

// readErr reads from st until an error, at most suiteWait (then it resets
// st and returns the read's error, nil if none).
func readErr(st swarm.Stream) error {
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 512)
		for k := 0; k < 1<<16; k++ {
			if _, err := st.Read(buf); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(suiteWait):
		st.Reset()
		return <-done
	}
}

// DiscoveryHost is one host of a discovery service under test.
type DiscoveryHost struct {
	ID   swarm.PeerID
	Disc swarm.Discovery
}

// NewDiscoveryFunc returns three hosts that see each other's records
// (one DHT, one table); they are closed when the test ends.
type NewDiscoveryFunc func(t *testing.T) [3]DiscoveryHost

// TestDiscovery is the conformance suite of swarm.Discovery: every
// implementation (MemDiscovery, the daemon's DHT) must pass it.
func TestDiscovery(t *testing.T, newDisc NewDiscoveryFunc) {
	key := func(s string) cid.Cid { return metadata.SumCID([]byte(t.Name() + s)) }
	t.Run("ProvideThenFind", func(t *testing.T) {
		h := newDisc(t)
		c := key("one")
		provide(t, h[0], c)
		findAll(t, h[1], c, h[0].ID)
		// A host never finds itself.
		findAll(t, h[0], c)
	})
	t.Run("TwoProviders", func(t *testing.T) {
		h := newDisc(t)
		c := key("two")
		provide(t, h[0], c)
		provide(t, h[2], c)
		findAll(t, h[1], c, h[0].ID, h[2].ID)
	})
	t.Run("NotProvided", func(t *testing.T) {
		h := newDisc(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if got := drain(t, h[1].Disc.FindProviders(ctx, key("nobody"))); len(got) != 0 {
			t.Errorf("FindProviders(a package nobody provides) = %v, want none", got)
		}
	})
	t.Run("Canceled", func(t *testing.T) {
		h := newDisc(t)
		c := key("canceled")
		provide(t, h[0], c)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		drain(t, h[1].Disc.FindProviders(ctx, c))
	})
}

// provide announces c from h.
func provide(t *testing.T, h DiscoveryHost, c cid.Cid) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), suiteWait)
	defer cancel()
	if err := h.Disc.Provide(ctx, c); err != nil {
		t.Fatalf("Provide(%s) on %s: %v", c, h.ID, err)
	}
}

// drain reads ch until it closes, failing the test if a peer comes twice
// or it stays open longer than suiteWait past the caller's deadline.
func drain(t *testing.T, ch <-chan swarm.PeerID) []swarm.PeerID {
	t.Helper()
	var got []swarm.PeerID
	timeout := time.After(suiteWait)
	for {
		select {
		case p, ok := <-ch:
			if !ok {
				return got
			}
			for _, q := range got {
				if q == p {
					t.Errorf("FindProviders returned %s twice", p)
				}
			}
			got = append(got, p)
		case <-timeout:
			t.Fatalf("FindProviders: the channel stayed open %v past its context (got %v)", suiteWait, got)
		}
	}
}

// findAll asks h for c's providers, again and again, until every one of
// want has come, within suiteWait; h itself must never come.
func findAll(t *testing.T, h DiscoveryHost, c cid.Cid, want ...swarm.PeerID) {
	t.Helper()
	seen := map[swarm.PeerID]bool{}
	deadline := time.Now().Add(suiteWait)
	for attempt := 0; attempt < 100 && time.Now().Before(deadline); attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		for _, p := range drain(t, h.Disc.FindProviders(ctx, c)) {
			if p == h.ID {
				t.Errorf("FindProviders(%s) on %s returned the host itself", c, h.ID)
			}
			seen[p] = true
		}
		cancel()
		all := true
		for _, w := range want {
			all = all && seen[w]
		}
		if all {
			return
		}
	}
	t.Errorf("FindProviders(%s) on %s found %v within %v, want %v", c, h.ID, seen, suiteWait, want)
}
