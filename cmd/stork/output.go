package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

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

// printLines prints items as JSON with --json, else line(item) for each,
// one a line.
func printLines[T any](c *cli.Context, items []T, line func(T) string) error {
	if c.Bool("json") {
		return printJSON(c, items)
	}
	for _, it := range items {
		fmt.Fprintln(c.App.Writer, line(it))
	}
	return nil
}

// printTable prints items as JSON with --json, else as a table (see
// writeTable).
func printTable[T any](c *cli.Context, items []T, header string, row func(T) string) error {
	if c.Bool("json") {
		return printJSON(c, items)
	}
	return writeTable(c.App.Writer, items, header, row)
}

// writeTable writes header and then row(item) for each item, as aligned
// columns: header and rows separate their columns with tabs.
func writeTable[T any](w io.Writer, items []T, header string, row func(T) string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		fmt.Fprintln(tw, row(it))
	}
	return tw.Flush()
}
