package main

import (
	"log/slog"

	"github.com/urfave/cli/v2"
)

// newLogger builds the process logger: text on stderr, Info by default,
// Debug with STORK_DEBUG=1 (read by urfave/cli through the global flag).
func newLogger(c *cli.Context) *slog.Logger {
	level := slog.LevelInfo
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
}
