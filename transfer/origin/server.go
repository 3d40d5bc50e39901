package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Dir is the repository directory to serve. Required.
	Dir string
	// Logger receives one Debug record per request and Info on start and
	// stop. Default: discard.
	Logger *slog.Logger
	// Rate caps the bytes per second the server sends, over all requests
	// together (a token bucket); 0 is unlimited. It lets a testbed give the
	// origin a known capacity, as the simulator assumes.
	Rate int64
}

// Server is a static, read-only HTTP server of a repository directory
// (`stork repo serve`). Anything nginx or object storage would do works as
// well; this one exists so a repository needs nothing but the stork binary.
type Server struct {
	dir  string
	log  *slog.Logger
	rate *rate.Limiter // nil: unlimited
}

// NewServer checks that cfg.Dir is a directory and returns a Server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("server: no repository directory")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("server: repository directory %q: %w", cfg.Dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("server: repository directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("server: repository directory %q is not a directory", cfg.Dir)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &Server{dir: dir, log: log.With("component", "repo-server")}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("server: rate %d: must not be negative", cfg.Rate)
	}
	if cfg.Rate > 0 {
		srv.rate = rate.NewLimiter(rate.Limit(cfg.Rate), int(min(cfg.Rate, serverRateBurst)))
	}
	return srv, nil
}

// serverRateBurst is the largest write a rate-limited response makes at once.
const serverRateBurst = 64 << 10

// limitedWriter paces a response through the server's token bucket.
type limitedWriter struct {
	http.ResponseWriter
	ctx context.Context
	lim *rate.Limiter
}

func (l limitedWriter) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		k := min(len(p), l.lim.Burst())
		if err := l.lim.WaitN(l.ctx, k); err != nil {
			return n, err
		}
		w, err := l.ResponseWriter.Write(p[:k])
		n += w
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// Handler serves GET and HEAD of regular files under Dir, with
// Content-Length, Range and conditional requests. Directories, paths with
// ".." or not in clean form, and symlinks leaving Dir are not served.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serve)
}

// versioned matches TUF's consistent-snapshot names such as 3.root.json.
var versioned = regexp.MustCompile(`^[0-9]+\.[^/]+\.json$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if s.rate != nil {
		w = limitedWriter{ResponseWriter: w, ctx: r.Context(), lim: s.rate}
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	s.serveFile(sw, r)
	s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "remote", r.RemoteAddr)
}

// statusWriter records the status a response was sent with (a 304 or a
// 206 from ServeContent as well as the errors), keeping the underlying
// writer's ReadFrom (sendfile).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, "/")
	if !ok || name == "" || strings.HasSuffix(name, "/") {
		http.NotFound(w, r)
		return
	}
	if err := checkRelPath(name); err != nil {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	// os.Root resolves every component below Dir and refuses any symlink
	// that leads out of it.
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		s.log.Error("open repository directory", "dir", s.dir, "err", err)
		http.Error(w, "repository unavailable", http.StatusInternalServerError)
		return
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	mutable := false
	switch base := path.Base(name); {
	case base == "timestamp.json":
		h.Set("Cache-Control", "no-cache")
		mutable = true
	case strings.HasPrefix(name, "chunks/"), strings.HasPrefix(name, "manifests/"), versioned.MatchString(base):
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	case strings.HasSuffix(base, ".json"):
		h.Set("Cache-Control", "no-cache")
		mutable = true
	}
	switch {
	case strings.HasSuffix(name, ".json"):
		h.Set("Content-Type", "application/json")
	default:
		h.Set("Content-Type", "application/octet-stream")
	}
	h.Set("X-Content-Type-Options", "nosniff")
	if mutable && fi.Size() <= maxTaggedFile {
		// A file that may change gets the strong ETag of its bytes, so
		// that a host holding a copy from anywhere (a peer) learns with
		// a 304 and no body that it is the one served (ServeContent
		// answers If-None-Match from it).
		b, err := io.ReadAll(io.LimitReader(f, maxTaggedFile+1))
		if err != nil || int64(len(b)) > maxTaggedFile {
			http.Error(w, "read failed", http.StatusInternalServerError)
			return
		}
		h.Set("ETag", ETag(b))
		http.ServeContent(w, r, "", fi.ModTime(), bytes.NewReader(b))
		return
	}
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// maxTaggedFile bounds the files that get an ETag (read whole to hash
// them): top-level metadata is a few KB.
const maxTaggedFile = 1 << 20

// ETag is the strong entity tag Server gives a file that may change
// (timestamp.json and other unversioned metadata): the SHA-256 of its
// bytes. A client sends it in If-None-Match to learn, without the body,
// that a copy it holds is byte for byte the one served
// (Client.FetchUnlessSame).
func ETag(b []byte) string {
	sum := sha256.Sum256(b)
	return `"sha256-` + hex.EncodeToString(sum[:]) + `"`
}

// Run serves on ln until ctx ends, then shuts down gracefully (in-flight
// requests get a few seconds) and returns nil. It returns an error if
// serving fails first. Run closes ln.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.log.Info("serving repository", "dir", s.dir, "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close()
	}
	<-errc // http.ErrServerClosed
	s.log.Info("stopped serving repository", "addr", ln.Addr().String())
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shut down server: %w", err)
	}
	return nil
}
