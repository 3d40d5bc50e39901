package swarm

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/storkpm/stork/metadata"
)

// FuzzReadPullRequest: a pull-through request from a peer never panics
// the decoder, a chunk it names is a chunk CID of at most
// metadata.MaxChunkSize bytes, and what it decodes encodes back to the
// bytes it read.
func FuzzReadPullRequest(f *testing.F) {
	chunk := metadata.ChunkRef{CID: metadata.SumCID([]byte("chunk")), Length: 1 << 20}
	for _, r := range []pullRequest{
		{manifest: testManifestCID, index: 3, flags: pullHeldOnly},
		{manifest: testManifestCID, index: 0, flags: pullWithRef, ref: chunk},
		{manifest: testManifestCID, index: 1<<32 - 1, flags: pullWithRef | pullHeldOnly, ref: chunk},
		{manifest: testManifestCID, index: 7, flags: pullWithRef | pullFirstRank | pullWantsProgress, ref: chunk},
		{manifest: testManifestCID, index: 7, flags: pullWithRef | pullForwarded | pullWantsProgress, ref: chunk},
	} {
		f.Add(appendPullRequest(nil, r))
	}
	f.Add(appendPullRequest(nil, pullRequest{manifest: testManifestCID, flags: pullWithRef, ref: metadata.ChunkRef{CID: testManifestCID, Length: metadata.MaxChunkSize + 1}}))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		r, err := readPullRequest(br)
		if err != nil {
			return
		}
		if r.flags&pullWithRef != 0 && (r.ref.CID.Prefix() != chunkPrefix || r.ref.Length < 1 || r.ref.Length > metadata.MaxChunkSize) {
			t.Fatalf("accepted chunk %s of %d bytes", r.ref.CID, r.ref.Length)
		}
		b := appendPullRequest(nil, r)
		if !bytes.Equal(b, in[:len(b)]) {
			t.Fatalf("re-encoding %+v = %x, input was %x", r, b, in[:len(b)])
		}
	})
}
