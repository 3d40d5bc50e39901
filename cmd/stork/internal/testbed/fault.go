package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// fault is what a fault run does to the testbed: before the fetches start,
// at every poll while they run, and after they ended (undoing it).
type fault struct {
	targets map[string]bool // hosts it is aimed at
	before  func(context.Context, *runState) error
	tick    func(context.Context, *runState) error
	after   func(context.Context, *runState)
	log     []string
}

// note records what the fault did, with the time since the start.
func (f *fault) note(s *runState, format string, args ...any) {
	t := 0.0
	if !s.t0.IsZero() {
		t = s.since()
	}
	f.log = append(f.log, fmt.Sprintf("%.1f s: ", t)+fmt.Sprintf(format, args...))
}

// fault builds the named fault for this testbed, or says why it cannot be
// done here.
func (b *bed) fault(name string) (*fault, string) {
	hosts := b.plan.Hosts()
	switch name {
	case RunLinkDown:
		if len(hosts) < 2 {
			return nil, "needs two hosts"
		}
		return b.linkDown(hosts[b.cfg.Sites[0]-1]), ""
	case RunSiteCut:
		if len(b.cfg.Sites) < 2 {
			return nil, "needs two sites"
		}
		return b.siteCut(len(b.cfg.Sites)), ""
	case RunOriginStop:
		return b.originStop(), ""
	case RunSlowHost:
		if len(hosts) < 2 {
			return nil, "needs two hosts"
		}
		h := hosts[len(hosts)-1]
		if len(b.cfg.Sites) > 1 {
			h = hosts[b.cfg.Sites[0]] // the first host of site 2
		}
		return b.slowHost(h), ""
	}
	return nil, "unknown fault"
}

// linkDown takes h's link down once h holds a quarter of the package, and
// up again cfg.LinkDownFor later.
func (b *bed) linkDown(h Host) *fault {
	f := &fault{targets: map[string]bool{h.Name: true}}
	var downAt time.Time
	up := false
	f.tick = func(ctx context.Context, s *runState) error {
		switch {
		case downAt.IsZero() && s.have[h.Name] >= b.pkg.Bytes/4:
			if err := b.net.SetLink(ctx, h, false); err != nil {
				return err
			}
			downAt = time.Now()
			f.note(s, "%s link down (holding %d%%)", h.Name, 100*s.have[h.Name]/b.pkg.Bytes)
		case !downAt.IsZero() && !up && time.Since(downAt) >= b.cfg.LinkDownFor:
			if err := b.net.SetLink(ctx, h, true); err != nil {
				return err
			}
			up = true
			f.note(s, "%s link up (holding %d%%)", h.Name, 100*s.have[h.Name]/b.pkg.Bytes)
		}
		return nil
	}
	f.after = func(ctx context.Context, s *runState) {
		if !downAt.IsZero() && !up {
			_ = b.net.SetLink(ctx, h, true)
			f.note(s, "%s link up after the run", h.Name)
		}
		if downAt.IsZero() {
			f.note(s, "%s never held a quarter of the package: link not taken down", h.Name)
		}
	}
	return f
}

// siteCut cuts site site off from the repository site (not from the other
// sites) once its hosts hold a fifth of the package on average, until the
// run ends.
func (b *bed) siteCut(site int) *fault {
	f := &fault{targets: map[string]bool{}}
	var members []string
	for _, h := range b.plan.Hosts() {
		if h.Site == site {
			members = append(members, h.Name)
			f.targets[h.Name] = true
		}
	}
	cut := false
	f.tick = func(ctx context.Context, s *runState) error {
		if cut {
			return nil
		}
		var sum int64
		for _, m := range members {
			sum += s.have[m]
		}
		if sum/int64(len(members)) < b.pkg.Bytes/5 {
			return nil
		}
		if err := b.net.CutSite(ctx, site, true); err != nil {
			return err
		}
		cut = true
		f.note(s, "site s%d cut off from the repository site (its hosts holding %d%% on average)", site, 100*sum/int64(len(members))/b.pkg.Bytes)
		return nil
	}
	f.after = func(ctx context.Context, s *runState) {
		if cut {
			_ = b.net.CutSite(ctx, site, false)
			f.note(s, "site s%d reconnected after the run", site)
		} else {
			f.note(s, "site s%d never held a fifth of the package: not cut", site)
		}
	}
	return f
}

