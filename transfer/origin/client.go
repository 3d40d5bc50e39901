package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// ChunkSource is what Get and FetchChunks read chunks from: a Client, or
// a fake. Implementations need not verify; Get and FetchChunks do.
type ChunkSource interface {
	// FetchChunk returns the bytes of chunk c, which the caller expects to be
	// size bytes long. A source must refuse to read more than size bytes
	// (an error wrapping metadata.ErrTooLarge); a missing chunk is an error
	// wrapping metadata.ErrNotFound.
	FetchChunk(ctx context.Context, c cid.Cid, size int64) ([]byte, error)
}

// Defaults for Config.
const (
	DefaultStallTimeout = 15 * time.Second
	DefaultMinRate      = 16 << 10 // bytes per second
	DefaultMaxMetadata  = 32 << 20 // bytes
	DefaultUserAgent    = "stork"
)

// Config configures a Client. Zero fields take the defaults above.
type Config struct {
	// URL is the repository base URL (http://host:port, optionally with a
	// path prefix). Required.
	URL string
	// Client is the HTTP client. The default has a tuned transport (many idle
	// connections per host, no transparent decompression) and no global
	// timeout: StallTimeout and MinRate bound each response instead.
	Client *http.Client
	// StallTimeout abandons a response that delivers no byte (headers
	// included) for this long. Default 15s.
	StallTimeout time.Duration
	// MinRate abandons a response delivering fewer bytes per second than
	// this over any StallTimeout window (slow retrieval). Default 16 KiB/s.
	MinRate int64
	// MaxMetadata caps Fetch when its maxLen is <= 0. Default 32 MiB.
	MaxMetadata int64
	// UserAgent is sent with each request. Default "stork".
	UserAgent string
}

// Client fetches metadata and chunks from a repository over HTTP. It is safe
// for concurrent use. It implements metadata's Fetcher and ChunkSource.
type Client struct {
	base   *url.URL
	client *http.Client
	cfg    Config
	// untagged: the last body sent for a FetchUnlessSame came without
	// Server's ETag of its bytes (ConfirmsCopies).
	untagged atomic.Bool
}

var (
	_ ChunkSource      = (*Client)(nil)
	_ verifyingSource  = (*Client)(nil)
	_ metadata.Fetcher = (*Client)(nil)
)

// verifiesChunks marks Client as checking each chunk's CID in FetchChunk.
func (o *Client) verifiesChunks() {}

// ChecksChunks tells the swarm that FetchChunk checks each chunk's CID
// (swarm.CheckedSource), so that it is hashed once.
func (o *Client) ChecksChunks() {}

