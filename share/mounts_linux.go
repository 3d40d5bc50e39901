package share

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountInfoPath is the mount table of the calling process's mount
// namespace: views mounted by this process are there.
const mountInfoPath = "/proc/self/mountinfo"

// mountEntry is one line of a mountinfo file (proc(5)).
type mountEntry struct {
	major, minor uint32
	root         string // the directory of its file system the mount shows
	point        string // where it is mounted
	fsType       string
	superOpts    string
}

// maxMountLines bounds how many lines of a mount table are read.
const maxMountLines = 1 << 20

// readMountInfo parses a mountinfo file. Malformed lines are skipped.
func readMountInfo(p string) ([]mountEntry, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("mount table %s: %w", p, err)
	}
	defer f.Close()
	var out []mountEntry
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
func parseMountLine(line string) (mountEntry, bool) {
	pre, post, ok := strings.Cut(line, " - ")
	if !ok {
		return mountEntry{}, false
	}
	f := strings.Fields(pre)
	g := strings.Fields(post)
	if len(f) < 6 || len(g) < 3 {
		return mountEntry{}, false
	}
	majS, minS, ok := strings.Cut(f[2], ":")
	if !ok {
		return mountEntry{}, false
	}
	maj, err1 := strconv.ParseUint(majS, 10, 32)
	mnr, err2 := strconv.ParseUint(minS, 10, 32)
	if err1 != nil || err2 != nil {
		return mountEntry{}, false
	}
	return mountEntry{
		major: uint32(maj), minor: uint32(mnr),
		root: unescapeMount(f[3]), point: unescapeMount(f[4]),
		fsType: g[0], superOpts: g[2],
	}, true
}

// unescapeMount undoes the kernel's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// childOf returns the first path element of p below dir ("" if p is not
// strictly below dir). Both are clean absolute paths.
func childOf(dir, p string) string {
	rest, ok := strings.CutPrefix(p, strings.TrimSuffix(dir, "/")+"/")
	if !ok || rest == "" {
		return ""
	}
	first, _, _ := strings.Cut(rest, "/")
	return first
}

// TreeMount is a mount in this process's mount namespace that uses a tree
// of the store.
type TreeMount struct {
	Tree     string // the tree's name under trees/ or setuid/ (a manifest CID)
	Setuid   bool   // the tree is the setuid variant (setuid/<CID>)
	Point    string // where it is mounted
	Overlay  bool   // an overlay with the tree as a lower layer (else a bind mount or a mount inside the tree)
	UpperDir string // the overlay's upper directory
}

// TreeMounts lists the mounts that use trees of the store (under trees/
// and setuid/): bind mounts of a tree (or of a directory in it), overlays
// with a tree among their lower layers, and mounts on a path inside a tree.
func (s *Store) TreeMounts() ([]TreeMount, error) {
	mounts, err := readMountInfo(mountInfoPath)
	if err != nil {
		return nil, err
	}
	var out []TreeMount
	for _, d := range []string{treesDir, setuidDir} {
		tms, err := s.treeMountsUnder(mounts, d)
		if err != nil {
			return nil, err
		}
		out = append(out, tms...)
	}
	return out, nil
}

// treeMountsUnder lists the mounts that use trees under the store's
// directory dir.
func (s *Store) treeMountsUnder(mounts []mountEntry, dir string) ([]TreeMount, error) {
	trees, err := filepath.EvalSymlinks(s.path(dir))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(trees, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	maj, mnr := unix.Major(st.Dev), unix.Minor(st.Dev)
	// The mount the directory is reached through, and the directory as a
	// path of its file system (what the root field of a bind mount of a
	// tree shows).
	var base *mountEntry
	for i := range mounts {
		m := &mounts[i]
		if m.major == maj && m.minor == mnr && (m.point == trees || childOf(m.point, trees) != "") &&
			(base == nil || len(m.point) > len(base.point)) {
			base = m
		}
	}
	fsPath := ""
	if base != nil {
		fsPath = path.Join(base.root, strings.TrimPrefix(trees, base.point))
	}
	setuid := dir == setuidDir
	var out []TreeMount
	plain := filepath.Clean(s.path(dir))
	for i := range mounts {
		m := &mounts[i]
		if m.fsType == "overlay" {
			for _, l := range overlayLowerDirs(m.superOpts) {
				c := childOf(trees, l)
				if c == "" {
					c = childOf(plain, l)
				}
				if c != "" {
					out = append(out, TreeMount{Tree: c, Setuid: setuid, Point: m.point, Overlay: true, UpperDir: overlayOption(m.superOpts, "upperdir")})
				}
			}
			continue
		}
		c := childOf(trees, m.point)
		if c == "" && base != nil && m != base && m.major == maj && m.minor == mnr {
			c = childOf(fsPath, m.root)
		}
		if c != "" {
			out = append(out, TreeMount{Tree: c, Setuid: setuid, Point: m.point})
		}
	}
	return out, nil
}

// mountedTrees maps every tree a mount uses (by manifest CID, the tree
// or its setuid variant alike: either pins the package) to the mount
// points using it.
func (s *Store) mountedTrees() (map[string][]string, error) {
	tms, err := s.TreeMounts()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string)
	for _, tm := range tms {
		out[tm.Tree] = append(out[tm.Tree], tm.Point)
	}
	return out, nil
}

// overlayOption returns the value of option key in an overlay's options.
func overlayOption(opts, key string) string {
	for _, o := range strings.Split(opts, ",") {
		if v, ok := strings.CutPrefix(o, key+"="); ok {
			return filepath.Clean(unescapeMount(v))
		}
	}
	return ""
}

// overlayLowerDirs returns the lower directories an overlay's options
// name (lowerdir=A:B, or one lowerdir+=A per layer).
func overlayLowerDirs(opts string) []string {
	var out []string
	for _, o := range strings.Split(opts, ",") {
		v, ok := strings.CutPrefix(o, "lowerdir=")
		if !ok {
			v, ok = strings.CutPrefix(o, "lowerdir+=")
		}
		if !ok {
			continue
		}
		for _, l := range strings.Split(v, ":") {
			if l = unescapeMount(l); l != "" {
				out = append(out, filepath.Clean(l))
			}
		}
	}
	return out
}

// refuseMounted fails with ErrInUse if a mount uses tree key.
func (s *Store) refuseMounted(key string) error {
	mounted, err := s.mountedTrees()
	if err != nil {
		return fmt.Errorf("package %s: cannot tell whether a view uses its tree: %w", key, err)
	}
	if points := mounted[key]; len(points) > 0 {
		return fmt.Errorf("package %s: %w: its tree is mounted at %s", key, ErrInUse, strings.Join(points, ", "))
	}
	return nil
}
