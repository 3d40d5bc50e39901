package main

import (
	"encoding/json"

	"github.com/urfave/cli/v2"
)

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printJSON(c *cli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
