package metadata

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// DecodeManifest parses and checks a manifest from untrusted bytes. In order:
// the size limit (before parsing anything), strict JSON (no unknown fields,
// exactly one value, nothing after it), Validate, and finally that data is
// byte for byte the canonical encoding (Encode) of what was decoded: only one
// encoding of a manifest is accepted, so its bytes, and so its CID, are a
// function of its content. lim's zero fields take their defaults.
func DecodeManifest(data []byte, lim Limits) (*Manifest, error) {
	lim = lim.withDefaults()
	if int64(len(data)) > lim.MaxManifestSize {
		return nil, fmt.Errorf("manifest: %w: %d bytes, limit %d", ErrTooLarge, len(data), lim.MaxManifestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w manifestWire
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("manifest: %w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("manifest: %w: data after the manifest", ErrMalformed)
	}
	m := Manifest{Format: w.Format, ChunkSize: w.ChunkSize, Entries: make([]Entry, len(w.Entries))}
	for i := range w.Entries {
		if err := m.Entries[i].fromWire(&w.Entries[i]); err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
	}
	w.Entries = nil
	if err := m.Validate(lim); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	enc, err := m.Encode()
	if err != nil {
		return nil, fmt.Errorf("manifest: %w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(enc, data) {
		return nil, fmt.Errorf("manifest: %w: not in canonical encoding", ErrMalformed)
	}
	return &m, nil
}
