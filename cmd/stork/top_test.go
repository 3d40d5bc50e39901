package main

import (
	"strings"
	"testing"
	"time"

	"github.com/storkpm/stork/node"
)

// A frame of stork top marks a download waiting for the origin, and only
// that one.
func TestRenderTopWaitingOrigin(t *testing.T) {
	since := time.Now().Add(-90 * time.Second)
	st := &node.Status{Downloads: []node.DownloadStatus{
		{Name: "big", Version: "1.0.0", Have: 1 << 20, Total: 4 << 20, WaitingOriginSince: &since},
		{Name: "small", Version: "2.0.0", Have: 1 << 10, Total: 2 << 10},
	}}
	frame := renderTop("/var/lib/stork", &topSample{at: time.Now(), st: st}, nil, nil)
	lines := strings.Split(frame, "\n")
	var waits []string
	for i, l := range lines {
		if strings.Contains(l, "waiting for the origin") {
			waits = append(waits, lines[i-1]+" / "+l)
		}
	}
	if len(waits) != 1 || !strings.HasPrefix(waits[0], "big@1.0.0") || !strings.Contains(waits[0], "for 1m3") {
		t.Errorf("renderTop marks %q as waiting for the origin, want only big@1.0.0, for about 1m30s\n%s", waits, frame)
	}
}
