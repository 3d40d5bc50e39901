package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/storkpm/stork/metadata"
	"github.com/storkpm/stork/transfer/swarm"
)

// Announcements of newer signed timestamps over gossipsub (see the
// package documentation, "Groups and convergence").

// timestampTopicPrefix starts the topic of a repository: the prefix and
// the SHA-256 of its first root.
const timestampTopicPrefix = "/stork/timestamp/"

// Per-peer rate limit of announcements: a burst of announceBurst, then
// one per announceEvery. A peer over it is ignored, not verified.
const (
	announceBurst = 4
	announceEvery = time.Second
)

// announcer publishes this host's newer timestamps and takes its peers'.
type announcer struct {
	d     *Daemon
	ps    *pubsub.PubSub
	topic *pubsub.Topic
	self  peer.ID

	mu      sync.Mutex
	buckets map[peer.ID]*tokenBucket
	// applying is the highest version being applied or applied from an
	// announcement (or seen by a refresh): announcements of it or below
	// start nothing.
	applying atomic.Int64
	// published is the highest version this host announced.
	published atomic.Int64
}

// tokenBucket is one peer's allowance of announcements.
type tokenBucket struct {
	tokens float64
	at     time.Time
}

// startAnnouncer joins the repository's topic on the libp2p host and
// serves it until ctx ends (the goroutines are counted in wg). Without a
// libp2p host there is nothing to do.
func (d *Daemon) startAnnouncer(ctx context.Context, wg *sync.WaitGroup) error {
	if d.p2p == nil {
		return nil
	}
	ps, err := pubsub.NewGossipSub(ctx, d.p2p.host, pubsub.WithMaxMessageSize(maxAnnounceSize+4<<10))
	if err != nil {
		return fmt.Errorf("gossipsub: %w", err)
	}
	topicName, err := d.timestampTopic()
	if err != nil {
		return err
	}
	a := &announcer{d: d, ps: ps, self: d.p2p.host.ID(), buckets: map[peer.ID]*tokenBucket{}}
	if err := ps.RegisterTopicValidator(topicName, pubsub.ValidatorEx(a.validate)); err != nil {
		return fmt.Errorf("gossipsub topic %s: %w", topicName, err)
	}
	if a.topic, err = ps.Join(topicName); err != nil {
		return fmt.Errorf("gossipsub topic %s: %w", topicName, err)
	}
	sub, err := a.topic.Subscribe()
	if err != nil {
		return fmt.Errorf("gossipsub topic %s: %w", topicName, err)
	}
	_, v := d.meta.state()
	a.applying.Store(v)
	a.published.Store(v)
	d.ann.Store(a)
	wg.Go(func() {
		// Only this host's own announcements are delivered (validate
		// ignores every other after taking it); the loop drains them.
		for {
			if _, err := sub.Next(ctx); err != nil {
				sub.Cancel()
				return
			}
		}
	})
	d.log.Info("announcing timestamps", "topic", topicName)
	return nil
}

// timestampTopic is the repository's topic: named by its first root, the
// one every host of the repository started from.
func (d *Daemon) timestampTopic() (string, error) {
	root, err := metadata.TrustedFile(d.tufDir(), metadata.MetadataDir+"/1.root.json", maxAnnounceSize*64)
	if err != nil {
		if root = d.cfg.Root; root == nil {
			return "", fmt.Errorf("timestamp topic: no first root: %w", err)
		}
	}
	sum := sha256.Sum256(root)
	return timestampTopicPrefix + hex.EncodeToString(sum[:]), nil
}

// validate decides on one message. This host's own announcements go out;
// a peer's is never forwarded as such: a newer timestamp that verifies is
// applied (fetching its files from that peer first) and then announced
// again by this host, so that what it forwards it has checked and can
// serve. Forged or malformed ones are rejected (the peer's score drops);
// stale, replayed, expired or rolled-back ones, and a peer over its rate,
// are ignored. Nothing is fetched before the timestamp verifies.
func (a *announcer) validate(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	if from == a.self {
		return pubsub.ValidationAccept
	}
	if !a.allow(from) {
		a.d.metrics.announcements.WithLabelValues("rate_limited").Inc()
		return pubsub.ValidationIgnore
	}
	if len(m.Data) > maxAnnounceSize {
		a.d.metrics.announcements.WithLabelValues("refused").Inc()
		return pubsub.ValidationReject
	}
	v, err := a.d.meta.c.CheckTimestamp(m.Data)
	switch {
	case errors.Is(err, metadata.ErrRollback), errors.Is(err, metadata.ErrExpired), errors.Is(err, metadata.ErrNotFound):
		a.d.metrics.announcements.WithLabelValues("stale").Inc()
		return pubsub.ValidationIgnore
	case err != nil:
		a.d.metrics.announcements.WithLabelValues("refused").Inc()
		a.d.log.Warn("announcement refused", "peer", from, "err", err)
		return pubsub.ValidationReject
	}
	if prev := a.applying.Load(); v <= prev || !a.applying.CompareAndSwap(prev, v) {
		a.d.metrics.announcements.WithLabelValues("stale").Inc()
		return pubsub.ValidationIgnore
	}
	a.d.metrics.announcements.WithLabelValues("applied").Inc()
	ts := append([]byte(nil), m.Data...)
	a.d.background(func(ctx context.Context) {
		f := &peerFirstFetcher{from: swarm.PeerID(from.String()), p2p: a.d.p2p, next: a.d.metaFetcher}
		if err := a.d.Announced(ctx, ts, f); err != nil {
			// Another announcement of this version may come from a peer
			// that serves it.
			_, trusted := a.d.meta.state()
			a.applying.CompareAndSwap(v, trusted)
			a.d.log.Warn("announced metadata not applied", "peer", from, "version", v, "err", err)
		}
	})
	return pubsub.ValidationIgnore
}

