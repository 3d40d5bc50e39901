package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/storkpm/stork/node"
)

func topCommand() *cli.Command {
	return &cli.Command{
		Name:      "top",
		Usage:     "a terminal view of the daemon, refreshed every second: peers, downloads with progress and their peers/origin split, rates, offload (q quits)",
		UsageText: "stork top --data DIR",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.DurationFlag{Name: "interval", Usage: "refresh every `DURATION`", Category: catOutput, EnvVars: env("top-interval"), Value: time.Second},
		},
		Action: func(c *cli.Context) error {
			if c.Duration("interval") < 100*time.Millisecond {
				return usageError(c, "--interval %s: want at least 100ms", c.Duration("interval"))
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runTop(ctx, c.String("data"), c.Duration("interval"), c.App.Writer)
		},
	}
}

// runTop draws the view on w every interval until ctx ends or q (or
// Ctrl-C) is typed on a terminal stdin.
func runTop(ctx context.Context, data string, interval time.Duration, w io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if isTerminal(os.Stdin) {
		old, err := term.MakeRaw(int(os.Stdin.Fd()))
		if err == nil {
			defer func() { _ = term.Restore(int(os.Stdin.Fd()), old) }()
			go readQuit(os.Stdin, cancel)
		}
	}
	if isTerminal(w) {
		// The alternate screen, without a cursor; both restored on exit.
		fmt.Fprint(w, "\x1b[?1049h\x1b[?25l")
		defer fmt.Fprint(w, "\x1b[?25h\x1b[?1049l")
	}
	cl := node.NewClient(data)
	var prev *topSample
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		qctx, qcancel := context.WithTimeout(ctx, interval)
		st, err := cl.Status(qctx)
		qcancel()
		cur := &topSample{at: time.Now(), st: st}
		if err != nil {
			cur = nil
		}
		frame := renderTop(data, cur, prev, err)
		fmt.Fprint(w, "\x1b[H\x1b[2J"+strings.ReplaceAll(frame, "\n", "\r\n"))
		if cur != nil {
			prev = cur
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// readQuit cancels when q, Q or Ctrl-C (raw mode: no signal) is read.
func readQuit(r io.Reader, cancel func()) {
	b := make([]byte, 16)
	for {
		n, err := r.Read(b)
		if err != nil {
			return
		}
		for _, c := range b[:n] {
			if c == 'q' || c == 'Q' || c == 3 {
				cancel()
				return
			}
		}
	}
}

// topSample is one status read and when.
type topSample struct {
	at time.Time
	st *node.Status
}

// renderTop draws one frame from the current and the previous sample;
// rates need both.
func renderTop(data string, cur, prev *topSample, err error) string {
	var b strings.Builder
	now := time.Now()
	fmt.Fprintf(&b, "stork top  %s  %s  (q quits)\n", data, now.Format("15:04:05"))
	if cur == nil {
		fmt.Fprintf(&b, "\n%s\nretrying every second\n", oneLine(err))
		return b.String()
	}
	st := cur.st
	fmt.Fprintf(&b, "peer %s  %d peers  metadata v%d %s\n", orDash(shortID(st.PeerID)), st.Peers, st.Metadata.Version, refreshedAgo(st.Metadata.Refreshed, now))
	if prev != nil && cur.at.After(prev.at) {
		dt := cur.at.Sub(prev.at).Seconds()
		peers := float64(st.BytesFromPeers-prev.st.BytesFromPeers) / dt
		origin := float64(st.BytesFromOrigin-prev.st.BytesFromOrigin) / dt
		up := float64(st.BytesUploaded-prev.st.BytesUploaded) / dt
		fmt.Fprintf(&b, "download %s/s (peers %s/s, origin %s/s)  upload %s/s\n", human(peers+origin), human(peers), human(origin), human(up))
	} else {
		fmt.Fprintln(&b, "download -  upload -  (rates after the next refresh)")
	}
	total := st.BytesFromPeers + st.BytesFromOrigin
	fmt.Fprintf(&b, "offload %s from peers  (since start: peers %s, origin %s, uploaded %s)\n",
		percent(st.BytesFromPeers, total), human(float64(st.BytesFromPeers)), human(float64(st.BytesFromOrigin)), human(float64(st.BytesUploaded)))
	broken := 0
	for _, v := range st.Views {
		if v.State != "ok" {
			broken++
		}
	}
	fmt.Fprintf(&b, "store %d packages  %d VMs  %d views (%d broken)  %d damaged objects\n",
		len(st.Packages), len(st.VMs), len(st.Views), broken, st.Store.DamagedObjects)
	fmt.Fprintf(&b, "\nDOWNLOADS (%d)\n", len(st.Downloads))
	if len(st.Downloads) > 0 {
		fmt.Fprintf(&b, "%-28s %-28s %21s %5s %10s %10s\n", "PACKAGE", "PROGRESS", "DONE/TOTAL", "PEERS", "FROM PEERS", "FROM ORIGIN")
	}
	for _, d := range st.Downloads {
		fmt.Fprintf(&b, "%-28s %-28s %21s %5d %10s %10s\n", truncate(d.Name+"@"+d.Version, 28), bar(d.Have, d.Total, 20),
			human(float64(d.Have))+"/"+human(float64(d.Total)), d.Peers, human(float64(d.FromPeers)), human(float64(d.FromOrigin)))
		if d.WaitingOriginSince != nil {
			fmt.Fprintf(&b, "  waiting for the origin for %s: peers' chunks taken, the rest waits\n", now.Sub(*d.WaitingOriginSince).Round(time.Second))
		}
	}
	return b.String()
}

func shortID(id string) string {
	if len(id) > 16 {
		return id[:8] + "…" + id[len(id)-6:]
	}
	return id
}

func refreshedAgo(t, now time.Time) string {
	if t.IsZero() {
		return "not refreshed yet"
	}
	return "refreshed " + now.Sub(t).Round(time.Second).String() + " ago"
}

// bar draws done of total as [#####.....] NN%.
func bar(done, total int64, width int) string {
	frac := 0.0
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
	}
	n := int(frac * float64(width))
	return fmt.Sprintf("[%s%s] %3.0f%%", strings.Repeat("#", n), strings.Repeat(".", width-n), 100*frac)
}

func percent(part, total int64) string {
	if total <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(total))
}

// human writes a byte count with a binary unit.
func human(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", n, units[i])
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
