package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// namespaceOptions give a service a mount namespace whose mounts are
// slaves of the host's: views made in it would be invisible to VMs.
var namespaceOptions = []string{
	"PrivateTmp", "PrivateDevices", "PrivateMounts", "ProtectSystem", "ProtectHome", "ReadOnlyPaths", "ReadWritePaths",
	"InaccessiblePaths", "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths", "ProtectKernelTunables", "ProtectKernelModules",
	"ProtectKernelLogs", "ProtectControlGroups", "ProtectProc", "ProtectHostname", "RootDirectory", "RootImage", "DynamicUser",
}

// unitKeys returns the keys a unit file sets (comments skipped).
func unitKeys(text string) map[string]string {
	keys := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "[") {
			continue
		}
		k, v, _ := strings.Cut(l, "=")
		keys[k] = v
	}
	return keys
}

// The unit keeps the daemon in the host's mount namespace (views stay
// visible) and hardens it otherwise; the link-views drop-in adds the file
// system protections. systemd-analyze verify accepts both without a
// warning.
func TestServiceUnits(t *testing.T) {
	unit, err := os.ReadFile("../../docs/stork.service")
	if err != nil {
		t.Fatal(err)
	}
	dropIn, err := os.ReadFile("../../docs/stork-links.conf")
	if err != nil {
		t.Fatal(err)
	}
	keys := unitKeys(string(unit))
	for _, k := range namespaceOptions {
		if _, ok := keys[k]; ok {
			t.Errorf("docs/stork.service sets %s: the daemon's views would be invisible to VMs", k)
		}
	}
	for _, k := range []string{"CapabilityBoundingSet", "NoNewPrivileges", "SystemCallFilter", "RestrictAddressFamilies", "Restart", "LimitNOFILE", "ExecStart", "StateDirectory"} {
		if keys[k] == "" {
			t.Errorf("docs/stork.service does not set %s", k)
		}
	}
	links := unitKeys(string(dropIn))
	for _, k := range []string{"User", "ProtectSystem", "ReadWritePaths", "PrivateTmp"} {
		if links[k] == "" {
			t.Errorf("docs/stork-links.conf does not set %s", k)
		}
	}
	if !strings.Contains(links["ReadWritePaths"], "/var/lib/stork") {
		t.Errorf("docs/stork-links.conf: ReadWritePaths=%s lacks the data directory", links["ReadWritePaths"])
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze: units not verified")
	}
	dir := t.TempDir()
	base := strings.ReplaceAll(string(unit), "/usr/local/bin/stork", storkBin)
	for name, text := range map[string]string{"stork.service": base, "stork-links.service": base + "\n" + string(dropIn)} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sa, "verify", p).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
		}
	}
}
