package metadata

import (
	"crypto/sha256"
	"fmt"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// SumCID returns the CIDv1 (codec raw, multihash sha2-256) of data: the same
// CID `ipfs add --raw-leaves --cid-version=1` gives a single block.
func SumCID(data []byte) cid.Cid {
	sum := sha256.Sum256(data)
	return CIDFromSHA256(sum[:])
}

// CIDFromSHA256 wraps a 32-byte sha2-256 digest as a CIDv1 raw.
func CIDFromSHA256(digest []byte) cid.Cid {
	m, err := mh.Encode(digest, mh.SHA2_256)
	if err != nil {
		// Only possible for a digest of the wrong length: a programming error.
		panic(fmt.Sprintf("metadata: encode sha2-256 multihash: %v", err))
	}
	return cid.NewCidV1(cid.Raw, m)
}

// ParseCID parses s and checks that it is a CIDv1, codec raw, sha2-256, in
// its canonical (base32) string form. It returns the digest too.
func ParseCID(s string) (cid.Cid, []byte, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, nil, fmt.Errorf("cid %q: %w: %v", s, ErrMalformed, err)
	}
	if c.Version() != 1 || c.Type() != cid.Raw {
		return cid.Undef, nil, fmt.Errorf("cid %q: %w: want CIDv1 raw", s, ErrMalformed)
	}
	dm, err := mh.Decode(c.Hash())
	if err != nil || dm.Code != mh.SHA2_256 || len(dm.Digest) != sha256.Size {
		return cid.Undef, nil, fmt.Errorf("cid %q: %w: want sha2-256", s, ErrMalformed)
	}
	if c.String() != s {
		return cid.Undef, nil, fmt.Errorf("cid %q: %w: not in canonical form", s, ErrMalformed)
	}
	return c, dm.Digest, nil
}

// VerifyCID checks that data hashes to c (a CIDv1 raw sha2-256).
func VerifyCID(c cid.Cid, data []byte) error {
	if got := SumCID(data); !got.Equals(c) {
		return fmt.Errorf("chunk %s: %w: got %s", c, ErrHashMismatch, got)
	}
	return nil
}
