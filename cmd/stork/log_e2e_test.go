package main

import (
	"strings"
	"testing"
)

// Logs are JSON when stderr is not a terminal, text with --log-format
// text, and --log-level drops what is below it.
func TestLogFormatAndLevel(t *testing.T) {
	r := newRepo(t)
	src := sampleTree(t, 100, 1)
	add := func(version string, flags ...string) string {
		t.Helper()
		args := append(flags, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", version, "--depends", "nosuch>=1", src)
		_, errOut, err := storkRun(t, args...)
		if err != nil {
			t.Fatalf("stork %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return errOut
	}
	if got := add("1.0.0"); !strings.Contains(got, `"level":"WARN","msg":"dependency not in the repository"`) {
		t.Errorf("default log on a pipe = %q, want a JSON warning", got)
	}
	if got := add("1.0.1", "--log-format", "text"); !strings.Contains(got, `level=WARN msg="dependency not in the repository"`) {
		t.Errorf("--log-format text = %q, want a text warning", got)
	}
	if got := add("1.0.2", "--log-level", "error"); got != "" {
		t.Errorf("--log-level error = %q, want nothing", got)
	}
	storkFail(t, "--log-level: want debug, info, warn, error", "--log-level", "loud", "repo", "list", "--dir", r.dir)
}
