//go:build unix

package metadata

import (
	"os"
	"syscall"
)

// statOwner returns the numeric owner of the file fi describes.
func statOwner(fi os.FileInfo) Owner {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return Owner{UID: st.Uid, GID: st.Gid}
	}
	return Owner{}
}
