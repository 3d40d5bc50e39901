package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestCommandTree walks every command: usage text present, every flag has
// usage text, a STORK_ environment variable and a category, and no flag name
// repeats within a command.
func TestCommandTree(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := strings.TrimSpace(path + " " + c.Name)
			if c.Usage == "" {
				t.Errorf("command %q has no usage text", name)
			}
			seen := map[string]bool{}
			for _, f := range c.Flags {
				for _, n := range f.Names() {
					if seen[n] {
						t.Errorf("command %q: flag %q defined twice", name, n)
					}
					seen[n] = true
				}
				df, ok := f.(cli.DocGenerationFlag)
				if !ok || df.GetUsage() == "" {
					t.Errorf("command %q: flag %q has no usage text", name, f.Names()[0])
				}
				if ok {
					envs := df.GetEnvVars()
					if len(envs) == 0 || !strings.HasPrefix(envs[0], "STORK_") {
						t.Errorf("command %q: flag %q has no STORK_ environment variable", name, f.Names()[0])
					}
				}
				if cf, ok := f.(cli.CategorizableFlag); !ok || cf.GetCategory() == "" {
					t.Errorf("command %q: flag %q has no category", name, f.Names()[0])
				}
			}
			if len(c.Subcommands) == 0 && c.Action == nil {
				t.Errorf("command %q has neither subcommands nor an action", name)
			}
			walk(name, c.Subcommands)
		}
	}
	walk("", app.Commands)
}

