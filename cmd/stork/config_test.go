package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The example file in docs documents every option (its key, flag and
// environment variable) and, with its examples uncommented, sets every key
// to a valid value.
func TestExampleConfigDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../docs/stork.toml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if _, err := parseConfig("stork.toml", text); err != nil {
		t.Fatalf("docs/stork.toml: %v", err)
	}
	example := regexp.MustCompile(`(?m)^# ([a-z-]+ = .*)$`).ReplaceAllString(text, "$1")
	cf, err := parseConfig("stork.toml", example)
	if err != nil {
		t.Fatalf("docs/stork.toml with its examples uncommented: %v", err)
	}
	for _, o := range options {
		if !cf.Values[o.Key].IsSet {
			t.Errorf("docs/stork.toml: key %s is neither set nor given as an example", o.Key)
		}
		if !strings.Contains(text, "--"+o.Flag+", "+o.Env()) {
			t.Errorf("docs/stork.toml: option %s does not name --%s, %s", o.Key, o.Flag, o.Env())
		}
	}
}

func TestConfigErrorsNameKeyAndLine(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"unknown key", "[swarm]\nlisten = []\nbootstap = [\"x\"]\n", "f.toml:3: unknown key swarm.bootstap"},
		{"unknown section", "[log]\nlevel = \"info\"\n\n[daemon]\nparallel = 3\n", "f.toml:5: unknown key daemon.parallel (did you mean transfer.parallel?)"},
		{"wrong type", "[transfer]\n# comment\nparallel = \"8\"\n", "f.toml:3: transfer.parallel: want an integer, got a string"},
		{"list wanted", "[swarm]\nbootstrap = \"/ip4/1.2.3.4/tcp/1\"\n", "f.toml:2: swarm.bootstrap: want an array of strings, got a string"},
		{"list of numbers", "[swarm]\nlisten = [\n  \"/ip4/0.0.0.0/tcp/1\",\n]\nannounce = [1]\n", "f.toml:5: swarm.announce: want an array of strings"},
		{"invalid duration", "[repo]\nurl = \"http://x\"\nrefresh-interval = \"soon\"\n", "f.toml:3: repo.refresh-interval: duration \"soon\""},
		{"invalid size", "[store]\nscrub-rate = \"fast\"\n", "f.toml:2: store.scrub-rate: size \"fast\""},
		{"zero duration", "[repo]\nurl = \"http://x\"\nrefresh-interval = \"0\"\n", "f.toml:3: repo.refresh-interval: duration \"0\": must be positive"},
		{"invalid checkpoint", "[store]\ncheckpoint = \"-1s\"\n", "f.toml:2: store.checkpoint: duration \"-1s\": must be positive"},
		{"invalid choice", "[swarm]\ndht-mode = \"peer\"\n", "f.toml:2: swarm.dht-mode: want auto, server, client, got \"peer\""},
		{"negative", "[swarm]\nconn-low = -1\n", "f.toml:2: swarm.conn-low: want a non-negative integer"},
		{"key as table", "[store.data]\nx = 1\n", "f.toml:1: store.data: want a string, got a table"},
		{"syntax", "[log]\nlevel = info\n", "f.toml:2: "},
		{"first of several", "[log]\nlevel = 1\n[swarm]\nlisten = 2\n", "f.toml:2: log.level: want a string, got an integer (and 1 more)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig("f.toml", tt.text)
			if err == nil || !strings.Contains(err.Error(), "config "+tt.want) {
				t.Errorf("parseConfig(%q) = %v, want an error containing %q", tt.text, err, "config "+tt.want)
			}
		})
	}
}

// A value comes from the flag, else the environment, else the file, else
// the default; `config show` says which.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "stork.toml")
	text := "[store]\ndata = \"" + dir + "/data\"\n\n[transfer]\nparallel = 5\nmax-peers = 9\nupload-rate = \"1M\"\n\n[swarm]\nlisten = [\"/ip4/127.0.0.1/tcp/4001\"]\n"
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STORK_MAX_PEERS", "11")
	t.Setenv("STORK_UPLOAD_RATE", "2M")
	var out, errOut bytes.Buffer
	args := []string{"stork", "config", "show", "--json", "--config", file, "--upload-rate", "3M"}
	if code := run(args, &out, &errOut); code != 0 {
		t.Fatalf("run(%q) = %d: %s", args, code, errOut.String())
	}
	var got []configEntry
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ value, source string }{
		"store.data":           {dir + "/data", file + ":2"},
		"transfer.parallel":    {"5", file + ":5"},
		"transfer.max-peers":   {"11", "env"},
		"transfer.upload-rate": {"3M", "flag"},
		"swarm.listen":         {"[/ip4/127.0.0.1/tcp/4001]", file + ":10"},
		"swarm.conn-low":       {"64", "default"},
	}
	for _, e := range got {
		w, ok := want[e.Key]
		if !ok {
			continue
		}
		delete(want, e.Key)
		if v := strings.Trim(strings.ReplaceAll(mustJSON(t, e.Value), `"`, ""), " "); v != w.value || e.Source != w.source {
			t.Errorf("config show: %s = %s from %s, want %s from %s", e.Key, v, e.Source, w.value, w.source)
		}
	}
	for k := range want {
		t.Errorf("config show: no %s", k)
	}

	// A command reads the file too: status looks for the daemon in the
	// file's data directory.
	out.Reset()
	errOut.Reset()
	if code := run([]string{"stork", "status", "--config", file}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), dir+"/data") {
		t.Errorf("stork status --config FILE: exit %d, stderr %q; want an error naming %s/data", code, errOut.String(), dir)
	}
	// A file named but missing is an error; the default file missing is not.
	errOut.Reset()
	if code := run([]string{"stork", "--config", filepath.Join(dir, "none.toml"), "config", "show"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "none.toml") {
		t.Errorf("missing --config file: exit %d, stderr %q", code, errOut.String())
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	return strings.NewReplacer(`","`, " ", `["`, "[", `"]`, "]").Replace(s)
}

// The configuration snippets of docs/operations.md are valid.
func TestOperationsConfigSnippets(t *testing.T) {
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(string(b), -1)
	if len(blocks) == 0 {
		t.Fatal("docs/operations.md has no toml block")
	}
	for i, m := range blocks {
		if _, err := parseConfig(fmt.Sprintf("operations.md block %d", i+1), m[1]); err != nil {
			t.Errorf("%v", err)
		}
	}
}
