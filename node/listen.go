package node

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The local API is served on Unix sockets: the admin socket and one per
// VM. No client of them may starve the others, however it behaves:
//
//   - Time. A request must arrive whole (headers and body) within
//     ReadTimeout; each write of a response (a short answer, or one line of
//     a streamed install or fetch) must be taken within WriteTimeout; a
//     kept-alive connection with no request closes after IdleTimeout.
//   - Memory. Headers are at most maxHeaderBytes and bodies at most
//     maxRequestBody, read whole before the handler runs (guard).
//   - Connections. Each socket takes at most its cap of connections at once
//     (a VM's ConnsPerVM, the admin's AdminConns) and all VM sockets
//     together at most a budget taken from RLIMIT_NOFILE, which leaves half
//     of the descriptors to the store and the swarm and the admin's share
//     to the admin. A connection over a cap is accepted, answered 503
//     (code "busy") and closed at once, so that a flood neither queues in
//     the kernel nor waits for a slot.

// Defaults for APILimits, and the fixed limits.
const (
	defaultAPIReadTimeout  = 10 * time.Second
	defaultAPIWriteTimeout = 30 * time.Second
	defaultAPIIdleTimeout  = time.Minute
	defaultConnsPerVM      = 32
	defaultAdminConns      = 1024
	maxHeaderBytes         = 16 << 10
	// maxVMConns caps the VM sockets' connections together whatever
	// RLIMIT_NOFILE allows: each holds at most maxHeaderBytes +
	// maxRequestBody of request and two goroutines.
	maxVMConns = 2048
)

// APILimits bounds what the clients of the local API sockets may hold.
// Zero fields take the defaults.
type APILimits struct {
	// ReadTimeout bounds reading one request, headers and body; a client
	// that promises a body and never sends it is dropped then (default 10s).
	ReadTimeout time.Duration
	// WriteTimeout bounds each write of a response: a whole short answer,
	// or one progress line of a streamed install or fetch, so a long
	// download is never cut but a client that stops reading is dropped
	// (default 30s).
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends no request
	// (default 1m).
	IdleTimeout time.Duration
	// ConnsPerVM caps the connections open at once on one VM's socket
	// (default 32).
	ConnsPerVM int
	// AdminConns caps the connections open at once on the admin socket
	// (default 1024: only root reaches it, and a fetch or install holds its
	// connection while it runs). They never count against the VMs' budget.
	AdminConns int
}

func (l APILimits) withDefaults() APILimits {
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = defaultAPIReadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = defaultAPIWriteTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = defaultAPIIdleTimeout
	}
	if l.ConnsPerVM <= 0 {
		l.ConnsPerVM = defaultConnsPerVM
	}
	if l.AdminConns <= 0 {
		l.AdminConns = defaultAdminConns
	}
	return l
}

// connBudget divides the process's file descriptors between the store and
// the swarm (Reserve, never taken by a socket), the admin socket and the
// VM sockets.
type connBudget struct {
	NoFile  uint64 // RLIMIT_NOFILE
	Reserve uint64
	Admin   int
	VMs     int // all VM sockets together
	PerVM   int
}

// newConnBudget keeps half of nofile in reserve and gives the admin its
// cap (at most a quarter of the rest) before the VMs get what remains, at
// most maxVMConns; every share is at least one connection.
func newConnBudget(nofile uint64, l APILimits) connBudget {
	b := connBudget{NoFile: nofile, Reserve: nofile / 2}
	rest := nofile - b.Reserve
	b.Admin = int(max(min(uint64(l.AdminConns), rest/4), 1))
	b.VMs = int(max(min(rest-min(rest, uint64(b.Admin)), maxVMConns), 1))
	b.PerVM = max(min(l.ConnsPerVM, b.VMs), 1)
	return b
}

// raiseNoFile raises the soft RLIMIT_NOFILE to the hard limit (the
// descriptors the daemon may use are the hard limit, whatever its parent
// left) and returns the soft limit then in force.
func raiseNoFile() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		raised := unix.Rlimit{Cur: rl.Max, Max: rl.Max}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err == nil {
			rl = raised
		}
	}
	return rl.Cur, nil
}

// connSlots counts connections against a cap; several listeners may share
// one (the VM sockets' budget).
type connSlots struct {
	max int64
	n   atomic.Int64
}

func newConnSlots(n int) *connSlots { return &connSlots{max: int64(n)} }

func (s *connSlots) take() bool {
	if s.n.Add(1) > s.max {
		s.n.Add(-1)
		return false
	}
	return true
}

func (s *connSlots) give() { s.n.Add(-1) }

// limitListener accepts a connection only if every one of its slots has
// room, and otherwise closes it at once.
type limitListener struct {
	net.Listener
	slots []*connSlots
	log   *slog.Logger

	mu       sync.Mutex
	refused  int64
	loggedAt time.Time
}

func newLimitListener(ln net.Listener, log *slog.Logger, slots ...*connSlots) *limitListener {
	return &limitListener{Listener: ln, slots: slots, log: log}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.take() {
			return &slotConn{Conn: c, give: l.give}, nil
		}
		refuse(c)
		l.noteRefused()
	}
}

// busyResponse is the answer to a connection over its socket's cap.
var busyResponse = func() []byte {
	body := `{"error":"too many connections on this socket","code":"busy"}` + "\n"
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}()

// refuse answers c with busyResponse, without waiting: a fresh socket's
// send buffer takes it whole, and a client that is gone is no concern.
func refuse(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	_, _ = c.Write(busyResponse)
	_ = c.Close()
}

func (l *limitListener) take() bool {
	for k, s := range l.slots {
		if !s.take() {
			for _, t := range l.slots[:k] {
				t.give()
			}
			return false
		}
	}
	return true
}

func (l *limitListener) give() {
	for _, s := range l.slots {
		s.give()
	}
}

// noteRefused counts a refused connection and logs the count at most once
// a minute.
func (l *limitListener) noteRefused() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refused++
	if now := time.Now(); now.Sub(l.loggedAt) >= time.Minute {
		l.loggedAt = now
		l.log.Warn("api connections refused: too many open", "socket", l.Addr().String(), "refused", l.refused)
	}
}

// slotConn gives its slots back once, when it is closed.
type slotConn struct {
	net.Conn
	once sync.Once
	give func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.give)
	return err
}

// newAPIServer is the one place that builds an HTTP server for a local API
// socket: every timeout of APILimits, small headers, and guard around h.
func newAPIServer(h http.Handler, l APILimits, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           guard(h, l.WriteTimeout),
		ReadHeaderTimeout: l.ReadTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}
