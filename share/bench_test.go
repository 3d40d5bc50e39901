package share

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"

	"github.com/storkpm/stork/metadata"
)

// BenchmarkInstallView measures making a 5,000-file package visible to one
// more VM and taking it away again, per view mode.
func BenchmarkInstallView(b *testing.B) {
	const nfiles, perDir = 5000, 100
	var files []tfile
	for d := 0; d < nfiles/perDir; d++ {
		dp := fmt.Sprintf("d%03d", d)
		files = append(files, dir(dp, 0o755))
		for f := 0; f < perDir; f++ {
			files = append(files, file(fmt.Sprintf("%s/f%03d", dp, f), 0o644, []byte(fmt.Sprintf("file %d/%d\n", d, f))))
		}
	}
	p := makePkg(b, testChunk, files...)
	s, err := Open(Config{Dir: b.TempDir(), UnsafeNoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	install(b, s, p, "bench", "1")
	tree := s.TreePath(p.cid)

	for _, bm := range []struct {
		mode ViewMode
		root bool
	}{{ViewLink, false}, {ViewBind, true}, {ViewOverlay, true}} {
		b.Run(string(bm.mode), func(b *testing.B) {
			if bm.root && os.Geteuid() != 0 {
				b.Skip("needs root")
			}
			base := filepath.Join(s.Dir(), "views")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				into := filepath.Join(base, fmt.Sprintf("vm%d", i))
				if err := MountView(viewAt(tree, into, bm.mode, into+".upper")); err != nil {
					if errors.Is(err, unix.EPERM) {
						b.Skipf("cannot mount: %v", err)
					}
					b.Fatal(err)
				}
				if err := UnmountView(viewAt(tree, into, bm.mode, into+".upper")); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
			os.RemoveAll(base)
		})
	}
}

// BenchmarkPutSmallFiles: a package of 2,000 files of 4 KiB stored by 8
// goroutines, syncing (the store's default).
func BenchmarkPutSmallFiles(b *testing.B) {
	const nfiles = 2000
	var files []tfile
	for i := 0; i < nfiles; i++ {
		if i%100 == 0 {
			files = append(files, dir(fmt.Sprintf("d%02d", i/100), 0o755))
		}
		files = append(files, file(fmt.Sprintf("d%02d/f%04d", i/100, i), 0o644, []byte(fmt.Sprintf("%04096d", i))))
	}
	p := makePkg(b, testChunk, files...)
	for i := 0; i < b.N; i++ {
		s, err := Open(Config{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		d, err := s.BeginPackage("small", "1", p.cid, p.bytes)
		if err != nil {
			b.Fatal(err)
		}
		if err := putAllErr(d, p, 8, 1); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(s.cm.chunks.Load())/float64(max(1, s.cm.groups.Load())), "chunks/group")
		s.Close()
	}
	b.ReportMetric(float64(nfiles*b.N)/b.Elapsed().Seconds(), "files/s")
}

// BenchmarkPutLargeFile: one 256 MiB file of 1 MiB chunks stored by
// workers concurrent PutVerifiedChunk calls (as the swarm's delivery
// workers do), synced store: the store's share of a swarm download.
func BenchmarkPutLargeFile(b *testing.B) {
	const size, chunk = 256 << 20, 1 << 20
	data := randBytes(rand.New(rand.NewSource(9)), size)
	p := makePkg(b, chunk, file("big", 0o644, data))
	var cids []cid.Cid
	for off := 0; off < size; off += chunk {
		cids = append(cids, metadata.SumCID(data[off:off+chunk]))
	}
	for _, workers := range []int{4, 8, 16} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				s, err := Open(Config{Dir: b.TempDir(), SyncWrites: true})
				if err != nil {
					b.Fatal(err)
				}
				d, err := s.BeginPackage("big", "1", p.cid, p.bytes)
				if err != nil {
					b.Fatal(err)
				}
				put := func(c cid.Cid) error { return d.PutVerifiedChunk(c, p.chunks[c]) }
				if err := concurrently(cids, workers, put); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(s.cm.chunks.Load())/float64(max(1, s.cm.groups.Load())), "chunks/group")
				s.Close()
			}
			b.ReportMetric(float64(size)*float64(b.N)/1e6/b.Elapsed().Seconds(), "MB/s")
		})
	}
}

// BenchmarkSmallPackages: 300 packages of one 59 KB file (Debian's median
// .deb), each begun, filled and committed by one of 16 workers at once,
// as a daemon's download slots do in an upgrade; against the floor
// measured in the same run: the same files written the way `stork get`
// writes them (a directory per package, create, write, fsync, rename),
// by 16 workers into one directory. x_floor is the store's time over the
// floor's; cpu_x_floor the same for CPU. The store's time includes its
// Close: with checkpoints (the daemon's default, sub-benchmark
// "checkpoint"), the last checkpoint, which makes the packages durable;
// "sync" syncs at each step.
func BenchmarkSmallPackages(b *testing.B) {
	const npkg, workers, size = 300, 16, 59 << 10
	r := rand.New(rand.NewSource(1))
	pkgs := make([]*testPkg, npkg)
	order := make([]int, npkg)
	for i := range pkgs {
		order[i] = i
		pkgs[i] = makePkg(b, 64<<10, file("pkg.deb", 0o644, randBytes(r, size)))
	}
	for _, mode := range []struct {
		name string
		ckpt time.Duration
	}{{"sync", 0}, {"checkpoint", time.Second}} {
		b.Run(mode.name, func(b *testing.B) {
			var store, floor, storeCPU, floorCPU time.Duration
			for i := 0; i < b.N; i++ {
				s, err := Open(Config{Dir: b.TempDir(), Checkpoint: mode.ckpt})
				if err != nil {
					b.Fatal(err)
				}
				t, c := elapsed(func() error {
					err := concurrently(order, workers, func(j int) error {
						p := pkgs[j]
						d, err := s.BeginPackage("p", fmt.Sprint(j), p.cid, p.bytes)
						if err == nil {
							err = putAllErr(d, p, 1, int64(j))
						}
						if err == nil {
							err = d.Commit()
						}
						return err
					})
					if cerr := s.Close(); err == nil {
						err = cerr
					}
					return err
				})
				store, storeCPU = store+t, storeCPU+c
				dir := b.TempDir()
				t, c = elapsed(func() error {
					return concurrently(order, workers, func(j int) error { return writeLikeGet(dir, j, pkgs[j].files[0].data) })
				})
				floor, floorCPU = floor+t, floorCPU+c
			}
			b.ReportMetric(store.Seconds()/floor.Seconds(), "x_floor")
			b.ReportMetric(storeCPU.Seconds()/floorCPU.Seconds(), "cpu_x_floor")
			b.ReportMetric(float64(storeCPU.Microseconds())/float64(npkg*b.N), "cpu_us/pkg")
		})
	}
}

// elapsed runs fn and returns its wall time and the process's CPU time
// in it; a failing fn panics (benchmarks call it from their goroutine).
func elapsed(fn func() error) (time.Duration, time.Duration) {
	var r0, r1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &r0)
	t0 := time.Now()
	if err := fn(); err != nil {
		panic(err)
	}
	t := time.Since(t0)
	unix.Getrusage(unix.RUSAGE_SELF, &r1)
	cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	return t, cpu
}

// writeLikeGet writes data as package j's one file the way `stork get`
// does: into a directory of its own, through a temporary file, fsynced.
func writeLikeGet(dir string, j int, data []byte) error {
	d := filepath.Join(dir, fmt.Sprint(j))
	if err := os.Mkdir(d, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(d, ".part-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(d, "pkg.deb"))
	}
	return err
}
