package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDiskFullThenGCPartial: a download fails for lack of disk space (the
// data directory is a small ext4 file system); `stork gc --partial` frees
// what it held, and the daemon keeps serving.
func TestDiskFullThenGCPartial(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a loop file system")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("no mkfs.ext4")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"truncate", "-s", "48M", img}, {"mkfs.ext4", "-q", "-F", "-m", "0", img}, {"mount", "-o", "loop", img, mnt}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Skipf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	defer exec.Command("umount", "-l", mnt).Run()
	free := func() int64 {
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Bavail) * st.Bsize
	}

	r := newRepo(t)
	src := sampleTree(t, 64<<20, 1)
	stork(t, "repo", "add", "--dir", r.dir, "--key", r.key, "--name", "huge", "--version", "1.0.0", "--chunk-size", "1M", src)
	url := serve(t, r.dir)
	data := filepath.Join(mnt, "data")
	d := startDaemonProc(t, data, url, r.root, "--no-swarm", "--scrub-rate", "0")
	before := free()
	_, errOut, err := storkRun(t, "fetch", "--data", data, "huge")
	if err == nil || !strings.Contains(errOut, "no space left") {
		t.Fatalf("fetch of 64 MiB into 48 MiB: %v, %q; want no space left", err, errOut)
	}
	full := free()
	t.Logf("free space: %d MiB before the fetch, %d MiB after it failed", before>>20, full>>20)
	if before-full < 16<<20 {
		t.Fatalf("the failed fetch used only %d MiB: the test does not fill the disk", (before-full)>>20)
	}
	stork(t, "gc", "--data", data)
	if got := free(); got-full > 1<<20 {
		t.Errorf("plain gc freed %d MiB of a failed download: it should keep it for a retry", (got-full)>>20)
	}
	out := stork(t, "gc", "--data", data, "--partial")
	if got := free(); got < before-(4<<20) {
		t.Errorf("after gc --partial %d MiB free, want about the %d MiB before the fetch (gc said %s)", got>>20, before>>20, out)
	}
	if st := stork(t, "status", "--data", data, "--json"); !strings.Contains(st, `"packages": []`) {
		t.Errorf("status after gc --partial: %s", st)
	}
	d.stop(t)
}
