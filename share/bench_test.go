package share

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
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
				if err := MountView(tree, into, bm.mode, into+".upper"); err != nil {
					if errors.Is(err, unix.EPERM) {
						b.Skipf("cannot mount: %v", err)
					}
					b.Fatal(err)
				}
				if err := UnmountView(into, bm.mode); err != nil {
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
