package node

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// diskCopy is the disk's share of a two-node transfer on one machine: it
// reads size bytes of a file in srcDir while it writes as many into a new
// file in dstDir, both 1 MiB at a time with O_DIRECT as the store does for
// large chunks (the sender's uploads come from disk, the receiver's
// chunks go to it), the written file synced at the end. It returns the
// time until both are done: what the two daemons' disk I/O alone takes,
// with no network, hashing or index. Where O_DIRECT is refused it
// returns 0.
func diskCopy(tb testing.TB, srcDir, dstDir string, size int64) time.Duration {
	tb.Helper()
	const block = 1 << 20
	buf := func() []byte {
		b := make([]byte, block+4096)
		k := int(uintptr(unsafe.Pointer(&b[0])) & 4095)
		if k != 0 {
			k = 4096 - k
		}
		return b[k : k+block]
	}
	size = size &^ (block - 1)
	src, dst := filepath.Join(srcDir, "disk-bench.src"), filepath.Join(dstDir, "disk-bench.dst")
	defer os.Remove(src)
	defer os.Remove(dst)
	wb := buf()
	rand.NewChaCha8([32]byte{9}).Read(wb)
	write := func(path string) error {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_DIRECT, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		for off := int64(0); off < size; off += block {
			if _, err := f.WriteAt(wb, off); err != nil {
				return err
			}
		}
		return unix.Fdatasync(int(f.Fd()))
	}
	if err := write(src); err != nil { // the sender's copy, out of the page cache
		tb.Logf("disk baseline skipped: %v", err)
		return 0
	}
	var wg sync.WaitGroup
	var rerr, werr error
	start := time.Now()
	wg.Add(2)
	go func() {
		defer wg.Done()
		f, err := os.OpenFile(src, os.O_RDONLY|unix.O_DIRECT, 0)
		if err != nil {
			rerr = err
			return
		}
		defer f.Close()
		rb := buf()
		for off := int64(0); off < size; off += block {
			if _, err := f.ReadAt(rb, off); err != nil {
				rerr = err
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		werr = write(dst)
	}()
	wg.Wait()
	d := time.Since(start)
	if rerr != nil || werr != nil {
		tb.Fatalf("disk baseline: read %v, write %v", rerr, werr)
	}
	return d
}

// syncFS flushes the file system holding dir (syncfs), as the store does
// once per commit group.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
