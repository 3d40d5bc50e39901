package share

// Figures for the sharing claims (disk and page cache), run by
// `make bench-share`. Each benchmark is one fixed-size experiment: run it
// with -benchtime=1x.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/storkpm/stork/metadata"
)

// benchReaderEnv names the view a re-executed test binary reads
// (see TestBenchReaderHelper).
const benchReaderEnv = "STORK_BENCH_READER"

// benchFiles returns a package of n random files of about avg bytes each
// (uniform in [avg/2, 3avg/2)), spread over directories of 100 files, plus
// dups extra files that repeat earlier files' content; and writes the same
// tree to src (a plain copy) when src is not empty.
func benchFiles(b *testing.B, seed int64, n, avg, dups int, src string) []tfile {
	b.Helper()
	r := rand.New(rand.NewSource(seed))
	var files []tfile
	var contents [][]byte
	for i := 0; i < n+dups; i++ {
		dp := fmt.Sprintf("d%03d", i/100)
		if i%100 == 0 {
			files = append(files, dir(dp, 0o755))
		}
		var data []byte
		if i < n {
			data = randBytes(r, avg/2+r.Intn(avg))
			contents = append(contents, data)
		} else {
			data = contents[r.Intn(len(contents))]
		}
		files = append(files, file(fmt.Sprintf("%s/f%04d", dp, i), 0o644, data))
	}
	if src != "" {
		for _, f := range files {
			p := filepath.Join(src, filepath.FromSlash(f.path))
			var err error
			if f.typ == metadata.TypeDir {
				err = os.MkdirAll(p, 0o755)
			} else {
				err = os.WriteFile(p, f.data, 0o644)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	return files
}

// storeOnce downloads p into a fresh store the way the daemon does: one
// PutChunk per distinct chunk, from memory, then Commit.
func storeOnce(b *testing.B, dir string, p *testPkg) *Store {
	b.Helper()
	s, err := Open(Config{Dir: dir, UnsafeNoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	d, err := s.BeginPackage("bench", "1.0.0", p.cid, p.bytes)
	if err != nil {
		b.Fatal(err)
	}
	for c, data := range p.chunks {
		if err := d.PutChunk(c, data); err != nil {
			b.Fatal(err)
		}
	}
	if err := d.Commit(); err != nil {
		b.Fatal(err)
	}
	return s
}

// duUsage is disk usage counted the way du(1) does: every inode once, by
// (device, inode), st_blocks*512 bytes, directories included.
type duUsage struct {
	seen   map[[2]uint64]bool
	bytes  int64
	inodes int
}

func newDU() *duUsage { return &duUsage{seen: make(map[[2]uint64]bool)} }

// add walks root (without following symlinks; through mount points, where
// a bind mount of the store shows the store's very inodes) and counts each
// inode not already counted.
func (u *duUsage) add(root string) error {
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		k := [2]uint64{uint64(st.Dev), st.Ino}
		if !u.seen[k] {
			u.seen[k] = true
			u.bytes += st.Blocks * 512
			u.inodes++
		}
		return nil
	})
}

// du returns the disk usage of roots together, each inode counted once.
func du(b *testing.B, roots ...string) int64 {
	b.Helper()
	u := newDU()
	for _, r := range roots {
		if err := u.add(r); err != nil {
			b.Fatal(err)
		}
	}
	return u.bytes
}

const mib = 1 << 20

// countFiles counts the regular files under root.
func countFiles(b *testing.B, root string) int {
	b.Helper()
	n := 0
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkDiskFiftyVMs: a 200 MiB package (2,000 random files of about
// 100 KiB and 48 duplicates) downloaded once, then installed by 50 VMs. The
// figure is the disk used by the data directory and all 50 views together
// (du: each inode once) ÷ the disk used by one plain copy of the tree.
func BenchmarkDiskFiftyVMs(b *testing.B) {
	const nfiles, avg, dups, vms = 2000, 100 << 10, 48, 50
	src := b.TempDir()
	files := benchFiles(b, 1, nfiles, avg, dups, src)
	p := makePkg(b, metadata.DefaultChunkSize, files...)
	storeDir := b.TempDir()
	s := storeOnce(b, storeDir, p)
	tree := s.TreePath(p.cid)
	plain := du(b, src)
	store := du(b, storeDir)
	b.Logf("package: %d files (%d duplicates), %.1f MiB of content; plain copy %.1f MiB on disk; store after one download %.1f MiB",
		nfiles+dups, dups, float64(p.m.TotalSize())/mib, float64(plain)/mib, float64(store)/mib)

	for _, mode := range []ViewMode{ViewBind, ViewLink} {
		b.Run(string(mode), func(b *testing.B) {
			if mode == ViewBind && os.Geteuid() != 0 {
				b.Skip("bind views need root (mount(2))")
			}
			views := b.TempDir() // same file system as the store: link views need it
			var mounted []string
			defer func() {
				for _, v := range mounted {
					if err := UnmountView(viewAt(tree, v, mode, "")); err != nil {
						b.Error(err)
					}
				}
			}()
			b.ResetTimer()
			for i := 0; i < vms; i++ {
				into := filepath.Join(views, fmt.Sprintf("vm%02d", i), "bench")
				if err := MountView(viewAt(tree, into, mode, "")); err != nil {
					if errors.Is(err, unix.EPERM) {
						b.Skipf("cannot mount: %v", err)
					}
					b.Fatal(err)
				}
				mounted = append(mounted, into)
			}
			b.StopTimer()
			// Sanity: the last view shows the whole tree.
			if n := countFiles(b, mounted[len(mounted)-1]); n != nfiles+dups {
				b.Fatalf("view has %d files, want %d", n, nfiles+dups)
			}
			total := du(b, storeDir, views)
			viewsOnly := total - du(b, storeDir)
			ratio := float64(total) / float64(plain)
			b.ReportMetric(ratio, "disk_ratio")
			b.ReportMetric(float64(vms), "naive_copies_ratio")
			b.ReportMetric(float64(vms)/ratio, "saving_factor")
			b.ReportMetric(float64(total)/mib, "total_MiB")
			b.ReportMetric(float64(viewsOnly)/mib, "views_MiB")
			b.ReportMetric(float64(plain)/mib, "plain_copy_MiB")
			b.Logf("%s: %d VMs: data dir + views %.1f MiB on disk (views add %.2f MiB) vs one plain copy %.1f MiB: disk_ratio %.4f (target <= 1.01); 50 copies would be %.1f: saving x%.1f",
				mode, vms, float64(total)/mib, float64(viewsOnly)/mib, float64(plain)/mib, ratio, float64(vms), float64(vms)/ratio)
		})
	}
}

// TestBenchReaderHelper is the reader process of BenchmarkPageCacheTenVMs:
// run with STORK_BENCH_READER=DIR, it reads every file under DIR fully.
// Without it, it has nothing to do.
func TestBenchReaderHelper(t *testing.T) {
	root := os.Getenv(benchReaderEnv)
	if root == "" {
		t.Skip("helper process of BenchmarkPageCacheTenVMs (set " + benchReaderEnv + ")")
	}
	var n, files int64
	buf := make([]byte, 256<<10)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		k, err := io.CopyBuffer(io.Discard, f, buf)
		n += k
		files++
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("STORK_BENCH_READ %d %d\n", files, n)
}

// objectFiles lists the regular files under the store's objects/.
func objectFiles(b *testing.B, s *Store) []string {
	b.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(s.Dir(), objectsDir), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// dropCache writes back and evicts the page cache of each file
// (fdatasync, then posix_fadvise DONTNEED).
func dropCache(b *testing.B, paths []string) {
	b.Helper()
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		fd := int(f.Fd())
		if err := unix.Fdatasync(fd); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// residency counts the pages of the files resident in the page cache
// (mincore over a read-only mapping) and the pages one copy of them has.
func residency(b *testing.B, paths []string) (resident, total int64) {
	b.Helper()
	ps := int64(os.Getpagesize())
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		fi, err := f.Stat()
		if err != nil || fi.Size() == 0 {
			f.Close()
			continue
		}
		m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		pages := (fi.Size() + ps - 1) / ps
		vec := make([]byte, pages)
		if err := mincore(m, vec); err != nil {
			b.Fatal(err)
		}
		for _, v := range vec {
			resident += int64(v & 1)
		}
		total += pages
		if err := unix.Munmap(m); err != nil {
			b.Fatal(err)
		}
	}
	return resident, total
}

// mincore is mincore(2) (x/sys/unix has no wrapper on Linux).
func mincore(m, vec []byte) error {
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		return e
	}
	return nil
}

// memCached is /proc/meminfo's Cached, in bytes.
func memCached(b *testing.B) int64 {
	b.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "Cached:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no Cached line in /proc/meminfo")
	return 0
}

// BenchmarkPageCacheTenVMs: 100 MiB of files in a committed tree, seen
// by 10 VMs through 10 bind views. With the page cache of the objects
// dropped, 10 separate processes each read every file through their own
// view; the figure is the pages of the objects then resident (mincore) ÷
// the pages of one copy. The /proc/meminfo Cached delta over the same
// span, ÷ one copy, is a second and noisier figure (the host does other
// things meanwhile).
func BenchmarkPageCacheTenVMs(b *testing.B) {
	const nfiles, avg, vms = 800, 128 << 10, 10
	if os.Geteuid() != 0 {
		b.Skip("bind views need root (mount(2))")
	}
	storeDir := b.TempDir()
	var sfs unix.Statfs_t
	if err := unix.Statfs(storeDir, &sfs); err == nil && sfs.Type == unix.TMPFS_MAGIC {
		b.Skip("store on tmpfs: its pages cannot be dropped, residency means nothing")
	}
	p := makePkg(b, metadata.DefaultChunkSize, benchFiles(b, 2, nfiles, avg, 0, "")...)
	s := storeOnce(b, storeDir, p)
	tree := s.TreePath(p.cid)
	views := b.TempDir()
	var intos []string
	defer func() {
		for _, v := range intos {
			if err := UnmountView(viewAt(tree, v, ViewBind, "")); err != nil {
				b.Error(err)
			}
		}
	}()
	for i := 0; i < vms; i++ {
		into := filepath.Join(views, fmt.Sprintf("vm%d", i))
		if err := MountView(viewAt(tree, into, ViewBind, "")); err != nil {
			if errors.Is(err, unix.EPERM) {
				b.Skipf("cannot mount: %v", err)
			}
			b.Fatal(err)
		}
		intos = append(intos, into)
	}
	objs := objectFiles(b, s)
	unix.Sync()
	dropCache(b, objs)
	before, pages := residency(b, objs)
	cachedBefore := memCached(b)
	ps := int64(os.Getpagesize())

	b.ResetTimer()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	cmds := make([]*exec.Cmd, vms)
	outs := make([]*bytes.Buffer, vms)
	for i, into := range intos {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBenchReaderHelper$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), benchReaderEnv+"="+into)
		outs[i] = new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		cmds[i] = cmd
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			b.Fatalf("reader %d: %v\n%s", i, err, outs[i])
		}
		want := fmt.Sprintf("STORK_BENCH_READ %d %d\n", nfiles, p.m.TotalSize())
		if !strings.Contains(outs[i].String(), want) {
			b.Fatalf("reader %d did not read the whole view (want %q):\n%s", i, want, outs[i])
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()

	cachedAfter := memCached(b)
	resident, _ := residency(b, objs)
	ratio := float64(resident) / float64(pages)
	cachedRatio := float64(cachedAfter-cachedBefore) / float64(pages*ps)
	b.ReportMetric(ratio, "pagecache_ratio")
	b.ReportMetric(cachedRatio, "meminfo_cached_ratio")
	b.ReportMetric(float64(pages*ps)/mib, "one_copy_MiB")
	b.ReportMetric(elapsed.Seconds(), "read_s")
	b.Logf("%d processes each read %d files (%.1f MiB) through %d bind views in %v: object pages resident %d -> %d of %d (one copy): pagecache_ratio %.3f (target <= 1.1); meminfo Cached grew %.1f MiB = %.2f copies (noisy); %d separate copies would be %d",
		vms, nfiles, float64(p.m.TotalSize())/mib, vms, elapsed.Round(time.Millisecond), before, resident, pages, ratio,
		float64(cachedAfter-cachedBefore)/mib, cachedRatio, vms, vms)
}