// NewClient checks cfg, fills in defaults and returns a Client.
func NewClient(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("origin: no repository URL")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("origin: repository URL %q: %w", cfg.URL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("origin: repository URL %q: want http:// or https://HOST[/PREFIX]", cfg.URL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("origin: repository URL %q: no query, fragment or credentials allowed", cfg.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: defaultTransport()}
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.MinRate <= 0 {
		cfg.MinRate = DefaultMinRate
	}
	if cfg.MaxMetadata <= 0 {
		cfg.MaxMetadata = DefaultMaxMetadata
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	return &Client{base: u, client: cfg.Client, cfg: cfg}, nil
}

func defaultTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		// Bytes are hashed as sent; a gzip layer would only add a
		// decompression bomb to worry about.
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		ReadBufferSize:        256 << 10,
	}
}

// CloseIdleConnections closes the keep-alive connections the Client
// holds; call it when done with the Client.
func (o *Client) CloseIdleConnections() { o.client.CloseIdleConnections() }

// URL returns the repository base URL.
func (o *Client) URL() string { return o.base.String() }

// Fetch returns the file at path (relative to the repository URL), reading
// at most maxLen bytes (Config.MaxMetadata when maxLen <= 0). A 404 is
// an error wrapping metadata.ErrNotFound; a longer body one wrapping
// metadata.ErrTooLarge. Fetch implements metadata's Fetcher.
func (o *Client) Fetch(ctx context.Context, p string, maxLen int64) ([]byte, error) {
	if err := checkRelPath(p); err != nil {
		return nil, fmt.Errorf("origin fetch %q: %w", p, err)
	}
	if maxLen <= 0 {
		maxLen = o.cfg.MaxMetadata
	}
	return o.get(ctx, p, maxLen, false, nil)
}

// FetchUnlessSame is Fetch for a file that may change (timestamp.json)
// by a caller that holds a copy from elsewhere (a peer): it asks with
// If-None-Match the copy's ETag, and returns have itself when the origin
// answers 304, that is, when have is byte for byte the file it serves
// (Server's strong ETags). An origin without such ETags (nginx tags
// modification times) answers with the body, as Fetch. have nil: Fetch.
func (o *Client) FetchUnlessSame(ctx context.Context, p string, maxLen int64, have []byte) ([]byte, error) {
	if err := checkRelPath(p); err != nil {
		return nil, fmt.Errorf("origin fetch %q: %w", p, err)
	}
	if maxLen <= 0 {
		maxLen = o.cfg.MaxMetadata
	}
	return o.get(ctx, p, maxLen, false, have)
}

// ConfirmsCopies reports whether the origin answers FetchUnlessSame with
// a 304 for a copy that is the one it serves: true until a body came
// without the ETag of its bytes (an origin other than Server), and again
// once one came with it.
func (o *Client) ConfirmsCopies() bool { return !o.untagged.Load() }

// FetchChunk returns chunk c from URL/chunks/<cid>, reading at most size
// bytes, and verifies it against c (an error wrapping
// metadata.ErrHashMismatch if it does not match).
func (o *Client) FetchChunk(ctx context.Context, c cid.Cid, size int64) ([]byte, error) {
	if !c.Defined() {
		return nil, errors.New("origin fetch chunk: undefined CID")
	}
	if size < 0 || size > metadata.MaxChunkSize {
		return nil, fmt.Errorf("origin fetch chunk %s: size %d: %w (max %d)", c, size, metadata.ErrTooLarge, metadata.MaxChunkSize)
	}
	data, err := o.get(ctx, "chunks/"+c.String(), size, true, nil)
	if err != nil {
		return nil, err
	}
	if err := metadata.VerifyCID(c, data); err != nil {
		return nil, fmt.Errorf("origin %s: %w", o.base.Redacted(), err)
	}
	return data, nil
}

// checkRelPath refuses anything but a clean, relative, slash-separated path
// inside the repository.
func checkRelPath(p string) error {
	if p == "" || p == "." || path.IsAbs(p) || path.Clean(p) != p || strings.ContainsAny(p, "\\\x00") {
		return fmt.Errorf("%w: want a clean relative path", ErrUnsafePath)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return fmt.Errorf("%w: contains \"..\"", ErrUnsafePath)
		}
	}
	return nil
}

