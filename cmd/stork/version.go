package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// commit is the VCS revision, set at build time with -ldflags
// "-X main.commit=..." where the build records none (-buildvcs=false).
var commit = ""

// buildVersion is what `stork version` prints.
type buildVersion struct {
	Version  string `json:"version"` // the module version, or the -X main.version given to the build
	Commit   string `json:"commit"`
	Modified bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

func readBuildVersion() buildVersion {
	v := buildVersion{Version: version, Commit: commit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if m := bi.Main.Version; v.Version == "dev" && m != "" && m != "(devel)" {
		v.Version = m
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if v.Commit == "" {
				v.Commit = s.Value
			}
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	if v.Commit == "" {
		v.Commit = "unknown"
	}
	return v
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:      "version",
		Usage:     "print the version, the commit it was built from and the Go version",
		UsageText: "stork version [--json]",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			v := readBuildVersion()
			if c.Bool("json") {
				return printJSON(c, v)
			}
			dirty := ""
			if v.Modified {
				dirty = " (modified)"
			}
			fmt.Fprintf(c.App.Writer, "stork %s, commit %s%s, %s %s\n", v.Version, v.Commit, dirty, v.Go, v.Platform)
			return nil
		},
	}
}
