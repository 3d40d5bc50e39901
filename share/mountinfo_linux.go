package share

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// mountInfoPath is the mount table of the calling process's mount
// namespace: views mounted by this process are there.
const mountInfoPath = "/proc/self/mountinfo"

// maxMountLines bounds how many lines of a mount table are read.
const maxMountLines = 1 << 20

// MountInfo is one line of a mountinfo file (proc(5)): a mount in the
// calling process's mount namespace.
type MountInfo struct {
	ID           uint64
	Major, Minor uint32 // the device of its file system
	Root         string // the directory of its file system the mount shows
	Point        string // where it is mounted
	FSType       string
	Source       string
	SuperOpts    string // the file system's options ("rw,lowerdir=...")
}

// Option returns the value of the super option key ("upperdir"), or "".
func (m *MountInfo) Option(key string) string {
	for _, o := range strings.Split(m.SuperOpts, ",") {
		if k, v, ok := strings.Cut(o, "="); ok && k == key {
			return unescapeMount(v)
		}
	}
	return ""
}

// Mounts lists the mounts of this process's mount namespace.
func Mounts() ([]MountInfo, error) { return readMountInfo(mountInfoPath) }

// readMountInfo parses a mountinfo file. Malformed lines are skipped.
func readMountInfo(p string) ([]MountInfo, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("mount table %s: %w", p, err)
	}
	defer f.Close()
	var out []MountInfo
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 0; sc.Scan() && n < maxMountLines; n++ {
		if m, ok := parseMountLine(sc.Text()); ok {
			out = append(out, m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mount table %s: %w", p, err)
	}
	return out, nil
}

// parseMountLine parses "ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] -
// FSTYPE SOURCE SUPEROPTS".
func parseMountLine(line string) (MountInfo, bool) {
	pre, post, ok := strings.Cut(line, " - ")
	if !ok {
		return MountInfo{}, false
	}
	f := strings.Fields(pre)
	g := strings.Fields(post)
	if len(f) < 6 || len(g) < 3 {
		return MountInfo{}, false
	}
	majS, minS, ok := strings.Cut(f[2], ":")
	if !ok {
		return MountInfo{}, false
	}
	id, err0 := strconv.ParseUint(f[0], 10, 64)
	maj, err1 := strconv.ParseUint(majS, 10, 32)
	mnr, err2 := strconv.ParseUint(minS, 10, 32)
	if err0 != nil || err1 != nil || err2 != nil {
		return MountInfo{}, false
	}
	return MountInfo{
		ID: id, Major: uint32(maj), Minor: uint32(mnr),
		Root: unescapeMount(f[3]), Point: unescapeMount(f[4]),
		FSType: g[0], Source: unescapeMount(g[1]), SuperOpts: g[2],
	}, true
}

// mountByID returns the mount with the given ID.
func mountByID(id uint64) (*MountInfo, error) {
	ms, err := Mounts()
	if err != nil {
		return nil, err
	}
	for i := range ms {
		if ms[i].ID == id {
			return &ms[i], nil
		}
	}
	return nil, fmt.Errorf("mount %d: %w in %s", id, ErrNotFound, mountInfoPath)
}

// unescapeMount undoes the kernel's octal escapes ("\040" for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
