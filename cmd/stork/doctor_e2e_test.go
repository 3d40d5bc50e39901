package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// stork doctor on a healthy host prints one ok line per check and exits 0;
// a host the daemon cannot run on well gets fail lines that say what to
// fix, and exit status 1.
func TestDoctorCLI(t *testing.T) {
	r := newRepo(t)
	url := serve(t, r.dir)
	data := shortTempDir(t)
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	out := stork(t, "doctor", "--data", data, "--repo", url, "--min-free", "1M")
	for _, want := range []string{"ok    data ", "ok    space ", "ok    origin ", "ok    clock ", "ok    nofile "} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor on a healthy host lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "fail") {
		t.Errorf("doctor on a healthy host:\n%s", out)
	}

	// A world-writable data directory and an origin that is down.
	if err := os.Chmod(data, 0o777); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := storkRun(t, "doctor", "--data", data, "--repo", "http://"+freeLoopbackAddr(t), "--min-free", "1M")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(errOut, "2 findings keep the daemon from running") {
		t.Errorf("doctor on a bad host: %v, stderr %q, want exit 1 naming 2 findings\n%s", err, errOut, out)
	}
	for _, want := range []string{"fail  data       " + data + " is writable by others (mode 0777): they could change what VMs are given; fix: chmod go-w " + data, "fail  origin ", "unreachable"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor on a bad host lacks %q:\n%s", want, out)
		}
	}
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}

	// Few descriptors: the limit is the hard one a child inherits.
	if prlimit, err := exec.LookPath("prlimit"); err == nil {
		cmd := exec.Command(prlimit, "--nofile=256:256", storkBin, "doctor", "--data", data, "--min-free", "1M")
		b, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(b), "fail  nofile     hard open-file limit 256, below the ") {
			t.Errorf("doctor with 256 descriptors: %v\n%s", err, b)
		}
	}
	// No CAP_SYS_ADMIN: views cannot be mounted (a warning: link views
	// still work).
	if setpriv, err := exec.LookPath("setpriv"); err == nil && os.Geteuid() == 0 {
		cmd := exec.Command(setpriv, "--bounding-set=-sys_admin", "--", storkBin, "doctor", "--data", data, "--min-free", "1M")
		b, err := cmd.Output()
		if err != nil || !strings.Contains(string(b), "warn  views      a read-only bind mount on "+data+" failed: mount: operation not permitted") {
			t.Errorf("doctor without CAP_SYS_ADMIN: %v\n%s", err, b)
		}
	}
}
