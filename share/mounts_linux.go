package share

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

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
func (s *Store) treeMountsUnder(mounts []MountInfo, dir string) ([]TreeMount, error) {
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
	var base *MountInfo
	for i := range mounts {
		m := &mounts[i]
		if m.Major == maj && m.Minor == mnr && (m.Point == trees || childOf(m.Point, trees) != "") &&
			(base == nil || len(m.Point) > len(base.Point)) {
			base = m
		}
	}
	fsPath := ""
	if base != nil {
		fsPath = path.Join(base.Root, strings.TrimPrefix(trees, base.Point))
	}
	setuid := dir == setuidDir
	var out []TreeMount
	plain := filepath.Clean(s.path(dir))
	for i := range mounts {
		m := &mounts[i]
		if m.FSType == "overlay" {
			for _, l := range overlayLowerDirs(m.SuperOpts) {
				c := childOf(trees, l)
				if c == "" {
					c = childOf(plain, l)
				}
				if c != "" {
					out = append(out, TreeMount{Tree: c, Setuid: setuid, Point: m.Point, Overlay: true, UpperDir: overlayUpper(m)})
				}
			}
			continue
		}
		c := childOf(trees, m.Point)
		if c == "" && base != nil && m != base && m.Major == maj && m.Minor == mnr {
			c = childOf(fsPath, m.Root)
		}
		if c != "" {
			out = append(out, TreeMount{Tree: c, Setuid: setuid, Point: m.Point})
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

// overlayUpper returns the upper directory of overlay m, or "".
func overlayUpper(m *MountInfo) string {
	if u := m.Option("upperdir"); u != "" {
		return filepath.Clean(u)
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