func TestErrorsAreOneLine(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown key file", []string{"stork", "keys", "id", "--key", "/nonexistent/key.json"}, "key"},
		{"get without name", []string{"stork", "get", "--repo", "http://127.0.0.1:1", "--root", "/nonexistent", "--out", "/tmp/x"}, "NAME"},
		{"bad chunk size", []string{"stork", "repo", "add", "--dir", "/nonexistent", "--key", "/nonexistent", "--name", "a", "--version", "1.0.0", "--chunk-size", "lots", "p"}, "--chunk-size: size \"lots\""},
		{"bad rate", []string{"stork", "repo", "serve", "--dir", "/nonexistent", "--rate", "lots"}, "--rate: size \"lots\""},
		{"bad quota", []string{"stork", "vm", "add", "--data", "/nonexistent", "--allow", "x", "--quota", "lots", "g"}, "--quota: size \"lots\""},
		{"bad upload rate", []string{"stork", "daemon", "--data", "/nonexistent", "--upload-rate", "lots"}, "--upload-rate: size \"lots\""},
		{"bad memory limit", []string{"stork", "daemon", "--data", "/nonexistent", "--max-memory", "lots"}, "--max-memory: size \"lots\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(tt.args, io.Discard, &stderr)
			if code != 1 {
				t.Fatalf("run(%q) = %d, want 1", tt.args, code)
			}
			msg := stderr.String()
			if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "stork: ") {
				t.Errorf("run(%q) stderr = %q, want one line starting with \"stork: \"", tt.args, msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("run(%q) stderr = %q, want it to mention %q", tt.args, msg, tt.want)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"90s", "1m30s", true}, {"30d", "720h0m0s", true}, {"2w", "336h0m0s", true},
		{"-1d", "", false}, {"soon", "", false}, {"0s", "", false},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got.String() != tt.want) {
			t.Errorf("parseDuration(%q) = %v, %v; want %s ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1 << 20, true}, {"512K", 512 << 10, true}, {"1MiB", 1 << 20, true}, {"2g", 2 << 30, true},
		{"-1", 0, false}, {"lots", 0, false}, {"9223372036854775807", 1<<63 - 1, true},
		{"9999999999G", 0, false}, {"8589934592G", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestInterspersedFlags(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	tests := []struct {
		in, want string
	}{
		{"stork install --data D --vm v hello --into /x", "stork install --data D --vm v --into /x hello"},
		{"stork vm add --data D guest --allow a* --allow b", "stork vm add --data D --allow a* --allow b guest"},
		{"stork --debug get NAME --out o --json --repo=u", "stork --debug get --out o --json --repo=u NAME"},
		{"stork repo add --dir R PATH --name n -- --weird", "stork repo add --dir R --name n PATH -- --weird"},
		{"stork keys gen --out k", "stork keys gen --out k"},
		{"stork status --config F --json --log-level=debug", "stork --config F --log-level=debug status --json"},
	}
	for _, tt := range tests {
		got := strings.Join(interspersed(app, strings.Fields(tt.in)), " ")
		if got != tt.want {
			t.Errorf("interspersed(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestOneFilePerCommand keeps every command in a file of its own, named by
// its path: `stork vm add` in vm_add.go, the group `stork vm` in vm.go.
func TestOneFilePerCommand(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(append([]string{}, path...), strings.ReplaceAll(c.Name, "-", "_"))
			file := strings.Join(p, "_") + ".go"
			if _, err := os.Stat(file); err != nil {
				t.Errorf("command %q: want it in %s: %v", strings.Join(p, " "), file, err)
			}
			walk(p, c.Subcommands)
		}
	}
	walk(nil, app.Commands)
}

// TestOneMeaningPerEnvVar: flags that share an environment variable, in
// any commands, have the same type and the same usage text, so that
// setting STORK_X means one thing whichever command reads it.
func TestOneMeaningPerEnvVar(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	type def struct{ cmd, typ, usage string }
	seen := map[string]def{}
	check := func(cmd string, flags []cli.Flag) {
		for _, f := range flags {
			df, ok := f.(cli.DocGenerationFlag)
			if !ok || len(df.GetEnvVars()) == 0 {
				continue
			}
			e := df.GetEnvVars()[0]
			d := def{cmd, fmt.Sprintf("%T", f), df.GetUsage()}
			if prev, ok := seen[e]; ok && (prev.typ != d.typ || prev.usage != d.usage) {
				t.Errorf("%s means %s %q in %q but %s %q in %q", e, prev.typ, prev.usage, prev.cmd, d.typ, d.usage, d.cmd)
			}
			seen[e] = d
		}
	}
	check("stork", app.Flags)
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := strings.TrimSpace(path + " " + c.Name)
			check(name, c.Flags)
			walk(name, c.Subcommands)
		}
	}
	walk("", app.Commands)
}

// TestJSONEverywhere: every command that prints data takes --json (and
// prints a table or a line without it).
func TestJSONEverywhere(t *testing.T) {
	// Commands that print no data of their own.
	exempt := map[string]string{
		"daemon":        "runs in the foreground; logs only",
		"repo serve":    "serves until stopped; prints its URL",
		"repo init":     "prints a confirmation",
		"repo refresh":  "prints a confirmation",
		"repo delegate": "prints a confirmation",
		"repo bins":     "prints a confirmation",
		"sim run":       "writes CSV files and plots",
		"sim sweep":     "writes CSV files, plots and a report",
		"top":           "a terminal view",
		"completion":    "prints a shell script",
		"testbed run":   "writes a report, CSV files and plots",
		"testbed delay": "forwards packets until stopped; logs only",
	}
	app := newApp(io.Discard, io.Discard)
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := strings.TrimSpace(path + " " + c.Name)
			if len(c.Subcommands) > 0 {
				walk(name, c.Subcommands)
				continue
			}
			has := false
			for _, f := range c.Flags {
				has = has || f.Names()[0] == "json"
			}
			if _, ok := exempt[name]; !has && !ok {
				t.Errorf("command %q prints data but has no --json", name)
			}
		}
	}
	walk("", app.Commands)
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	rows := [][2]string{{"a", "1"}, {"longer", "22"}}
	if err := writeTable(&b, rows, "NAME\tN", func(r [2]string) string { return r[0] + "\t" + r[1] }); err != nil {
		t.Fatal(err)
	}
	want := "NAME    N\na       1\nlonger  22\n"
	if b.String() != want {
		t.Errorf("writeTable = %q, want %q", b.String(), want)
	}
}
