package main

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// Flag categories shown in help.
const (
	catRepo    = "Repository"
	catSigning = "Signing"
	catOutput  = "Output"
	catNetwork = "Network"
	catLimits  = "Limits"
	catStore   = "Store"
)

// env names the STORK_ environment variable for a flag.
func env(name string) []string {
	return []string{"STORK_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}

func stringFlag(name, usage, category string, required bool) *cli.StringFlag {
	return &cli.StringFlag{Name: name, Usage: usage, Category: category, EnvVars: env(name), Required: required}
}

func stringSliceFlag(name, usage, category string) *cli.StringSliceFlag {
	return &cli.StringSliceFlag{Name: name, Usage: usage, Category: category, EnvVars: env(name)}
}

func boolFlag(name, usage, category string) *cli.BoolFlag {
	return &cli.BoolFlag{Name: name, Usage: usage, Category: category, EnvVars: env(name)}
}

func intFlag(name, usage, category string, value int) *cli.IntFlag {
	return &cli.IntFlag{Name: name, Usage: usage, Category: category, EnvVars: env(name), Value: value}
}

// parseDuration accepts Go durations plus whole days ("30d") and weeks ("2w").
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("duration %q: want a positive number before %q", s, suffix)
			}
			return time.Duration(v * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want e.g. 90s, 12h, 30d, 2w", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration %q: must be positive", s)
	}
	return d, nil
}

// parseDurationOrOff is parseDuration that also takes "0": 0, the
// feature off (option.ZeroOff).
func parseDurationOrOff(s string) (time.Duration, error) {
	if strings.TrimSpace(s) == "0" {
		return 0, nil
	}
	return parseDuration(s)
}

// parseSize accepts a byte count with an optional K, M, G (binary) suffix.
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, strings.TrimSuffix(t, "K")
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, strings.TrimSuffix(t, "G")
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a byte count like 1048576, 512K, 1M, 2G", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: more than %d bytes", s, int64(math.MaxInt64))
	}
	return n * mult, nil
}

// sizeValue returns the byte count in flag name (see parseSize), or 0
// when the flag is empty.
func sizeValue(c *cli.Context, name string) (int64, error) {
	s := c.String(name)
	if s == "" {
		return 0, nil
	}
	n, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("--%s: %w", name, err)
	}
	return n, nil
}

// absPathValue returns the path in flag name made absolute, or "" when
// the flag is empty.
func absPathValue(c *cli.Context, name string) (string, error) {
	p := c.String(name)
	if p == "" {
		return "", nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("--%s %q: %w", name, p, err)
	}
	return abs, nil
}

func dataFlag() cli.Flag {
	return lookupOption("store.data").flag()
}

// vmFlag is --vm, the VM a command acts on.
func vmFlag(required bool) cli.Flag {
	return stringFlag("vm", "VM `ID`", catStore, required)
}

// jsonFlag is --json, on every command that prints data.
func jsonFlag() cli.Flag {
	return boolFlag("json", "print JSON instead of a table or a line", catOutput)
}

// withEnv gives f the environment variable name instead of STORK_FLAG, for
// a flag whose name means something else in another command.
func withEnv(f cli.Flag, name string) cli.Flag {
	envs := []string{name}
	switch f := f.(type) {
	case *cli.StringFlag:
		f.EnvVars = envs
	case *cli.StringSliceFlag:
		f.EnvVars = envs
	case *cli.IntFlag:
		f.EnvVars = envs
	case *cli.BoolFlag:
		f.EnvVars = envs
	default:
		panic(fmt.Sprintf("withEnv: unsupported flag %T", f))
	}
	return f
}
