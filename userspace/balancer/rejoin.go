package balancer

import (
	"sync"
	"sync/atomic"
	"time"
)

// rejoin follows a member's way back into service after it was lost: it
// failed its health checks, or an operator disabled or stopped it, after it
// had served. A node that returns is not whole at once: its replication
// state may still be arriving (DeltaManager's state transfer), and a cold
// JVM serves a full share of new sessions badly. So a returning member
// first settles (it takes no request at all, its own sessions go to their
// partners and stay there) until it has been healthy, enabled and in its
// replication group for the settle time; then its share of new sessions
// ramps up over the slow-start time.
//
// Members are presumed whole when configured. One that is first heard in
// its replication group after catherd started (the usual start-up with
// membership) does not settle: nothing says it just came back. Nor does
// one that only left its group while it kept answering: it kept serving
// its own sessions, which only it has current.
type rejoin struct {
	settle, slowStart time.Duration // set by NewPool

	mu     sync.Mutex
	served bool // whole at some point since catherd started
	lost   bool // went down, disabled or stopped after it had served

	// since is when a lost member last became whole (unix nanoseconds);
	// 0 while it is not, or when it was never lost. Read on every pick.
	since atomic.Int64
}

// Phase is where a member stands on its way back.
type Phase uint8

const (
	// Steady: in service with its full weight.
	Steady Phase = iota
	// Settling: back, but not past the settle time: no requests yet.
	Settling
	// Ramping: past settling; its weight ramps up over the slow start.
	Ramping
)

// reassess updates the rejoin state after any change of flags, health or
// group membership.
func (m *Member) reassess() {
	rj := &m.rejoin
	rj.mu.Lock()
	defer rj.mu.Unlock()
	now := m.clock()
	defer m.note(now)
	// A rejoin that completed is forgotten first, so that a later
	// isolation alone does not make the member settle again.
	if rj.lost && rj.since.Load() != 0 && m.phase(now) == Steady {
		rj.lost = false
		rj.since.Store(0)
	}
	switch whole := m.whole(); {
	case whole && !rj.served:
		rj.served = true
	case whole && rj.lost && rj.since.Load() == 0:
		rj.since.Store(now.UnixNano())
	case !whole && rj.lost:
		rj.since.Store(0) // fell again before it was back: start over
	case !whole && rj.served && (m.Down() || !m.enabled()):
		rj.lost = true
	}
}

// phase is the member's rejoin phase at now.
func (m *Member) phase(now time.Time) Phase {
	since := m.rejoin.since.Load()
	if since == 0 {
		return Steady
	}
	back := now.Sub(time.Unix(0, since))
	switch {
	case back < m.rejoin.settle:
		return Settling
	case back < m.rejoin.settle+m.rejoin.slowStart:
		return Ramping
	}
	return Steady
}

// shareScale is the fixed-point unit of share: a member's full weight w is
// a share of w*shareScale, so a ramp has a thousand steps per weight unit.
const shareScale = 1000

// share is the member's weight for new sessions at now: its weight, scaled
// down along the slow-start ramp. Never 0 (a member just past settling
// takes a trickle, not nothing).
func (m *Member) share(now time.Time) int64 {
	full := int64(m.Weight()) * shareScale
	if m.phase(now) != Ramping {
		return full
	}
	into := now.Sub(time.Unix(0, m.rejoin.since.Load())) - m.rejoin.settle
	return max(1, int64(float64(full)*float64(into)/float64(m.rejoin.slowStart)))
}

// Ramp is the fraction of its weight the member gets for new sessions at
// now: 1 but while it ramps up after a return.
func (m *Member) Ramp(now time.Time) float64 {
	full := int64(m.Weight()) * shareScale
	if full <= 0 {
		return 1
	}
	return float64(m.share(now)) / float64(full)
}
