package simulations

import "testing"

// Push reaches every host in a few latencies and heartbeats, far below
// the poll interval, and the origin serves the files of one refresh, not
// one per host; polling alone takes up to an interval and a refresh per
// host. The same seed gives the same result.
func TestAnnounceModel(t *testing.T) {
	for _, n := range []int{100, 1000} {
		push := DefaultAnnounceConfig(n)
		got, err := RunAnnounce(push)
		if err != nil {
			t.Fatal(err)
		}
		// A host whose poll comes during the spread takes the update from
		// the origin: about n*Max/Poll of them.
		maxByPoll := int(float64(n)*got.Max.Seconds()/push.Poll.Seconds()) + 5
		if got.Max >= push.Poll/4 || got.OriginRequests != push.Files+1+got.ByPoll*push.Files || got.ByPoll > maxByPoll {
			t.Errorf("RunAnnounce(%d hosts, push) = %+v, want max well under the poll interval, at most %d hosts by poll, one refresh from the origin besides theirs", n, got, maxByPoll)
		}
		again, _ := RunAnnounce(push)
		if again != got {
			t.Errorf("RunAnnounce(%d) twice = %+v and %+v, want the same", n, got, again)
		}
		poll := push
		poll.Push = false
		base, err := RunAnnounce(poll)
		if err != nil {
			t.Fatal(err)
		}
		if base.OriginRequests != n*push.Files || base.Max < push.Poll/2 {
			t.Errorf("RunAnnounce(%d hosts, poll only) = %+v, want every host refreshing from the origin within an interval", n, base)
		}
	}
	if _, err := RunAnnounce(AnnounceConfig{Hosts: 10}); err == nil {
		t.Error("RunAnnounce with no mesh = nil error")
	}
}
