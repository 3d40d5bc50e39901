package swarm_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/storkpm/stork/transfer/swarm"
	"github.com/storkpm/stork/transfer/transfertest"
)

// A pull-through answer is this host's upload: it is paced at
// Config.UploadRate like a session's pieces. A fetcher capped at
// 1 MiB/s answers four 1 MiB chunks in no less than the cap allows
// (about 3.75 s after its 256 KiB burst); unpaced, it answered them at
// once.
func TestSwarmPullThroughAnswersPacedAtUploadRate(t *testing.T) {
	t.Parallel()
	const upload = 1 << 20
	p := newTestPackage(t, 31, 1<<20, 4<<20)
	c := newCluster(t, transfertest.LinkShape{})
	fetcher := c.add("fetcher", nil, func(cfg *swarm.Config) { cfg.UploadRate = upload })
	fetcher.seed(p)
	client := c.net.Node("client", func(swarm.PeerID, swarm.Stream) {})
	refs := p.m.UniqueChunks()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	var sent int64
	for i := range refs {
		st, err := client.OpenPull(ctx, fetcher.id)
		if err != nil {
			t.Fatal(err)
		}
		mb := p.c.Bytes()
		req := binary.AppendUvarint(nil, uint64(len(mb)))
		req = append(req, mb...)
		req = binary.AppendUvarint(req, uint64(i))
		req = append(req, 0)
		if _, err := st.Write(req); err != nil {
			t.Fatal(err)
		}
		n := readPullAnswer(t, st)
		st.Close()
		sent += n
	}
	took := time.Since(start)
	floor := time.Duration(float64(sent-256<<10) / upload * float64(time.Second))
	t.Logf("fetcher at %d KiB/s answered %d bytes of pull-through in %v (the cap's floor %v)", upload>>10, sent, took, floor)
	if took < floor*9/10 {
		t.Fatalf("fetcher capped at %d B/s answered %d bytes in %v: pull-through answers are not paced (floor %v)", upload, sent, took, floor)
	}
}

// readPullAnswer reads one pull-through answer (keepalives, then pullOK
// and the chunk) and returns the chunk's length.
func readPullAnswer(t *testing.T, st swarm.Stream) int64 {
	t.Helper()
	br := bufio.NewReader(st)
	for {
		b, err := br.ReadByte()
		if err != nil {
			t.Fatalf("pull answer: %v", err)
		}
		switch b {
		case 0: // pullWorking
			continue
		case 1: // pullOK
			n, err := binary.ReadUvarint(br)
			if err != nil {
				t.Fatalf("pull answer length: %v", err)
			}
			if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
				t.Fatalf("pull answer chunk: %v", err)
			}
			return int64(n)
		default:
			t.Fatalf("pull answer: status %d, want the chunk", b)
		}
	}
}
