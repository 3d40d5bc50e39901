package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/storkpm/stork/node"
)

// gcReport is what `stork gc --json` prints.
type gcReport struct {
	Packages int      `json:"packages"`
	Trees    int      `json:"trees"`
	Objects  int      `json:"objects"`
	Partials int      `json:"partials"`
	Bytes    int64    `json:"bytes"`
	InUse    []string `json:"in_use"` // "TREE: MOUNT POINT", trees kept because a view uses them
}

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:      "gc",
		Usage:     "remove objects and trees that no package or VM install references",
		UsageText: "stork gc --data DIR [--partial] [--json]",
		Flags: []cli.Flag{
			dataFlag(),
			boolFlag("partial", "also drop unfinished downloads (failed, or interrupted by a restart) that no VM uses and no request waits for, freeing their partial files; a later request starts them over", catStore),
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			res, err := node.NewClient(c.String("data")).GCWith(c.Context, node.GCRequest{Partial: c.Bool("partial")})
			if err != nil {
				return err
			}
			rep, err := toGCReport(res)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c, rep)
			}
			fmt.Fprintf(c.App.Writer, "removed %d packages, %d trees, %d objects and %d partial files: %d bytes freed\n",
				rep.Packages, rep.Trees, rep.Objects, rep.Partials, rep.Bytes)
			for _, u := range rep.InUse {
				fmt.Fprintf(c.App.Writer, "kept (a view uses it): %s\n", u)
			}
			return nil
		},
	}
}

// toGCReport reads the daemon's answer (share.GCResult's fields).
func toGCReport(res map[string]any) (gcReport, error) {
	var rep gcReport
	b, err := json.Marshal(res)
	if err != nil {
		return rep, err
	}
	var r struct {
		Packages, Objects, Trees, Partials int
		Bytes                              int64
		InUse                              []string
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return rep, fmt.Errorf("gc: the daemon's answer: %w", err)
	}
	rep = gcReport{Packages: r.Packages, Trees: r.Trees, Objects: r.Objects, Partials: r.Partials, Bytes: r.Bytes, InUse: r.InUse}
	if rep.InUse == nil {
		rep.InUse = []string{}
	}
	return rep, nil
}
