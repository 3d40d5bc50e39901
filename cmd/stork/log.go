package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// newLogger builds the process logger on stderr: at --log-level (--debug
// is debug), as text when --log-format is text, or auto and stderr is a
// terminal, and as JSON otherwise (a service's journal, a log collector).
func newLogger(c *cli.Context) *slog.Logger {
	var level slog.Level
	switch c.String("log-level") {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	w := c.App.ErrWriter
	opts := &slog.HandlerOptions{Level: level}
	if logAsText(c.String("log-format"), w) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func logAsText(format string, w io.Writer) bool {
	switch format {
	case "text":
		return true
	case "json":
		return false
	}
	return isTerminal(w)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
