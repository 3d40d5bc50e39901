package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// `stork version` prints the version and the commit given to the build
// and the Go version it was built with.
func TestVersionCommand(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "stork")
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version=v1.2.3 -X main.commit=0123abcd", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	line, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "stork v1.2.3, commit 0123abcd, " + runtime.Version(); !strings.HasPrefix(string(line), want) {
		t.Errorf("stork version = %q, want it to start with %q", line, want)
	}
	js, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v buildVersion
	if err := json.Unmarshal(js, &v); err != nil || v.Version != "v1.2.3" || v.Commit != "0123abcd" || v.Go != runtime.Version() {
		t.Errorf("stork version --json = %s (%v)", js, err)
	}
}

// The bash completion script completes commands and flags by asking the
// binary on PATH.
func TestCompletionBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	var script bytes.Buffer
	if code := run([]string{"stork", "completion", "bash"}, &script, os.Stderr); code != 0 {
		t.Fatal("stork completion bash failed")
	}
	complete := func(words ...string) []string {
		t.Helper()
		prog := script.String() + "\nCOMP_WORDS=(" + strings.Join(words, " ") + ")\nCOMP_CWORD=" +
			strconv.Itoa(len(words)-1) + "\n_stork_complete\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		cmd := exec.Command("bash", "--norc", "--noprofile", "-c", prog)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(storkBin)+":"+os.Getenv("PATH"), "STORK_CONFIG=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	tests := []struct {
		words []string
		want  []string
	}{
		{[]string{"stork", "da"}, []string{"daemon"}},
		{[]string{"stork", "repo", "a"}, []string{"add"}},
		{[]string{"stork", "daemon", "--re"}, []string{"--repo", "--refresh-interval"}},
		{[]string{"stork", "config", "s"}, []string{"show"}},
	}
	for _, tt := range tests {
		got := complete(tt.words...)
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("completing %q = %q, want %q", tt.words, got, tt.want)
		}
	}
	var zsh bytes.Buffer
	if code := run([]string{"stork", "completion", "zsh"}, &zsh, os.Stderr); code != 0 || !strings.HasPrefix(zsh.String(), "#compdef stork\n") {
		t.Errorf("stork completion zsh = %q", zsh.String())
	}
	if _, err := exec.LookPath("zsh"); err == nil {
		cmd := exec.Command("zsh", "-n")
		cmd.Stdin = &zsh
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("zsh -n on the zsh script: %v\n%s", err, out)
		}
	}
}
