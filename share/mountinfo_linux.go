package share

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// MountInfo is one line of /proc/self/mountinfo: a mount in the calling
// process's mount namespace.
type MountInfo struct {
	ID        uint64
	Root      string // the directory of its file system the mount shows
	Point     string // where it is mounted
	FSType    string
	Source    string
	SuperOpts string // the file system's options ("rw,lowerdir=...")
}

// Option returns the value of the super option key ("upperdir"), or "".
func (m *MountInfo) Option(key string) string {
	for _, o := range strings.Split(m.SuperOpts, ",") {
		if k, v, ok := strings.Cut(o, "="); ok && k == key {
			return unescapeMountInfo(v)
		}
	}
	return ""
}

// Mounts lists the mounts of this process's mount namespace.
func Mounts() ([]MountInfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []MountInfo
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m, err := parseMountInfo(sc.Text())
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// parseMountInfo parses "ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS...] - TYPE SOURCE SUPEROPTS".
func parseMountInfo(line string) (MountInfo, error) {
	pre, post, ok := strings.Cut(line, " - ")
	f, g := strings.Fields(pre), strings.Fields(post)
	if !ok || len(f) < 6 || len(g) < 2 {
		return MountInfo{}, fmt.Errorf("mountinfo line %q: %w", line, ErrInvalid)
	}
	id, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return MountInfo{}, fmt.Errorf("mountinfo line %q: %w", line, err)
	}
	m := MountInfo{ID: id, Root: unescapeMountInfo(f[3]), Point: unescapeMountInfo(f[4]), FSType: g[0], Source: unescapeMountInfo(g[1])}
	if len(g) > 2 {
		m.SuperOpts = g[2]
	}
	return m, nil
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
	return nil, fmt.Errorf("mount %d: %w in /proc/self/mountinfo", id, ErrNotFound)
}

// unescapeMountInfo undoes the kernel's octal escapes ("\040" for a space).
func unescapeMountInfo(s string) string {
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
