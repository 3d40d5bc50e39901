//go:build !linux

package node

import (
	"testing"
	"time"
)

// diskCopy: the disk baseline is measured on Linux only (O_DIRECT).
func diskCopy(tb testing.TB, srcDir, dstDir string, size int64) time.Duration { return 0 }

// syncFS: no syncfs here; a sync of every file would measure something else.
func syncFS(dir string) error { return nil }
