//go:build !unix

package metadata

import "os"

// statOwner returns root: this system has no numeric owners to read.
func statOwner(os.FileInfo) Owner { return Owner{} }
