package metadata

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// Repository layout, relative to the repository directory.
const (
	MetadataDir  = "metadata"
	ManifestsDir = "manifests"
	ChunksDir    = "chunks"
	// TimestampPath is the one metadata file whose newest copy only the
	// origin can tell (its name carries no version).
	TimestampPath = MetadataDir + "/timestamp.json"
	// repoConfigFile keeps the expiry periods the repository re-signs with.
	// It is not signed and carries nothing a client uses.
	repoConfigFile = "stork-repo.json"
)

// writeFileAtomic writes data to path through a temporary file in the same
// directory, fsync and rename: a reader sees the old file or the new one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFileRename(path, data, perm, true)
}

// writeFileAtomicNoSync is writeFileAtomic without the fsync, for files
// whose loss in a crash costs only work (a cache verified on use, or
// files made durable together later, see syncFS).
func writeFileAtomicNoSync(path string, data []byte, perm os.FileMode) error {
	return writeFileRename(path, data, perm, false)
}

func writeFileRename(path string, data []byte, perm os.FileMode, sync bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// syncDir flushes a directory entry after renames (best effort).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// metaFileFor describes serialized role metadata for snapshot/timestamp.
func metaFileFor(version int64, data []byte) *tufmeta.MetaFiles {
	sum := sha256.Sum256(data)
	return &tufmeta.MetaFiles{
		Version: version,
		Length:  int64(len(data)),
		Hashes:  tufmeta.Hashes{"sha256": sum[:]},
	}
}

// targetHashes returns the hashes pinned for a target: sha256 only, as
// TUF's reference implementation does. It is the same hash the manifest
// CID carries, and a second one would add 140 bytes to each of the
// targets a bin holds. Targets signed earlier with sha512 too stay valid
// (a client checks every hash a target lists; TargetFiles.Equal compares
// the hashes two targets share).
func targetHashes(data []byte) tufmeta.Hashes {
	s256 := sha256.Sum256(data)
	return tufmeta.Hashes{"sha256": s256[:]}
}

// expiry returns now+d rounded down to the second, in UTC (TUF dates carry
// no fractions).
func expiry(now time.Time, d time.Duration) time.Time {
	return now.UTC().Add(d).Truncate(time.Second)
}

// cloneMeta deep-copies role metadata through its JSON form.
func cloneMeta[T tufmeta.Roles](m *tufmeta.Metadata[T]) (*tufmeta.Metadata[T], error) {
	b, err := m.ToBytes(false)
	if err != nil {
		return nil, err
	}
	return new(tufmeta.Metadata[T]).FromBytes(b)
}

// signMeta replaces m's signatures with signatures by keys.
func signMeta[T tufmeta.Roles](m *tufmeta.Metadata[T], keys []*PrivateKey) error {
	m.ClearSignatures()
	return addSignatures(m, keys)
}

// addSignatures appends signatures by keys, skipping keys that already signed.
func addSignatures[T tufmeta.Roles](m *tufmeta.Metadata[T], keys []*PrivateKey) error {
	have := map[string]bool{}
	for _, s := range m.Signatures {
		have[s.KeyID] = true
	}
	for _, k := range keys {
		if have[k.ID()] {
			continue
		}
		s, err := k.signer()
		if err != nil {
			return err
		}
		if _, err := m.Sign(s); err != nil {
			return fmt.Errorf("sign with key %s: %w", shortID(k.ID()), err)
		}
		have[k.ID()] = true
	}
	return nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func rolePath(dir string, version int64, role string) string {
	return filepath.Join(dir, MetadataDir, fmt.Sprintf("%d.%s.json", version, role))
}
