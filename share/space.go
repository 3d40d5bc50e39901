package share

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// indexReserve is the free space a store keeps on its file system for
// its index. Badger writes its log through a memory map: a page it cannot
// get on a full file system kills the process (SIGBUS) instead of failing
// a write. So a chunk write that would leave less than this free fails
// with ENOSPC, and the index can still record, drop a failed download and
// collect garbage.
const indexReserve = 8 << 20

// claimSpace reserves n bytes for a chunk write, counting the writes in
// flight, and returns the function that gives them back once written. It
// fails with an error wrapping syscall.ENOSPC when the write would leave
// less than indexReserve free. A file system it cannot measure is not
// checked.
func (s *Store) claimSpace(n int64) (func(), error) {
	pending := s.writing.Add(n)
	release := func() { s.writing.Add(-n) }
	var st unix.Statfs_t
	if err := unix.Statfs(s.dir, &st); err != nil {
		return release, nil
	}
	if free := int64(st.Bavail) * st.Bsize; free-pending < indexReserve {
		release()
		return nil, fmt.Errorf("store %s: %w: %d bytes free, %d being written, %d kept for the index", s.dir, syscall.ENOSPC, free, pending-n, indexReserve)
	}
	return release, nil
}