// originStop stops the origin once the overlay holds a whole copy: when
// its request log shows every chunk of the repository served whole at least
// once, and originDrain more for the last responses to leave the sockets.
// A response a host cancelled is logged too; a host cancels a chunk only
// once a peer has delivered it, so the overlay holds it either way.
func (b *bed) originStop() *fault {
	f := &fault{targets: map[string]bool{}}
	const originDrain = 2 * time.Second
	var all time.Time
	stopped := false
	f.tick = func(ctx context.Context, s *runState) error {
		if stopped {
			return nil
		}
		if all.IsZero() {
			served, want, err := b.servedChunks(s.originLog)
			if err != nil || served < want {
				return err
			}
			all = time.Now()
			f.note(s, "origin has served each of the %d chunks", want)
		}
		if time.Since(all) < originDrain {
			return nil
		}
		var sum int64
		for _, v := range s.fromOrigin {
			sum += v
		}
		s.origin.stop(5 * time.Second)
		stopped = true
		f.note(s, "origin stopped (the hosts had kept %.3f copies from it)", float64(sum)/float64(b.pkg.Bytes))
		return nil
	}
	f.after = func(_ context.Context, s *runState) {
		switch {
		case !stopped && all.IsZero():
			f.note(s, "the origin never served every chunk: not stopped")
		case !stopped:
			f.note(s, "the hosts completed before the origin was stopped")
		}
	}
	return f
}

// slowHost caps h's link at cfg.SlowRate for the whole run.
func (b *bed) slowHost(h Host) *fault {
	f := &fault{targets: map[string]bool{h.Name: true}}
	f.before = func(ctx context.Context, s *runState) error {
		if err := b.net.SetHostRate(ctx, h, b.cfg.SlowRate); err != nil {
			return err
		}
		f.note(s, "%s link at %s both ways", h.Name, FormatBits(b.cfg.SlowRate))
		return nil
	}
	f.after = func(ctx context.Context, s *runState) {
		_ = b.net.SetHostRate(ctx, h, b.cfg.Rates.Host)
	}
	return f
}

// chunkServed matches a chunk the origin served whole in a text log line.
var chunkServed = regexp.MustCompile(`method=GET path=/chunks/([A-Za-z0-9]+) status=200`)

// servedChunk returns the chunk a line of the origin's log (slog text or
// JSON) shows served whole, or "".
func servedChunk(line []byte) string {
	if len(line) > 0 && line[0] == '{' {
		var e struct {
			Msg, Method, Path string
			Status            int
		}
		if json.Unmarshal(line, &e) != nil || e.Msg != "request" || e.Method != "GET" || e.Status != 200 {
			return ""
		}
		c, _ := strings.CutPrefix(e.Path, "/chunks/")
		if c == e.Path || strings.Contains(c, "/") {
			return ""
		}
		return c
	}
	if m := chunkServed.FindSubmatch(line); m != nil {
		return string(m[1])
	}
	return ""
}

// servedChunks counts the distinct chunks the origin log shows served whole,
// and the chunks the repository holds.
func (b *bed) servedChunks(log string) (served, want int, err error) {
	ents, err := os.ReadDir(filepath.Join(b.repo, "chunks"))
	if err != nil {
		return 0, 0, fmt.Errorf("testbed: %w", err)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		return 0, 0, fmt.Errorf("testbed: %w", err)
	}
	seen := map[string]bool{}
	for _, l := range bytes.Split(data, []byte("\n")) {
		if c := servedChunk(l); c != "" {
			seen[c] = true
		}
	}
	return len(seen), len(ents), nil
}