// get GETs base/rel. With exact, the body must be exactly limit bytes;
// otherwise at most limit bytes. It never buffers more than limit+1 bytes.
// With have, it asks If-None-Match have's ETag and returns have on 304.
func (o *Client) get(ctx context.Context, rel string, limit int64, exact bool, have []byte) ([]byte, error) {
	u := *o.base
	u.Path = o.base.Path + "/" + rel
	target := u.String()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := newWatchdog(o.cfg.StallTimeout, o.cfg.MinRate, cancel)
	defer w.stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", target, err)
	}
	req.Header.Set("User-Agent", o.cfg.UserAgent)
	if have != nil {
		req.Header.Set("If-None-Match", ETag(have))
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return nil, o.wrapErr(ctx, target, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		if have != nil && int64(len(have)) <= limit {
			o.untagged.Store(false)
			return have, nil
		}
		return nil, &StatusError{URL: target, Status: resp.StatusCode}
	case http.StatusNotFound:
		return nil, fmt.Errorf("GET %s: %w", target, metadata.ErrNotFound)
	default:
		return nil, &StatusError{URL: target, Status: resp.StatusCode}
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("GET %s: %w: Content-Length %d, limit %d", target, metadata.ErrTooLarge, resp.ContentLength, limit)
	}
	body := &countingReader{r: resp.Body, w: w}

	if exact {
		buf := make([]byte, limit)
		n, err := io.ReadFull(body, buf)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("GET %s: %w: got %d of %d bytes", target, ErrTruncated, n, limit)
			}
			return nil, o.wrapErr(ctx, target, err)
		}
		// One more byte would be too many: a body that never ends is cut here.
		var one [1]byte
		for {
			m, err := body.Read(one[:])
			if m > 0 {
				return nil, fmt.Errorf("GET %s: %w: body longer than %d bytes", target, metadata.ErrTooLarge, limit)
			}
			if err == io.EOF {
				return buf, nil
			}
			if err != nil {
				return nil, o.wrapErr(ctx, target, err)
			}
		}
	}

	var buf []byte
	if resp.ContentLength >= 0 {
		buf = make([]byte, 0, resp.ContentLength+1)
	}
	buf, err = readAllLimit(body, buf, limit+1)
	if err != nil {
		return nil, o.wrapErr(ctx, target, err)
	}
	if int64(len(buf)) > limit {
		return nil, fmt.Errorf("GET %s: %w: body longer than %d bytes", target, metadata.ErrTooLarge, limit)
	}
	if have != nil {
		o.untagged.Store(resp.Header.Get("ETag") != ETag(buf))
	}
	return buf, nil
}

// readAllLimit appends from r to buf until EOF or until buf holds max bytes.
func readAllLimit(r io.Reader, buf []byte, max int64) ([]byte, error) {
	for int64(len(buf)) < max {
		if len(buf) == cap(buf) {
			want := int64(cap(buf))*2 + 4096
			if want > max {
				want = max
			}
			nb := make([]byte, len(buf), want)
			copy(nb, buf)
			buf = nb
		}
		room := cap(buf)
		if int64(room) > max {
			room = int(max)
		}
		n, err := r.Read(buf[len(buf):room])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// wrapErr reports why a request failed: the watchdog's verdict, the
// caller's cancellation, or the transport error.
func (o *Client) wrapErr(ctx context.Context, target string, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return fmt.Errorf("GET %s: %w", target, cause)
	}
	return fmt.Errorf("GET %s: %w", target, err)
}

// countingReader tells the watchdog about every byte read.
type countingReader struct {
	r io.Reader
	w *watchdog
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.w.add(n)
	}
	return n, err
}

// watchdog cancels a request that stalls (no byte for stall) or is slow
// (fewer than minRate bytes/s over a stall-long window). It runs one
// goroutine, owned by the request and ended by stop.
type watchdog struct {
	bytes    atomic.Int64
	lastByte atomic.Int64 // unix nanoseconds
	done     chan struct{}
	wg       sync.WaitGroup
}

func newWatchdog(stall time.Duration, minRate int64, cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{done: make(chan struct{})}
	start := time.Now()
	w.lastByte.Store(start.UnixNano())
	tick := stall / 8
	if tick < 5*time.Millisecond {
		tick = 5 * time.Millisecond
	}
	if tick > time.Second {
		tick = time.Second
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		winStart, winBytes := start, int64(0)
		for {
			select {
			case <-w.done:
				return
			case now := <-t.C:
				if idle := now.Sub(time.Unix(0, w.lastByte.Load())); idle >= stall {
					cancel(fmt.Errorf("%w: no data for %v", ErrStalled, idle.Round(time.Millisecond)))
					return
				}
				if el := now.Sub(winStart); el >= stall {
					n := w.bytes.Load()
					rate := float64(n-winBytes) / el.Seconds()
					if rate < float64(minRate) {
						cancel(fmt.Errorf("%w: %.0f bytes/s over %v, minimum %d", ErrSlow, rate, el.Round(time.Millisecond), minRate))
						return
					}
					winStart, winBytes = now, n
				}
			}
		}
	}()
	return w
}

func (w *watchdog) add(n int) {
	w.bytes.Add(int64(n))
	w.lastByte.Store(time.Now().UnixNano())
}

func (w *watchdog) stop() {
	close(w.done)
	w.wg.Wait()
}
