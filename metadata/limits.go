package metadata

// Chunk size bounds accepted in a manifest and by Import.
const (
	MinChunkSize = 4 << 10  // 4 KiB
	MaxChunkSize = 64 << 20 // 64 MiB
)

// Limits bound what a manifest or an imported tree may hold. They are checked
// while decoding and while streaming an import, before the bytes that would
// pass them are read into memory. A zero field takes its default.
type Limits struct {
	MaxFileSize     int64 // bytes in one file; default 16 GiB
	MaxTotalSize    int64 // bytes in all files of the tree; default 64 GiB
	MaxEntries      int   // entries (files, dirs, symlinks); default 1_000_000
	MaxPathLen      int   // bytes in a path or symlink target; default 4096
	MaxManifestSize int64 // bytes of an encoded manifest; default 256 MiB
}

// DefaultLimits returns the limits used where none are configured.
func DefaultLimits() Limits {
	return Limits{
		MaxFileSize:     16 << 30,
		MaxTotalSize:    64 << 30,
		MaxEntries:      1_000_000,
		MaxPathLen:      4096,
		MaxManifestSize: 256 << 20,
	}
}

// withDefaults returns l with every zero (or negative) field set to its
// default.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = d.MaxFileSize
	}
	if l.MaxTotalSize <= 0 {
		l.MaxTotalSize = d.MaxTotalSize
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	if l.MaxPathLen <= 0 {
		l.MaxPathLen = d.MaxPathLen
	}
	if l.MaxManifestSize <= 0 {
		l.MaxManifestSize = d.MaxManifestSize
	}
	return l
}
