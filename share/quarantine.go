package share

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// quarantineDir keeps object files that failed verification, for
// forensics: quarantine/<object name>.<unix nanoseconds>. It is bounded:
// the oldest files go first once it holds more than maxQuarantined files
// or maxQuarantineBytes bytes.
const quarantineDir = "quarantine"

const (
	maxQuarantined     = 32
	maxQuarantineBytes = 1 << 30
)

// quarantineFile moves the file at p (the object called name) into
// quarantine/ and trims quarantine/ to its bounds. It returns where the
// file went.
func (s *Store) quarantineFile(p, name string) (string, error) {
	qdir := s.path(quarantineDir)
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return "", fmt.Errorf("quarantine %s: %w", name, err)
	}
	dst := filepath.Join(qdir, name+"."+strconv.FormatInt(time.Now().UnixNano(), 10))
	if err := os.Rename(p, dst); err != nil {
		return "", fmt.Errorf("quarantine %s: %w", name, err)
	}
	if err := s.syncDir(filepath.Dir(p)); err != nil {
		return dst, err
	}
	s.trimQuarantine()
	return dst, nil
}

// trimQuarantine removes the oldest quarantined files beyond the bounds.
func (s *Store) trimQuarantine() {
	qdir := s.path(quarantineDir)
	des, err := os.ReadDir(qdir)
	if err != nil {
		return
	}
	type qf struct {
		name string
		size int64
	}
	var files []qf
	var total int64
	for _, de := range des {
		info, err := de.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		files = append(files, qf{de.Name(), info.Size()})
		total += info.Size()
	}
	// Names end in the time of quarantine: oldest first.
	sort.Slice(files, func(i, j int) bool { return quarantineTime(files[i].name) < quarantineTime(files[j].name) })
	for len(files) > 0 && (len(files) > maxQuarantined || total > maxQuarantineBytes) {
		if err := os.Remove(filepath.Join(qdir, files[0].name)); err != nil {
			s.log.Warn("trim quarantine", "file", files[0].name, "err", err)
		}
		total -= files[0].size
		files = files[1:]
	}
}

// quarantineTime returns the time suffix of a quarantined file's name.
func quarantineTime(name string) int64 {
	i := len(name) - 1
	for i >= 0 && name[i] != '.' {
		i--
	}
	n, _ := strconv.ParseInt(name[i+1:], 10, 64)
	return n
}
