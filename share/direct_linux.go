package share

import (
	"errors"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Direct I/O for large chunks.
//
// A chunk is written once, synced at once and then read rarely (to serve
// a peer, or by a VM much later): the page cache gains nothing from it,
// and filling it costs CPU (a page allocated, charged and later written
// back per 4 KiB; several times more in a VM whose free memory is handed
// back to the hypervisor). So chunks of at least directMin bytes at
// aligned offsets are written with O_DIRECT from an aligned buffer, and
// ReadChunk reads such a chunk from the page cache only if it is all
// there (mincore), else with O_DIRECT. The last, unaligned chunk of a file
// and small chunks go through the page cache. Durability is unchanged:
// the commit group's fdatasync or syncfs still makes the data and the
// file's extents durable before the chunk is recorded. A file system that
// refuses O_DIRECT turns it off for the store.

const (
	directAlign = 4096
	directMin   = 64 << 10
)

// isDirectErr reports whether err says the file system does not do
// O_DIRECT (or not with these buffers).
func isDirectErr(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)
}

// directOK reports whether n bytes at each of offs can go direct.
func (s *Store) directOK(n int, offs ...int64) bool {
	if s.noDirect.Load() || n < directMin || n%directAlign != 0 {
		return false
	}
	for _, o := range offs {
		if o%directAlign != 0 {
			return false
		}
	}
	return true
}

// alignedBuf returns a buffer of n bytes at a directAlign boundary.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	k := int(uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1))
	if k != 0 {
		k = directAlign - k
	}
	return b[k : k+n : k+n]
}

func aligned(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))&(directAlign-1) == 0
}

// writeBufs recycles aligned write buffers (chunk-sized, usually 1 MiB).
var writeBufs sync.Pool

func getWriteBuf(n int) *[]byte {
	if p, _ := writeBufs.Get().(*[]byte); p != nil && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	b := alignedBuf(n)
	return &b
}

// openDirect opens path for O_DIRECT writes and checks that it is the
// inode f has open.
func openDirect(path string, f *os.File) (*os.File, error) {
	df, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil, err
	}
	if !fstamp(df).sameInode(fstamp(f)) {
		df.Close()
		return nil, errors.New("partial file replaced")
	}
	return df, nil
}

// writeDirect writes data at every offset with df (O_DIRECT), through an
// aligned copy unless data is aligned already.
func writeDirect(df *os.File, data []byte, offs []int64) error {
	src := data
	var p *[]byte
	if !aligned(data) {
		p = getWriteBuf(len(data))
		copy(*p, data)
		src = *p
		defer writeBufs.Put(p)
	}
	for _, off := range offs {
		if _, err := df.WriteAt(src, off); err != nil {
			return err
		}
	}
	return nil
}

// readChunkAt reads n bytes at off of the file at p: from the page cache
// if they are all there, else (large aligned chunks) with O_DIRECT so that
// serving a chunk does not fill the cache either.
// The chunk goes into into when it is large enough (and, for O_DIRECT,
// aligned), else into a new buffer. It also returns the stamp of the file
// read (see Store.verified).
func (s *Store) readChunkAt(p string, off, n int64, into []byte) ([]byte, fileStamp, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fileStamp{}, err
	}
	defer f.Close()
	st := fstamp(f)
	if !s.directOK(int(n), off) {
		buf := into[:0]
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := f.ReadAt(buf, off); err != nil {
			return nil, st, err
		}
		return buf, st, nil
	}
	buf := into[:0]
	if int64(cap(buf)) < n || !aligned(buf[:1]) {
		buf = alignedBuf(int(n))
	}
	buf = buf[:n]
	if cached(f, off, n) {
		if _, err := f.ReadAt(buf, off); err != nil {
			return nil, st, err
		}
		return buf, st, nil
	}
	df, err := os.OpenFile(p, os.O_RDONLY|unix.O_DIRECT, 0)
	if err == nil && !fstamp(df).sameInode(st) {
		df.Close()
		err = errors.New("file replaced")
	}
	if err == nil {
		_, err = df.ReadAt(buf, off)
		df.Close()
		if err == nil {
			return buf, st, nil
		}
	}
	if isDirectErr(err) {
		s.noDirect.Store(true)
	}
	if _, err := f.ReadAt(buf, off); err != nil {
		return nil, st, err
	}
	return buf, st, nil
}

// cached reports whether the page cache holds all n bytes at off of f
// (mincore of a mapping that is never touched: no I/O, no readahead, which
// a RWF_NOWAIT read would start).
func cached(f *os.File, off, n int64) bool {
	ps := int64(os.Getpagesize())
	if off%ps != 0 || n <= 0 {
		return false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		b, err := unix.Mmap(int(fd), off, int(n), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return
		}
		defer unix.Munmap(b)
		vec := make([]byte, (n+ps-1)/ps)
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			return
		}
		for _, v := range vec {
			if v&1 == 0 {
				return
			}
		}
		ok = true
	})
	return ok
}
