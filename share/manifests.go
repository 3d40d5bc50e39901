package share

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/storkpm/stork/metadata"
)

// The store keeps, besides the index, every package's manifest bytes and
// the names it was registered under as files, so that a lost or damaged
// index can be rebuilt from the disk alone (see Rebuild):
//
//	manifests/<manifest CID>        the manifest bytes (they hash to the CID)
//	manifests/<manifest CID>.names  names sidecar: JSON namesFile
//
// Both are written (synced) by BeginPackage before the index records them
// and removed after the package's records are dropped.
const manifestsDir = "manifests"

const namesSuffix = ".names"

// Limits of a names sidecar, which is read back from disk and so decoded
// as untrusted bytes.
const (
	maxNamesFile    = 64 << 10
	maxNamesEntries = 256
	maxVersionLen   = 1024
)

// namesFile is the names sidecar of a manifest.
type namesFile struct {
	Format int       `json:"format"`
	Names  []pkgName `json:"names"`
}

const namesFormat = 1

// decodeNames strictly decodes a names sidecar: its format, one to
// maxNamesEntries distinct names, each name and version non-empty, valid
// UTF-8, without NUL, and bounded in length; no unknown field, no
// trailing data.
func decodeNames(b []byte) (*namesFile, error) {
	if len(b) > maxNamesFile {
		return nil, fmt.Errorf("names file: %w: %d bytes, over %d", ErrInvalid, len(b), maxNamesFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var nf namesFile
	if err := dec.Decode(&nf); err != nil {
		return nil, fmt.Errorf("names file: %w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("names file: %w: trailing data", ErrInvalid)
	}
	if nf.Format != namesFormat {
		return nil, fmt.Errorf("names file: %w: format %d, want %d", ErrInvalid, nf.Format, namesFormat)
	}
	if len(nf.Names) == 0 || len(nf.Names) > maxNamesEntries {
		return nil, fmt.Errorf("names file: %w: %d names, want 1 to %d", ErrInvalid, len(nf.Names), maxNamesEntries)
	}
	seen := make(map[pkgName]bool, len(nf.Names))
	for _, n := range nf.Names {
		if err := checkPkgName(n); err != nil {
			return nil, fmt.Errorf("names file: %w", err)
		}
		if seen[n] {
			return nil, fmt.Errorf("names file: %w: %s@%s twice", ErrInvalid, n.Name, n.Version)
		}
		seen[n] = true
	}
	return &nf, nil
}

func checkPkgName(n pkgName) error {
	for _, f := range []struct {
		what, v string
		max     int
	}{{"name", n.Name, metadata.MaxNameLen}, {"version", n.Version, maxVersionLen}} {
		if f.v == "" || len(f.v) > f.max || hasNUL(f.v) || !utf8.ValidString(f.v) {
			return fmt.Errorf("%w: %s %.40q: want 1 to %d bytes of UTF-8 without NUL", ErrInvalid, f.what, f.v, f.max)
		}
	}
	return nil
}

func encodeNames(nf *namesFile) ([]byte, error) {
	b, err := json.Marshal(nf)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func (s *Store) manifestPath(key string) string { return s.path(manifestsDir, key) }

func (s *Store) namesPath(key string) string { return s.path(manifestsDir, key+namesSuffix) }

// saveManifest writes the manifest bytes of c (unless present) and adds
// name@version to its names sidecar (unless there), each synced to disk
// if durable. BeginPackage writes them without a sync (partialFiles).
func (s *Store) saveManifest(c cid.Cid, b []byte, name, version string, durable bool) error {
	key := c.String()
	if _, err := os.Lstat(s.manifestPath(key)); errors.Is(err, fs.ErrNotExist) {
		if err := s.writeFile(s.manifestPath(key), b, durable); err != nil {
			return fmt.Errorf("manifest %s: %w", key, err)
		}
	} else if err != nil {
		return fmt.Errorf("manifest %s: %w", key, err)
	}
	return s.saveName(key, name, version, durable)
}

// saveName adds name@version to the names sidecar of manifest key, unless
// it is there. The file is synced if durable, and always when it held
// names already: a name added to another package's file is one Open does
// not check (partialFiles).
func (s *Store) saveName(key, name, version string, durable bool) error {
	nf, err := s.readNames(key)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("names file unreadable; writing it again", "manifest", key, "err", err)
	}
	if nf == nil {
		nf = &namesFile{Format: namesFormat}
	} else {
		durable = true
	}
	n := pkgName{Name: name, Version: version}
	for _, have := range nf.Names {
		if have == n {
			return nil
		}
	}
	if len(nf.Names) >= maxNamesEntries {
		s.log.Warn("names file full; name not recorded on disk", "manifest", key, "package", name+"@"+version)
		return nil
	}
	nf.Names = append(nf.Names, n)
	out, err := encodeNames(nf)
	if err != nil {
		return err
	}
	if err := s.writeFile(s.namesPath(key), out, durable); err != nil {
		return fmt.Errorf("manifest %s: names: %w", key, err)
	}
	return nil
}

// readNames reads and decodes the names sidecar of manifest key.
func (s *Store) readNames(key string) (*namesFile, error) {
	b, err := readFileMax(s.namesPath(key), maxNamesFile)
	if err != nil {
		return nil, err
	}
	return decodeNames(b)
}

// readManifestFile reads manifests/<c> and checks it against c and the
// store's limits.
func (s *Store) readManifestFile(c cid.Cid) (*metadata.Manifest, []byte, error) {
	max := s.lim.MaxManifestSize
	if max <= 0 {
		max = metadata.DefaultLimits().MaxManifestSize
	}
	b, err := readFileMax(s.manifestPath(c.String()), max)
	if err != nil {
		return nil, nil, err
	}
	if got := metadata.SumCID(b); !got.Equals(c) {
		return nil, nil, fmt.Errorf("manifest file %s: %w: %w: bytes hash to %s", c, ErrBadManifest, metadata.ErrHashMismatch, got)
	}
	m, err := metadata.DecodeManifest(b, s.lim)
	if err != nil {
		return nil, nil, fmt.Errorf("manifest file %s: %w: %w", c, ErrBadManifest, err)
	}
	return m, b, nil
}

// removeManifest removes the manifest file and names sidecar of key.
func (s *Store) removeManifest(key string) {
	for _, p := range []string{s.manifestPath(key), s.namesPath(key)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("remove manifest file", "path", p, "err", err)
		}
	}
}

// backfillManifests writes the manifest file and names of every package
// the index records whose files are missing (a store made before the
// index had them on disk too), and of every partial package whose files
// are not what the index says (partialFiles).
func (s *Store) backfillManifests() error {
	type rec struct {
		key     string
		names   []pkgName
		partial bool
	}
	var recs []rec
	err := s.db.View(func(txn *badger.Txn) error {
		return scanPackages(txn, func(key string, r *pkgRecord) error {
			recs = append(recs, rec{key, r.names(), r.State != StateComplete})
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, r := range recs {
		c, err := cid.Decode(r.key)
		if err != nil {
			return fmt.Errorf("package key %q: %w", r.key, err)
		}
		if r.partial {
			if s.manifestFilesHold(c, r.names) {
				continue
			}
			// Written again below, synced.
			s.removeManifest(r.key)
		} else {
			_, errM := os.Lstat(s.manifestPath(r.key))
			_, errN := os.Lstat(s.namesPath(r.key))
			if errM == nil && errN == nil {
				continue
			}
		}
		var b []byte
		if err := s.db.View(func(txn *badger.Txn) (err error) {
			_, b, err = manifestTxn(txn, c, s.lim)
			return err
		}); err != nil {
			return err
		}
		for _, n := range r.names {
			if err := s.saveManifest(c, b, n.Name, n.Version, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// partialFiles: BeginPackage writes a new package's manifest file and
// names without syncing them (two files and their directory: four syncs
// on the path of every download's start). They reach the disk with the
// first sync of the file system that follows: the group commit of the package's chunks
// (syncfs) at the latest, and always before the package is complete
// (commitTree syncs the file system before the tree is renamed into
// place). What a power cut can leave is a partial package whose files
// are missing, empty or torn: Open checks the files of every partial
// package (manifestFilesHold) and writes them again from the index;
// without the index, Rebuild recovers every complete package, and a
// partial one whose files did not reach the disk is fetched again when
// asked for.

// manifestFilesHold reports whether the manifest file of c holds the
// manifest (its bytes hash to c) and its names sidecar names every one of
// names.
func (s *Store) manifestFilesHold(c cid.Cid, names []pkgName) bool {
	if _, _, err := s.readManifestFile(c); err != nil {
		return false
	}
	nf, err := s.readNames(c.String())
	if err != nil {
		return false
	}
	for _, n := range names {
		if !slices.Contains(nf.Names, n) {
			return false
		}
	}
	return true
}

// writeFileAtomic writes b to p through a temporary file under tmp/
// (inScratch), synced, then renamed into place.
func (s *Store) writeFileAtomic(p string, b []byte) error {
	return s.writeFile(p, b, true)
}

// writeFile is writeFileAtomic, without its syncs unless durable: the
// file is still renamed into place whole, for readers, but may not
// survive a power cut.
func (s *Store) writeFile(p string, b []byte, durable bool) error {
	dir := filepath.Dir(p)
	var f *os.File
	// A names sidecar goes with its manifest: its name ends in its suffix.
	err := s.inScratch(strings.TrimSuffix(filepath.Base(p), namesSuffix), func(scratch string) (err error) {
		f, err = os.CreateTemp(scratch, ".tmp-*")
		return err
	})
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && s.sync && durable {
		err = f.Sync()
	}
	if err == nil {
		err = f.Chmod(0o444)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	if !durable {
		return nil
	}
	return s.syncDir(dir)
}

// readFileMax reads at most max bytes of p; a longer file is an error.
func readFileMax(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w: over %d bytes", p, ErrInvalid, max)
	}
	return b, nil
}
