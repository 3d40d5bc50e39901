package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// configEntry is one option's effective value and where it came from.
type configEntry struct {
	Key    string `json:"key"`
	Flag   string `json:"flag"`
	Env    string `json:"env"`
	Value  any    `json:"value"`
	Source string `json:"source"` // flag, env, FILE:LINE or default
}

func configShowCommand() *cli.Command {
	var flags []cli.Flag
	for i := range options {
		if options[i].Category != catGlobal { // global flags come from the app
			flags = append(flags, options[i].flag())
		}
	}
	return &cli.Command{
		Name:  "show",
		Usage: "print the effective configuration: every option's value and where it came from (flag, environment, file:line or default)",
		UsageText: "stork config show [--json] [any option flag, to see its effect]\n" +
			"precedence: flag > STORK_ environment variable > configuration file > default",
		Flags: append(flags, jsonFlag()),
		Action: func(c *cli.Context) error {
			entries := effectiveConfig(c)
			if c.Bool("json") {
				return printJSON(c, entries)
			}
			cf, _ := c.App.Metadata[metaConfig].(*configFile)
			file := "none"
			if cf != nil {
				file = cf.Path
			}
			fmt.Fprintf(c.App.Writer, "configuration file: %s\n", file)
			return writeTable(c.App.Writer, entries, "KEY\tVALUE\tSOURCE\tFLAG\tENVIRONMENT", func(e configEntry) string {
				return fmt.Sprintf("%s\t%s\t%s\t--%s\t%s", e.Key, showValue(e.Value), e.Source, e.Flag, e.Env)
			})
		},
	}
}

// effectiveConfig reads every option as the commands do and says where
// its value came from.
func effectiveConfig(c *cli.Context) []configEntry {
	cf, _ := c.App.Metadata[metaConfig].(*configFile)
	args, _ := c.App.Metadata[metaArgs].([]string)
	out := make([]configEntry, 0, len(options))
	for i := range options {
		o := &options[i]
		e := configEntry{Key: o.Key, Flag: o.Flag, Env: o.Env()}
		switch o.Kind {
		case kindStrings:
			e.Value = append([]string{}, c.StringSlice(o.Flag)...)
		case kindInt:
			e.Value = c.Int(o.Flag)
		case kindBool:
			e.Value = c.Bool(o.Flag)
		default:
			e.Value = c.String(o.Flag)
		}
		_, inEnv := os.LookupEnv(o.Env())
		switch {
		case flagGiven(args, o.Flag):
			e.Source = "flag"
		case inEnv:
			e.Source = "env"
		case cf != nil && cf.Values[o.Key].IsSet:
			e.Source = cf.Path + ":" + strconv.Itoa(cf.Values[o.Key].Line)
		default:
			e.Source = "default"
		}
		out = append(out, e)
	}
	return out
}

// flagGiven reports whether args name the flag (before any "--").
func flagGiven(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		for _, p := range []string{"-", "--"} {
			if a == p+name || strings.HasPrefix(a, p+name+"=") {
				return true
			}
		}
	}
	return false
}

func showValue(v any) string {
	switch v := v.(type) {
	case []string:
		if len(v) == 0 {
			return "-"
		}
		return strings.Join(v, ",")
	case string:
		return orDash(v)
	}
	return fmt.Sprint(v)
}
