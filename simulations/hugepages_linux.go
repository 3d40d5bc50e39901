package simulations

import (
	"bufio"
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// adviseHugePages asks the kernel to back the process's large anonymous
// mappings (the Go heap) with transparent huge pages: MADV_HUGEPAGE for
// the pages touched from now on and, with collapse, MADV_COLLAPSE for
// those already touched (Linux 6.1; the kernel copies them into huge
// pages now, where it can).
// A simulation of thousands of hosts reads its Pickers and flows at random
// across hundreds of MiB: with 4 KiB pages nearly every such read also
// misses the TLB. It is advice: where THP is off ("never") or madvise
// fails, nothing changes but speed. The heap grows in new mappings, so
// the simulator calls it again as it runs (every hugeAdviceEvery events).
func adviseHugePages(collapse bool) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode [path]
		fields := bytes.Fields(sc.Bytes())
		if len(fields) != 5 || string(fields[1]) != "rw-p" {
			continue // a file, the stack, vdso, or not writable
		}
		lo, hi, ok := bytes.Cut(fields[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end-start < hugeAdviceMin {
			continue
		}
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_HUGEPAGE)
		if collapse {
			_, _, _ = unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_COLLAPSE)
		}
	}
}

// hugeAdviceMin: mappings smaller than this are left alone (a huge page
// is 2 MiB; the heap's arenas are 64 MiB).
const hugeAdviceMin = 8 << 20
