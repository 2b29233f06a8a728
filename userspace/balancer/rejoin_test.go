package balancer

import (
	"testing"
	"time"

	"github.com/catherd/catherd/session/moved"
)

// countNew balances n new sessions and counts them per member name.
func countNew(t *testing.T, p *Pool, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		got[pickName(t, p, &Request{})]++
	}
	return got
}

func TestReturningMemberSettlesThenRampsUp(t *testing.T) {
	opts := Options{RejoinSettle: 10 * time.Second, SlowStart: 100 * time.Second, Moved: moved.New(time.Hour, 100)}
	p, now := newTestPool(t, "byrequests", opts, "a:1", "b:1")
	a := p.Members()[0]

	a.SetDown(true)
	*now = now.Add(time.Minute)
	a.SetDown(false) // back: healthy again
	if got := a.State(*now); got != StateSettling {
		t.Fatalf("state right after return: %v, want settling", got)
	}
	if got := countNew(t, p, 100); got["a"] != 0 {
		t.Fatalf("a settling took new sessions: %v", got)
	}
	// Its own session goes to the partner, and stays there afterwards.
	r := &Request{Route: []byte("a"), SessionKey: []byte("s1")}
	if m, out, err := p.Pick(r); err != nil || m.Name != "b" || out != Failover {
		t.Fatalf("own session while settling: %v %v %v, want b by failover", m, out, err)
	}

	*now = now.Add(10*time.Second + 10*time.Second) // settled, 10% into the ramp
	if got := a.State(*now); got != StateOK {
		t.Fatalf("state after settling: %v, want ok", got)
	}
	if m, out, _ := p.Pick(&Request{Route: []byte("a"), SessionKey: []byte("s1")}); m.Name != "b" || out != Moved {
		t.Fatalf("moved session after settling went to %v (%v), want b (moved)", m, out)
	}
	if m, out, _ := p.Pick(&Request{Route: []byte("a"), SessionKey: []byte("s2")}); m.Name != "a" || out != Hit {
		t.Fatalf("a's unmoved session after settling went to %v (%v), want a (hit)", m, out)
	}
	early := countNew(t, p, 1100)["a"]
	if early < 80 || early > 120 { // share 0.1 against 1: 1/11 of picks
		t.Fatalf("10%% into the ramp a took %d of 1100 new sessions, want about 100", early)
	}
	*now = now.Add(100 * time.Second) // ramp over
	if got := countNew(t, p, 1000)["a"]; got != 500 {
		t.Fatalf("after the ramp a took %d of 1000, want 500", got)
	}
}

func TestFirstArrivalAndIsolationDoNotSettle(t *testing.T) {
	opts := Options{RejoinSettle: time.Hour, SlowStart: time.Hour}
	p, now := newTestPool(t, "byrequests", opts, "a:1", "b:1")
	a := p.Members()[0]
	// Start-up with membership: isolated until heard, then in the group.
	a.SetIsolated(true)
	a.SetIsolated(false)
	if ph := a.phase(*now); ph != Steady {
		t.Fatalf("first time in the group: %v, want steady", ph)
	}
	// Out of the group and back while answering all along: steady.
	a.SetIsolated(true)
	*now = now.Add(time.Minute)
	a.SetIsolated(false)
	if ph := a.phase(*now); ph != Steady {
		t.Fatalf("after an isolation alone: %v, want steady", ph)
	}
	// Members are presumed whole when configured: one whose first health
	// checks fail was lost, and settles when it comes up (it is starting).
	b := p.Members()[1]
	b.SetDown(true)
	b.SetDown(false)
	if ph := b.phase(*now); ph != Settling {
		t.Fatalf("b, down at start-up and then up: %v, want settling", ph)
	}
}

func TestRejoinNeedsGroupAndRestartsWhenLostAgain(t *testing.T) {
	opts := Options{RejoinSettle: 10 * time.Second}
	p, now := newTestPool(t, "byrequests", opts, "a:1", "b:1")
	a := p.Members()[0]
	a.SetFlags(Disabled) // evacuated, then restarted by the operator
	a.SetIsolated(true)
	a.SetFlags(0) // enabled while it is not in its group yet
	*now = now.Add(time.Minute)
	if got := a.State(*now); got != StateIsolated {
		t.Fatalf("enabled but out of the group: %v", got)
	}
	a.SetIsolated(false) // the settle time counts from here
	*now = now.Add(5 * time.Second)
	if got := a.State(*now); got != StateSettling {
		t.Fatalf("5s in the group: %v, want settling", got)
	}
	a.SetDown(true) // lost again before it settled
	a.SetDown(false)
	*now = now.Add(9 * time.Second)
	if got := a.State(*now); got != StateSettling {
		t.Fatalf("9s after the second return: %v, want settling", got)
	}
	*now = now.Add(2 * time.Second)
	if got := a.State(*now); got != StateOK {
		t.Fatalf("11s after the second return: %v, want ok", got)
	}
	// Done with the rejoin: a later isolation alone settles nothing.
	a.SetIsolated(true)
	a.SetIsolated(false)
	if got := a.State(*now); got != StateOK {
		t.Fatalf("isolation after a completed rejoin: %v, want ok", got)
	}
}

func TestSettlingMemberServesWhenNothingElseCan(t *testing.T) {
	p, _ := newTestPool(t, "byrequests", Options{RejoinSettle: time.Hour}, "a:1", "b:1")
	a, b := p.Members()[0], p.Members()[1]
	a.SetDown(true)
	a.SetDown(false)
	b.SetDown(true)
	if m, _, err := p.Pick(&Request{}); err != nil || m != a {
		t.Fatalf("new session with only a settling member: %v %v", m, err)
	}
	if m, out, err := p.Pick(&Request{Route: []byte("a"), SessionKey: []byte("s")}); err != nil || m != a || out != Hit {
		t.Fatalf("a's own session with no partner: %v %v %v, want a (hit)", m, out, err)
	}
}
