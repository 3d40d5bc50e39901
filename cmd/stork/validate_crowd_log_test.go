package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// serveProcLogged is serveProc with the repository server's request log
// (debug level, JSON) written to logPath: one line per response, at its
// end, with its path (metadata/, manifests/CID, chunks/CID).
func serveProcLogged(t *testing.T, dir, logPath string, extra ...string) (string, *os.Process) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	args := append([]string{"--log-level", "debug", "--log-format", "json", "repo", "serve", "--dir", dir, "--listen", "127.0.0.1:0"}, extra...)
	return runServe(t, args, logf)
}

// originRequest is one line of the server's request log.
type originRequest struct {
	Time   time.Time `json:"time"`
	Msg    string    `json:"msg"`
	Path   string    `json:"path"`
	Status int       `json:"status"`
}

// originTimes is what the origin's log says of one real run: seconds from
// the fetches' start to the end of responses.
type originTimes struct {
	manifests, chunks int     // responses with status 200
	chunkBytes        float64 // the chunks' sizes, summed over responses
	firstManifest     float64 // the first manifests/ response
	// medianManifest: the median manifests/ response. Each host asks
	// the origin for each package's manifest once, when its fetch has
	// resolved the package (metadata/) and before it asks for a chunk.
	medianManifest float64
	firstChunk     float64 // the first chunks/ response
	medianChunk    float64 // the median chunks/ response
	// medianFirstChunk: over the chunks, the median of each chunk's
	// first response (with many packages: when packages start flowing).
	medianFirstChunk float64
	// responses: every response, whatever its status (a root probe's
	// 404 too); fileBytes: the metadata/ and manifests/ files' sizes,
	// summed over their responses with status 200, and a metadata/ 404's
	// body (probeBytes).
	responses int
	fileBytes float64
}

// readOriginLog reads the responses of log r that ended in [t0, t1];
// size gives a chunk's size from its path.
func readOriginLog(r io.Reader, t0, t1 time.Time, size func(path string) int64) (originTimes, error) {
	var o originTimes
	var chunks, firsts, manifests []float64
	first := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	o.firstManifest, o.firstChunk = -1, -1
	for sc.Scan() {
		var q originRequest
		if json.Unmarshal(sc.Bytes(), &q) != nil || q.Msg != "request" {
			continue
		}
		if q.Time.Before(t0) || q.Time.After(t1) {
			continue
		}
		if o.responses++; q.Status != 200 {
			if q.Status == 404 && strings.HasPrefix(q.Path, "/metadata/") {
				o.fileBytes += probeBytes // a probe for a newer root
			}
			continue
		}
		at := q.Time.Sub(t0).Seconds()
		switch {
		case strings.HasPrefix(q.Path, "/metadata/"):
			o.fileBytes += float64(size(q.Path))
		case strings.HasPrefix(q.Path, "/manifests/"):
			o.fileBytes += float64(size(q.Path))
			o.manifests++
			manifests = append(manifests, at)
			if o.firstManifest < 0 {
				o.firstManifest = at
			}
		case strings.HasPrefix(q.Path, "/chunks/"):
			o.chunks++
			o.chunkBytes += float64(size(q.Path))
			chunks = append(chunks, at)
			if o.firstChunk < 0 {
				o.firstChunk = at
			}
			if _, ok := first[q.Path]; !ok {
				first[q.Path] = at
				firsts = append(firsts, at)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return o, fmt.Errorf("origin log: %w", err)
	}
	if len(manifests) > 0 {
		o.medianManifest = median(manifests)
	}
	if len(chunks) > 0 {
		slices.Sort(chunks)
		o.medianChunk = median(chunks)
		o.medianFirstChunk = median(firsts)
	}
	return o, nil
}

// String is the times as one line of the table's notes.
func (o originTimes) String() string {
	return fmt.Sprintf("origin log: %d responses, %.0f B of metadata and manifests (their files' sizes); %d manifest and %d chunk responses (%.0f chunk bytes); first manifest %.3fs, median manifest %.3fs, first chunk %.3fs, median chunk %.3fs, median of each chunk's first %.3fs after the fetches started",
		o.responses, o.fileBytes, o.manifests, o.chunks, o.chunkBytes, o.firstManifest, o.medianManifest, o.firstChunk, o.medianChunk, o.medianFirstChunk)
}
