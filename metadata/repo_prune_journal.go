package metadata

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// retiredFile is the journal of retired content, DIR/stork-retired.json:
// for each manifest that no metadata kept by Prune names any more, the
// time Prune deleted the last metadata naming it. It is what lets Prune
// keep that content for PruneOptions.Keep after the metadata that would
// say so is gone. It is unsigned and carries nothing a client uses; only
// Prune writes it, under the repository lock.
const retiredFile = "stork-retired.json"

// Limits of the journal. An entry lives at most PruneOptions.Keep, so the
// journal holds the manifests retired within one window: maxRetired is
// several times a whole distribution retired at once. A prune that would
// need more fails (ErrTooLarge) rather than forget a window it promised.
const (
	maxRetired         = 1 << 18
	maxRetiredFileSize = 32 << 20
	retiredFormat      = 1
)

// retiredJournal maps manifest CIDs to the time they were retired (UTC,
// whole seconds).
type retiredJournal struct {
	Format    int                  `json:"stork_retired"`
	Manifests map[string]time.Time `json:"manifests"`
}

func newRetiredJournal() *retiredJournal {
	return &retiredJournal{Format: retiredFormat, Manifests: map[string]time.Time{}}
}

// encode returns the journal's one canonical encoding: indented JSON with
// sorted keys and a final newline.
func (j *retiredJournal) encode() ([]byte, error) {
	b, err := json.MarshalIndent(j, "", " ")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", retiredFile, err)
	}
	return append(b, '\n'), nil
}

// decodeRetired parses a journal strictly: within maxRetiredFileSize, no
// unknown fields, nothing after the value, the known format, at most
// maxRetired entries, each a canonical CID with a time, and byte for byte
// the encoding encode gives (so UTC whole-second times, no duplicate keys).
func decodeRetired(data []byte) (*retiredJournal, error) {
	if len(data) > maxRetiredFileSize {
		return nil, fmt.Errorf("%s: %w: %d bytes, limit %d", retiredFile, ErrTooLarge, len(data), maxRetiredFileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var j retiredJournal
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", retiredFile, ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: %w: data after the journal", retiredFile, ErrMalformed)
	}
	if j.Manifests == nil {
		return nil, fmt.Errorf("%s: %w: no manifests object", retiredFile, ErrMalformed)
	}
	if j.Format != retiredFormat {
		return nil, fmt.Errorf("%s: %w: format %d, want %d", retiredFile, ErrMalformed, j.Format, retiredFormat)
	}
	if len(j.Manifests) > maxRetired {
		return nil, fmt.Errorf("%s: %w: %d entries, limit %d", retiredFile, ErrTooLarge, len(j.Manifests), maxRetired)
	}
	for c, t := range j.Manifests {
		if !isCIDName(c) {
			return nil, fmt.Errorf("%s: %w: %q is not a CID", retiredFile, ErrMalformed, c)
		}
		// Normalized before the canonical check, so that only UTC
		// whole-second times encode back to the input.
		j.Manifests[c] = t.UTC().Truncate(time.Second)
	}
	enc, err := j.encode()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", retiredFile, ErrMalformed, err)
	}
	if !bytes.Equal(enc, data) {
		return nil, fmt.Errorf("%s: %w: not in canonical encoding", retiredFile, ErrMalformed)
	}
	return &j, nil
}

// loadRetired reads the repository's journal; none yet is an empty one.
// It returns the bytes read too (nil if none), to write only on change.
func loadRetired(dir string) (*retiredJournal, []byte, error) {
	p := filepath.Join(dir, retiredFile)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return newRetiredJournal(), nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRetiredFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", retiredFile, err)
	}
	j, err := decodeRetired(b)
	if err != nil {
		return nil, nil, err
	}
	return j, b, nil
}

// update applies one prune's findings at now: manifests named again by
// kept metadata leave the journal, manifests whose last naming metadata
// this prune deletes enter it at now, and entries retired keep or longer
// ago leave it (their content goes). A time after now (a clock set back)
// counts as now, so no entry outlives its window by more than keep.
func (j *retiredJournal) update(now time.Time, keep time.Duration, live, retired map[string]bool) error {
	now = now.UTC().Truncate(time.Second)
	for c := range live {
		delete(j.Manifests, c)
	}
	for c := range retired {
		j.Manifests[c] = now
	}
	for c, t := range j.Manifests {
		switch {
		case !t.After(now.Add(-keep)):
			delete(j.Manifests, c)
		case t.After(now):
			j.Manifests[c] = now
		}
	}
	if len(j.Manifests) > maxRetired {
		return fmt.Errorf("%s: %w: %d manifests retired within %s, limit %d; prune with a shorter keep",
			retiredFile, ErrTooLarge, len(j.Manifests), keep, maxRetired)
	}
	return nil
}
