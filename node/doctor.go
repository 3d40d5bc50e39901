package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/sys/unix"
)

// Doctor checks a host for what keeps the daemon from running well and
// says what to fix. Each check is a function returning findings; a finding
// at LevelFail blocks the daemon (stork doctor then exits non-zero).

// Levels of a Finding.
const (
	LevelOK   = "ok"
	LevelWarn = "warn"
	LevelFail = "fail"
)

// Finding is one line of stork doctor.
type Finding struct {
	Check   string `json:"check"`
	Level   string `json:"level"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// DoctorConfig says what to check.
type DoctorConfig struct {
	DataDir   string
	RepoURL   string   // "" skips the origin and clock checks
	Bootstrap []string // multiaddrs
	// ConnHigh is the swarm's connection high watermark (descriptors it may
	// hold); 0 without a swarm.
	ConnHigh int
	// MinFree is the free space (bytes) below which the data directory's
	// file system fails the check; below 10% of its size it warns.
	MinFree int64
	// MaxSkew is the clock difference with the origin above which the
	// clock check fails (default 5m); above a tenth of it, it warns.
	MaxSkew time.Duration
	// Timeout bounds each network check (default 5s).
	Timeout time.Duration
	Now     func() time.Time
}

func (c DoctorConfig) withDefaults() DoctorConfig {
	if c.MaxSkew <= 0 {
		c.MaxSkew = 5 * time.Minute
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Doctor runs every check.
func Doctor(ctx context.Context, cfg DoctorConfig) []Finding {
	cfg = cfg.withDefaults()
	var out []Finding
	out = append(out, CheckDataDir(cfg.DataDir)...)
	out = append(out, CheckSpace(cfg.DataDir, cfg.MinFree)...)
	out = append(out, CheckOrigin(ctx, cfg)...)
	out = append(out, CheckBootstrap(ctx, cfg.Bootstrap, cfg.Timeout)...)
	out = append(out, CheckViews(cfg.DataDir)...)
	out = append(out, CheckNoFile(cfg.DataDir, cfg.ConnHigh)...)
	return out
}

func ok(check, format string, args ...any) Finding {
	return Finding{Check: check, Level: LevelOK, Message: fmt.Sprintf(format, args...)}
}

func finding(level, check, fix, format string, args ...any) Finding {
	return Finding{Check: check, Level: level, Message: fmt.Sprintf(format, args...), Fix: fix}
}

// CheckDataDir checks that the data directory (and what the daemon keeps
// in it) belongs to the user running the check, the daemon's user, and
// that no one else may write it; a missing directory is fine when its
// parent lets the daemon create it.
func CheckDataDir(dir string) []Finding {
	const check = "data"
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		parent := filepath.Dir(filepath.Clean(dir))
		if err := unix.Access(parent, unix.W_OK|unix.X_OK); err != nil {
			return []Finding{finding(LevelFail, check, fmt.Sprintf("create %s as the daemon's user (install -d -m 0755 %s)", dir, dir),
				"%s does not exist and %s is not writable: %v", dir, parent, err)}
		}
		return []Finding{ok(check, "%s does not exist yet; the daemon creates it", dir)}
	}
	if err != nil {
		return []Finding{finding(LevelFail, check, "", "%s: %v", dir, err)}
	}
	if !fi.IsDir() {
		return []Finding{finding(LevelFail, check, "point --data at a directory", "%s is not a directory", dir)}
	}
	out := []Finding{}
	uid := uint32(os.Geteuid())
	for _, p := range []struct {
		path   string
		secret bool // readable by its owner only
	}{{dir, false}, {filepath.Join(dir, "store"), false}, {filepath.Join(dir, "tuf"), false}, {filepath.Join(dir, "identity.key"), true}, {filepath.Join(dir, "vms.json"), false}} {
		fi, err := os.Lstat(p.path)
		if err != nil {
			continue // made by the daemon when it needs it
		}
		st := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		switch {
		case st.Uid != uid:
			out = append(out, finding(LevelFail, check, fmt.Sprintf("chown -R %d %s (or run the daemon as uid %d)", uid, dir, st.Uid),
				"%s belongs to uid %d, not to uid %d running this check", p.path, st.Uid, uid))
		case mode&0o022 != 0:
			out = append(out, finding(LevelFail, check, fmt.Sprintf("chmod go-w %s", p.path),
				"%s is writable by others (mode %04o): they could change what VMs are given", p.path, mode))
		case p.secret && mode&0o077 != 0:
			out = append(out, finding(LevelFail, check, fmt.Sprintf("chmod 0600 %s", p.path),
				"%s (the host's peer identity) is readable by others (mode %04o)", p.path, mode))
		}
	}
	if len(out) == 0 {
		out = append(out, ok(check, "%s: owned by uid %d, mode %04o, not writable by others", dir, uid, fi.Mode().Perm()))
	}
	return out
}

// CheckSpace checks the free space and inodes of the file system holding
// the data directory (or the nearest existing parent).
func CheckSpace(dir string, minFree int64) []Finding {
	const check = "space"
	p := existingParent(dir)
	var s unix.Statfs_t
	if err := unix.Statfs(p, &s); err != nil {
		return []Finding{finding(LevelFail, check, "", "statfs %s: %v", p, err)}
	}
	free := int64(s.Bavail) * int64(s.Bsize)
	size := int64(s.Blocks) * int64(s.Bsize)
	fix := fmt.Sprintf("free space on the file system of %s (stork gc --partial removes what nothing uses), or move --data", p)
	var out []Finding
	switch {
	case free < minFree:
		out = append(out, finding(LevelFail, check, fix, "%s: %s free of %s, below the %s the daemon needs", p, bytesIEC(free), bytesIEC(size), bytesIEC(minFree)))
	case free < size/10:
		out = append(out, finding(LevelWarn, check, fix, "%s: %s free of %s (under 10%%)", p, bytesIEC(free), bytesIEC(size)))
	default:
		out = append(out, ok(check, "%s: %s free of %s", p, bytesIEC(free), bytesIEC(size)))
	}
	// Every stored file is an inode, and every tree directory; a file
	// system without inode accounting reports zero files.
	const minInodes = 10000
	if s.Files > 0 {
		ifix := fmt.Sprintf("the file system of %s has too few inodes for many small files: move --data to one with more (mkfs -N, or xfs/btrfs)", p)
		switch {
		case s.Ffree < minInodes:
			out = append(out, finding(LevelFail, check, ifix, "%s: %d inodes free of %d, below %d", p, s.Ffree, s.Files, minInodes))
		case s.Ffree < s.Files/10:
			out = append(out, finding(LevelWarn, check, ifix, "%s: %d inodes free of %d (under 10%%)", p, s.Ffree, s.Files))
		default:
			out = append(out, ok(check, "%s: %d inodes free of %d", p, s.Ffree, s.Files))
		}
	}
	return out
}

func existingParent(dir string) string {
	p := filepath.Clean(dir)
	for {
		if _, err := os.Stat(p); err == nil || p == "/" || p == "." {
			return p
		}
		p = filepath.Dir(p)
	}
}

// CheckOrigin fetches the repository's timestamp: the origin must answer,
// the signed timestamp must not have expired by this host's clock, and the
// clock must agree with the origin's (its HTTP Date).
func CheckOrigin(ctx context.Context, cfg DoctorConfig) []Finding {
	cfg = cfg.withDefaults()
	if cfg.RepoURL == "" {
		return []Finding{finding(LevelWarn, "origin", "set --repo (repo.url in the configuration file)", "no repository URL configured: origin and clock not checked")}
	}
	url := strings.TrimSuffix(cfg.RepoURL, "/") + "/metadata/timestamp.json"
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return []Finding{finding(LevelFail, "origin", "fix --repo", "%s: %v", cfg.RepoURL, err)}
	}
	start := cfg.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return []Finding{finding(LevelFail, "origin", "check the URL, the network and the repository server (stork repo serve, nginx)", "%s unreachable: %v", cfg.RepoURL, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return []Finding{finding(LevelFail, "origin", "check that --repo is the repository's base URL (it serves metadata/timestamp.json)",
			"%s: HTTP %d (%v)", url, resp.StatusCode, err)}
	}
	out := []Finding{ok("origin", "%s answers (timestamp in %s)", cfg.RepoURL, cfg.Now().Sub(start).Round(time.Millisecond))}
	return append(out, checkClock(cfg, resp.Header.Get("Date"), body, start)...)
}

// checkClock compares this host's clock with the origin's Date and with
// the expiry of the signed timestamp.
func checkClock(cfg DoctorConfig, date string, timestamp []byte, sent time.Time) []Finding {
	const check = "clock"
	now := cfg.Now()
	fix := "synchronise the clock (chrony, systemd-timesyncd) with the repository's"
	var out []Finding
	if d, err := http.ParseTime(date); err == nil {
		// Date has a one-second resolution; the request took some time.
		skew := sent.Add(now.Sub(sent) / 2).Sub(d)
		abs := max(skew, -skew)
		switch {
		case abs > cfg.MaxSkew:
			out = append(out, finding(LevelFail, check, fix, "this host's clock is %s %s the origin's: signed metadata may look expired, or stay trusted after it expired", abs.Round(time.Second), aheadBehind(skew)))
		case abs > cfg.MaxSkew/10:
			out = append(out, finding(LevelWarn, check, fix, "this host's clock is %s %s the origin's", abs.Round(time.Second), aheadBehind(skew)))
		default:
			out = append(out, ok(check, "within %s of the origin's clock", max(abs.Round(time.Second), time.Second)))
		}
	}
	var ts struct {
		Signed struct {
			Version int64     `json:"version"`
			Expires time.Time `json:"expires"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(timestamp, &ts); err != nil {
		return append(out, finding(LevelFail, check, "check that --repo is a Stork repository", "the origin's timestamp.json does not parse: %v", err))
	}
	if now.After(ts.Signed.Expires) {
		return append(out, finding(LevelFail, check, "re-sign the timestamp (stork repo refresh) if it is stale, or fix this host's clock",
			"the repository's signed timestamp (version %d) expired at %s, %s ago by this host's clock: the daemon refuses the metadata",
			ts.Signed.Version, ts.Signed.Expires.UTC().Format(time.RFC3339), now.Sub(ts.Signed.Expires).Round(time.Second)))
	}
	return append(out, ok(check, "the signed timestamp (version %d) is valid until %s", ts.Signed.Version, ts.Signed.Expires.UTC().Format(time.RFC3339)))
}

