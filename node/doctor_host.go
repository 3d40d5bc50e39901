package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// CheckViews checks that bind and overlay views can be made: the
// capability to mount, a real bind mount on the data directory's file
// system, overlayfs, and a mount namespace whose mounts others see.
// Without them only link views work, so each is a warning.
func CheckViews(dataDir string) []Finding {
	const check = "views"
	var out []Finding
	if err := tryBindMount(existingParent(dataDir)); err != nil {
		out = append(out, finding(LevelWarn, check,
			"run the daemon as root with CAP_SYS_ADMIN (see docs/stork.service), or register VMs --unprivileged --mode link",
			"a read-only bind mount on %s failed: %v; bind and overlay views will fail, link views work", existingParent(dataDir), err))
	} else {
		out = append(out, ok(check, "read-only bind mounts work on %s", existingParent(dataDir)))
	}
	if fs, err := os.ReadFile("/proc/filesystems"); err == nil && !strings.Contains(string(fs), "\toverlay\n") {
		out = append(out, finding(LevelWarn, check, "modprobe overlay (and add it to /etc/modules-load.d)", "the kernel has no overlay file system: overlay views will fail"))
	}
	self, err1 := os.Readlink("/proc/self/ns/mnt")
	pid1, err2 := os.Readlink("/proc/1/ns/mnt")
	if err1 == nil && err2 == nil && self != pid1 {
		out = append(out, finding(LevelWarn, check,
			"run the daemon in the host's mount namespace: no PrivateTmp=, ProtectSystem= or other namespacing options in its unit (see docs/stork.service)",
			"this process runs in its own mount namespace (%s, not %s): views made here may be invisible to VMs and to the host", self, pid1))
	}
	return out
}

// tryBindMount bind-mounts a scratch directory below dir onto another,
// makes it read-only as a view is, and undoes both.
func tryBindMount(dir string) error {
	tmp, err := os.MkdirTemp(dir, ".stork-doctor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	for _, d := range []string{src, dst} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	defer func() { _ = unix.Unmount(dst, unix.MNT_DETACH) }()
	if err := unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("remount read-only: %w", err)
	}
	return nil
}

// noFileNeed is how many descriptors the daemon needs at least: the
// store's open partial files, its index files, the swarm's connections
// (conn-high), and as many again for the API sockets and the rest (the
// daemon keeps half its descriptors in reserve, see newConnBudget).
func noFileNeed(dataDir string, connHigh int) uint64 {
	const partials, floor = 64, 1024
	index := 0
	if es, err := os.ReadDir(filepath.Join(dataDir, "store", "index")); err == nil {
		index = len(es)
	}
	need := 2 * uint64(partials+index+connHigh+64)
	return max(need, floor)
}

// CheckNoFile compares the open-file limit the daemon will have (it raises
// its soft limit to the hard one) with what it needs.
func CheckNoFile(dataDir string, connHigh int) []Finding {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return []Finding{finding(LevelWarn, "nofile", "", "cannot read RLIMIT_NOFILE: %v", err)}
	}
	return checkNoFile(rl.Max, noFileNeed(dataDir, connHigh))
}

func checkNoFile(limit, need uint64) []Finding {
	const check = "nofile"
	fix := fmt.Sprintf("raise the hard open-file limit to at least %d: LimitNOFILE=1048576 in the unit (docs/stork.service), or ulimit -Hn", need)
	switch {
	case limit < need:
		return []Finding{finding(LevelFail, check, fix, "hard open-file limit %d, below the %d the store, the swarm and the sockets need", limit, need)}
	case limit < 4*need:
		return []Finding{finding(LevelWarn, check, fix, "hard open-file limit %d: enough for %d, little room for many VMs and peers", limit, need)}
	}
	return []Finding{ok(check, "hard open-file limit %d (needs %d)", limit, need)}
}

// bytesIEC writes a byte count with a binary unit.
func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
