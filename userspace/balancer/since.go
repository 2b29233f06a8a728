package balancer

import (
	"sync"
	"time"
)

// stateClock remembers since when a member has been in its current state,
// for operators ("down for 3 minutes"). The state is derived on each read
// from flags, health, group membership, the error deadline and the rejoin
// phase, so there is no single place where it changes: changes of the
// inputs are noted as they happen (note), and a change that happened by
// the passing of time (the error state or settling ended) is dated by the
// deadline that passed.
type stateClock struct {
	mu    sync.Mutex
	state State
	since time.Time
	known bool
}

// note records the member's state after one of its inputs changed at now.
func (m *Member) note(now time.Time) {
	c := &m.stateClock
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := m.State(now); !c.known || s != c.state {
		c.state, c.since, c.known = s, now, true
	}
}

// startStateClock dates the member's state from now on, as its pool
// starts.
func (m *Member) startStateClock(now time.Time) {
	c := &m.stateClock
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state, c.since, c.known = m.State(now), now, true
}

// StateSince returns the member's state at now and since when it has been
// in it: since catherd started (or took over) at the earliest.
func (m *Member) StateSince(now time.Time) (State, time.Time) {
	c := &m.stateClock
	c.mu.Lock()
	defer c.mu.Unlock()
	s := m.State(now)
	if !c.known { // a member outside a pool
		c.state, c.since, c.known = s, now, true
	}
	if s != c.state {
		// No input changed, or note would have seen it: a deadline
		// passed. Date the change by the latest one that did.
		at := now
		if t, ok := m.lastDeadline(c.since, now); ok {
			at = t
		}
		c.state, c.since = s, at
	}
	return s, c.since
}

// lastDeadline is the latest of the member's deadlines (end of the error
// state, end of settling) that passed after from and by now.
func (m *Member) lastDeadline(from, now time.Time) (time.Time, bool) {
	var latest time.Time
	deadlines := []time.Time{time.Unix(0, m.errorUntil.Load())}
	if back := m.rejoin.since.Load(); back != 0 {
		deadlines = append(deadlines, time.Unix(0, back).Add(m.rejoin.settle))
	}
	for _, d := range deadlines {
		if d.After(from) && !d.After(now) && d.After(latest) {
			latest = d
		}
	}
	return latest, !latest.IsZero()
}

// restoreSince carries over since when the member has been in state, from
// a process that took over: the same state goes on.
func (m *Member) restoreSince(state State, since time.Time, now time.Time) {
	c := &m.stateClock
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := m.State(now); s == state && !since.IsZero() && since.Before(now) {
		c.state, c.since, c.known = s, since, true
	}
}
