package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/storkpm/stork/node"
)

// TestDaemonSite: `stork daemon --site NAME` shows in `stork status
// --json` as the host's configured site; its peers' announced sites show
// under site_peers, local or not; a daemon without --site and with
// --no-site-inference has none; a bad name is refused at start.
func TestDaemonSite(t *testing.T) {
	r := newRepo(t)
	src := sampleTree(t, 2<<20, 4)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "p", "--version", "1.0.0", "--chunk-size", "256K", src)
	origin := newSlowOrigin(t, r.dir, 0)
	sites := []string{"A", "A", "B", ""}
	var datas []string
	for range sites {
		d, err := os.MkdirTemp("", "stork-site-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(d)
		datas = append(datas, d)
	}
	var procs []*daemonProc
	var boot []string
	for k, d := range datas {
		args := boot
		if sites[k] != "" {
			args = append(args, "--site", sites[k])
		} else {
			args = append(args, "--no-site-inference")
		}
		procs = append(procs, startDaemonProc(t, d, origin.url, r.root, args...))
		if k == 0 {
			st, err := node.NewClient(d).Status(context.Background())
			if err != nil || len(st.Addrs) == 0 {
				t.Fatalf("first daemon status = %+v, %v; want addresses", st, err)
			}
			boot = []string{"--bootstrap", st.Addrs[0]}
		}
	}
	errs := make(chan error, len(datas))
	for _, d := range datas {
		go func() {
			_, err := node.NewClient(d).Fetch(context.Background(), "p", nil)
			errs <- err
		}()
	}
	for range datas {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ids := map[string]string{} // peer ID -> site
	statuses := make([]map[string]any, len(datas))
	for k, d := range datas {
		var st map[string]any
		if err := json.Unmarshal([]byte(stork(t, "status", "--data", d, "--json")), &st); err != nil {
			t.Fatalf("stork status --json: %v", err)
		}
		statuses[k] = st
		ids[st["peer_id"].(string)] = sites[k]
	}
	for k, st := range statuses {
		wantSite, wantSource := sites[k], "configured"
		if sites[k] == "" {
			wantSource = "unknown"
		}
		if st["site"] != wantSite || st["site_source"] != wantSource {
			t.Errorf("daemon %d (--site %q): status site %v, site_source %v; want %q, %q", k, sites[k], st["site"], st["site_source"], wantSite, wantSource)
		}
		if sites[k] == "" {
			continue
		}
		if line := stork(t, "status", "--data", datas[k]); !strings.Contains(line, "\nsite "+sites[k]+" (configured), ") {
			t.Errorf("daemon %d: stork status = %q, want a line site %s (configured)", k, line, sites[k])
		}
		peers, _ := st["site_peers"].([]any)
		seen := 0
		for _, x := range peers {
			ps := x.(map[string]any)
			site, ok := ids[ps["peer"].(string)]
			if !ok {
				continue
			}
			seen++
			local := site != "" && site == sites[k]
			if got, _ := ps["site"].(string); got != site || ps["local"] != local {
				t.Errorf("daemon %d (--site %s): site_peers has %v, want site %q, local %v", k, sites[k], ps, site, local)
			}
		}
		if seen == 0 {
			t.Errorf("daemon %d: status lists no site_peers: %v", k, st["site_peers"])
		}
	}
	for _, p := range procs {
		p.stop(t)
	}
	bad := t.TempDir()
	storkFail(t, "site", "daemon", "--log-level", "error", "--data", bad, "--repo", origin.url, "--root", r.root, "--site", "no spaces", "--listen", "/ip4/127.0.0.1/tcp/0")
}
