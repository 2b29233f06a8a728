package balancer

import (
	"testing"
	"time"
)

// Since when a member is in its state: input changes are dated when they
// happen, the end of the error state and of settling by their deadlines,
// however late the state is read.
func TestStateSince(t *testing.T) {
	p, now := newTestPool(t, "byrequests", Options{Retry: 10 * time.Second, RejoinSettle: 5 * time.Second}, "a:1", "b:1")
	a := p.Members()[0]
	start := *now
	check := func(wantState State, wantSince time.Time) {
		t.Helper()
		if s, since := a.StateSince(*now); s != wantState || !since.Equal(wantSince) {
			t.Fatalf("at +%v: %v since +%v, want %v since +%v", now.Sub(start), s, since.Sub(start), wantState, wantSince.Sub(start))
		}
	}
	if s, _ := a.StateSince(*now); s != StateOK {
		t.Fatalf("at the start: %v", s)
	}

	*now = start.Add(time.Minute)
	p.MarkError(a)
	errAt := *now
	*now = now.Add(3 * time.Second)
	check(StateError, errAt)
	*now = now.Add(time.Hour) // read long after the retry period ended
	check(StateOK, errAt.Add(10*time.Second))

	a.SetFlags(Disabled)
	disabledAt := *now
	*now = now.Add(time.Minute)
	check(StateDisabled, disabledAt)

	a.SetFlags(0) // back: settles first
	backAt := *now
	*now = now.Add(time.Second)
	check(StateSettling, backAt)
	*now = now.Add(time.Minute)
	check(StateOK, backAt.Add(5*time.Second))

	// A successor goes on counting from the predecessor's date.
	a.SetDown(true)
	downAt := *now
	snap := a.snapshot()
	q, qnow := newTestPool(t, "byrequests", Options{}, "a:1")
	*qnow = now.Add(time.Minute)
	qa := q.Members()[0]
	qa.restore(snap)
	if s, since := qa.StateSince(*qnow); s != StateDown || !since.Equal(downAt) {
		t.Fatalf("after a take-over: %v since %v, want down since %v", s, since, downAt)
	}
}