// allow takes one token of from's bucket, if it has one.
func (a *announcer) allow(from peer.ID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	b := a.buckets[from]
	if b == nil {
		if len(a.buckets) > 4096 {
			clear(a.buckets) // bounded: forgetting gives a burst back
		}
		b = &tokenBucket{tokens: announceBurst, at: now}
		a.buckets[from] = b
	}
	b.tokens = min(announceBurst, b.tokens+now.Sub(b.at).Seconds()/announceEvery.Seconds())
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// publish announces the timestamp this host trusts now, if newer than
// what it announced before.
func (a *announcer) publish(ctx context.Context) {
	// Every convergence pass asks for this; the file is read only when
	// there is something newer to announce.
	_, v := a.d.meta.state()
	if v <= a.published.Load() {
		return
	}
	ts, err := metadata.TrustedFile(a.d.tufDir(), metadata.TimestampPath, maxAnnounceSize)
	if err != nil {
		a.d.log.Warn("no timestamp to announce", "err", err)
		return
	}
	for {
		prev := a.published.Load()
		if v <= prev {
			return
		}
		if a.published.CompareAndSwap(prev, v) {
			break
		}
	}
	for {
		prev := a.applying.Load()
		if v <= prev || a.applying.CompareAndSwap(prev, v) {
			break
		}
	}
	if err := a.topic.Publish(ctx, ts); err != nil {
		a.d.log.Warn("timestamp not announced", "version", v, "err", err)
		return
	}
	a.d.log.Info("announced timestamp", "version", v)
}

// announce publishes this host's trusted timestamp if it is newer than
// the last it announced (a refresh or an announcement brought it).
func (d *Daemon) announce() {
	a := d.ann.Load()
	if a == nil {
		return
	}
	d.background(func(ctx context.Context) { a.publish(ctx) })
}

// peerFirstFetcher fetches the files of an announced timestamp from the
// peer that announced it (which applied them, and serves what it trusts)
// and from the daemon's own sources (the origin and other peers) when
// that peer does not give a copy that checks.
type peerFirstFetcher struct {
	from swarm.PeerID
	p2p  *P2P
	next *sourcesFetcher
}

var _ metadata.CheckingFetcher = (*peerFirstFetcher)(nil)

// Fetch implements metadata.Fetcher: manifests come through the
// daemon's own fetcher, which checks them against their CIDs.
func (f *peerFirstFetcher) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	return f.next.Fetch(ctx, p, maxLen)
}

// FetchChecked implements metadata.CheckingFetcher. The probe for the
// next root (N.root.json) ends at the announcing peer when it has none:
// it refreshed through the same timestamp and would hold the root it
// trusted. So the hosts of a repository do not each ask the origin for a
// root that does not exist; the cost is that a root rotation the peer
// hides waits for the next poll, which asks the origin.
func (f *peerFirstFetcher) FetchChecked(ctx context.Context, p string, maxLen int64, check func([]byte) error) ([]byte, error) {
	b, err := f.fromPeer(ctx, p, maxLen)
	if err == nil && check(b) == nil {
		return b, nil
	}
	if errors.Is(err, metadata.ErrNotFound) && isRootPath(p) {
		return nil, fmt.Errorf("fetch %s: %w: the announcing peer %s has no such root", p, metadata.ErrNotFound, f.from)
	}
	return f.next.FetchChecked(ctx, p, maxLen, check)
}

// isRootPath reports whether p is metadata/N.root.json.
func isRootPath(p string) bool {
	name, ok := strings.CutPrefix(p, metadata.MetadataDir+"/")
	return ok && strings.HasSuffix(name, ".root.json") && !strings.Contains(name, "/")
}

// FetchNewest implements metadata.CheckingFetcher.
func (f *peerFirstFetcher) FetchNewest(ctx context.Context, p string, maxLen int64, check func([]byte) (int64, error)) ([]byte, error) {
	return f.next.FetchNewest(ctx, p, maxLen, check)
}

func (f *peerFirstFetcher) fromPeer(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, filesTimeout)
	defer cancel()
	return f.p2p.FetchFile(ctx, f.from, p, maxLen)
}
