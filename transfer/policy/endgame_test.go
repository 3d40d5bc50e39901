package policy

import (
	"testing"
	"time"
)

// The end game's delay follows the host's response times: an idle host
// keeps the floor, a loaded one waits twice its mean response, up to the
// ceiling.
func TestResponseTimesEndgameDelay(t *testing.T) {
	t.Parallel()
	const floor, ceil = 100 * time.Millisecond, 2500 * time.Millisecond
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		floor   time.Duration
		want    time.Duration
	}{
		{"no sample", nil, floor, floor},
		{"idle loopback", []time.Duration{2 * time.Millisecond, 5 * time.Millisecond}, floor, floor},
		{"loaded", []time.Duration{time.Second}, floor, 2 * time.Second},
		{"overloaded", []time.Duration{10 * time.Second}, floor, ceil},
		{"no delay asked", []time.Duration{time.Second}, -1, -1},
	} {
		var r ResponseTimes
		for _, d := range tc.samples {
			r.Note(d)
		}
		if got := r.EndgameDelay(tc.floor, ceil); got != tc.want {
			t.Errorf("%s: EndgameDelay(%v, %v) = %v, want %v", tc.name, tc.floor, ceil, got, tc.want)
		}
	}
}

// One slow answer among many moves the mean little; a lasting change
// moves it all the way.
func TestResponseTimesEWMA(t *testing.T) {
	t.Parallel()
	var r ResponseTimes
	for range 100 {
		r.Note(10 * time.Millisecond)
	}
	r.Note(5 * time.Second)
	if m := r.Mean(); m > 500*time.Millisecond {
		t.Errorf("Mean after one 5s answer among 10ms ones = %v, want < 500ms", m)
	}
	for range 200 {
		r.Note(time.Second)
	}
	if m := r.Mean(); m < 990*time.Millisecond || m > 1010*time.Millisecond {
		t.Errorf("Mean after 200 answers of 1s = %v, want about 1s", m)
	}
}

// SetEndgameDelay holds back the end game's duplicates until the open
// requests are that old, and RequestAge tells a request's age.
func TestPickerSetEndgameDelay(t *testing.T) {
	t.Parallel()
	const n = 1
	p := newTestPicker(n, 11, deepPipes)
	p.PeerJoined("a", allBits(n))
	p.PeerJoined("b", allBits(n))
	i, ok := p.NextForPeer("a", t0)
	if !ok {
		t.Fatal("NextForPeer(a) found nothing")
	}
	p.Requested(i, "a", t0)
	const delay = 2 * time.Second
	p.SetEndgameDelay(delay)
	if age, ok := p.RequestAge(i, "a", t0.Add(time.Second)); !ok || age != time.Second {
		t.Fatalf("RequestAge(%d, a) 1s later = %v, %v; want 1s, true", i, age, ok)
	}
	if _, ok := p.RequestAge(i, "b", t0.Add(time.Second)); ok {
		t.Fatalf("RequestAge(%d, b) = true, want false (never asked)", i)
	}
	if j, ok := p.NextForPeer("b", t0.Add(delay-time.Millisecond)); ok {
		t.Fatalf("NextForPeer(b) %v after the request = %d, want none (EndgameDelay %v)", delay-time.Millisecond, j, delay)
	}
	if j, ok := p.NextForPeer("b", t0.Add(delay)); !ok || j != i {
		t.Fatalf("NextForPeer(b) %v after the request = %d, %v; want %d", delay, j, ok, i)
	}
	checkPicker(t, p)
}

// A chunk whose bytes are on their way is asked of another peer in the
// end game only once its request is streamingPatience times EndgameDelay
// old; once that request ends without it, the chunk is asked again at
// once.
func TestPickerEndgameSkipsStreaming(t *testing.T) {
	t.Parallel()
	for _, from := range []PeerID{"a", OriginPeer} {
		p := newTestPicker(1, 11, deepPipes)
		p.PeerJoined("a", allBits(1))
		p.PeerJoined("b", allBits(1))
		p.Requested(0, from, t0)
		p.Streaming(0, from)
		late := t0.Add(streamingPatience*DefaultEndgameDelay - time.Millisecond)
		if j, ok := p.NextForPeer("b", late); ok {
			t.Fatalf("NextForPeer(b) with chunk 0 streaming from %s = %d, want none", from, j)
		}
		if j, ok := p.NextForPeer("b", late.Add(time.Millisecond)); !ok || j != 0 {
			t.Fatalf("NextForPeer(b) with chunk 0 streaming from %s for %v = %d, %v; want 0", from, streamingPatience*DefaultEndgameDelay, j, ok)
		}
		p = newTestPicker(1, 11, deepPipes)
		p.PeerJoined("a", allBits(1))
		p.PeerJoined("b", allBits(1))
		p.Requested(0, from, t0)
		p.Streaming(0, from)
		p.Failed(0, from)
		if j, ok := p.NextForPeer("b", t0.Add(time.Millisecond)); !ok || j != 0 {
			t.Fatalf("NextForPeer(b) once the stream from %s failed = %d, %v; want 0", from, j, ok)
		}
		checkPicker(t, p)
	}
}