func aheadBehind(skew time.Duration) string {
	if skew > 0 {
		return "ahead of"
	}
	return "behind"
}

// CheckBootstrap dials every bootstrap peer's TCP address (a QUIC or other
// address is not checked). One unreachable peer warns; none reachable
// fails.
func CheckBootstrap(ctx context.Context, addrs []string, timeout time.Duration) []Finding {
	const check = "bootstrap"
	if len(addrs) == 0 {
		return []Finding{ok(check, "no bootstrap peers: this host starts a testbed (others bootstrap from it)")}
	}
	var out []Finding
	reached, tried := 0, 0
	for _, a := range addrs {
		hostport, err := tcpHostPort(a)
		if err != nil {
			out = append(out, finding(LevelWarn, check, "", "%s: not checked: %v", a, err))
			continue
		}
		tried++
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, "tcp", hostport)
		if err != nil {
			out = append(out, finding(LevelWarn, check, "start the daemon there, or fix the address (stork status there prints it) and the firewall", "%s unreachable: %v", a, err))
			continue
		}
		c.Close()
		reached++
		out = append(out, ok(check, "%s reachable", a))
	}
	if tried > 0 && reached == 0 {
		out = append(out, finding(LevelFail, check, "at least one bootstrap peer must be up for this host to join the swarm", "no bootstrap peer reachable"))
	}
	return out
}

// tcpHostPort returns host:port of a /ip4|ip6|dns*/.../tcp/PORT multiaddr.
func tcpHostPort(addr string) (string, error) {
	m, err := ma.NewMultiaddr(addr)
	if err != nil {
		return "", err
	}
	var host, port string
	ma.ForEach(m, func(c ma.Component) bool {
		switch c.Protocol().Code {
		case ma.P_IP4, ma.P_IP6, ma.P_DNS, ma.P_DNS4, ma.P_DNS6:
			host = c.Value()
		case ma.P_TCP:
			port = c.Value()
		}
		return true
	})
	if host == "" || port == "" {
		return "", errors.New("not a TCP address")
	}
	return net.JoinHostPort(host, port), nil
}
