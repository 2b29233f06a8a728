// Package balancer decides which member serves a request: the member named by
// the session route, a failover member when that one is unusable, or one
// chosen by the balancing method for a new session. It does no I/O: the proxy
// reports outcomes back (errors, bytes, busyness) and the balancer only turns
// them into decisions, so every rule here is testable without sockets.
package balancer

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Flags are the operator-set member flags, named as in mod_proxy_balancer.
type Flags uint32

const (
	// Disabled (D): takes no requests at all, not even its own sessions.
	Disabled Flags = 1 << iota
	// Stopped (S): taken out of service entirely.
	Stopped
	// Drain (N): serves only its existing sticky sessions, no new ones.
	Drain
	// Standby (H): hot standby, used for new sessions only when no other
	// member is usable.
	Standby
)

var flagLetters = []struct {
	flag   Flags
	letter byte
}{{Disabled, 'D'}, {Stopped, 'S'}, {Drain, 'N'}, {Standby, 'H'}}

// ParseFlags reads Apache's status syntax: "+H", "+D+N", "-H" or "H".
func ParseFlags(s string) (Flags, error) {
	var f Flags
	set := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			set = true
		case '-':
			set = false
		default:
			var bit Flags
			for _, fl := range flagLetters {
				if fl.letter == c || fl.letter == c-('a'-'A') {
					bit = fl.flag
				}
			}
			if bit == 0 {
				return 0, fmt.Errorf("unknown status flag %q (want D, S, N or H)", c)
			}
			if set {
				f |= bit
			} else {
				f &^= bit
			}
		}
	}
	return f, nil
}

// String renders flags as letters, e.g. "DH"; "" when none are set.
func (f Flags) String() string {
	var b strings.Builder
	for _, fl := range flagLetters {
		if f&fl.flag != 0 {
			b.WriteByte(fl.letter)
		}
	}
	return b.String()
}

// Member is one backend as the balancer sees it. Its counters are updated
// by the proxy without locks; its name and route never change.
type Member struct {
	// Name identifies the member in flags, metrics and logs.
	Name string
	// Route is the jvmRoute that session ids carry for this member.
	Route string

	index      int // its position in its pool, set by NewPool or Add
	removed    atomic.Bool
	weight     atomic.Int32
	flags      atomic.Uint32
	down       atomic.Bool  // failed its health checks
	isolated   atomic.Bool  // answers, but is out of its replication group
	errorUntil atomic.Int64 // unix nanoseconds; in error state (E) until then
	active     atomic.Int64 // requests in flight, for bybusyness
	picks      atomic.Uint64
	traffic    atomic.Uint64 // bytes both ways, for bytraffic
	bytesOut   atomic.Uint64 // to the member
	bytesIn    atomic.Uint64 // from the member
	lastError  atomic.Pointer[Failure]
	rejoin     rejoin
	stateClock stateClock
	clock      func() time.Time // its pool's clock (time.Now outside a pool)
	domain     atomic.Pointer[string]
	// failures signals the health checker that a failure was recorded
	// (see Failures).
	failures chan struct{}
	// configured is what the configuration set, as the member entered
	// its pool (see Restore).
	configured Configured
}

// NewMember returns a member with the given weight (lbfactor) and flags.
// It reads no clock: its states are dated by its pool's clock from when
// it joins one (NewPool).
func NewMember(name, route string, weight int, flags Flags) *Member {
	m := &Member{Name: name, Route: route, clock: time.Now, failures: make(chan struct{}, 1)}
	m.weight.Store(int32(weight))
	m.flags.Store(uint32(flags))
	m.rejoin.served = m.whole() // configured members are presumed whole
	return m
}

// Index is the member's position in its pool: tables kept beside a pool
// (the proxy's per-member state, the moved-session table) are indexed by
// it.
func (m *Member) Index() int { return m.index }

// Domain is the member's replication domain: the members that hold copies
// of its sessions (mod_jk's domain). "" is the default domain.
func (m *Member) Domain() string {
	if d := m.domain.Load(); d != nil {
		return *d
	}
	return ""
}

// SetDomain moves the member to another replication domain (the cluster's
// heartbeats may say which it is in).
func (m *Member) SetDomain(d string) { m.domain.Store(&d) }

// Weight is the member's share of new sessions relative to the others.
func (m *Member) Weight() int { return int(m.weight.Load()) }

// Flags returns the operator-set flags.
func (m *Member) Flags() Flags { return Flags(m.flags.Load()) }

// SetFlags replaces the operator-set flags.
func (m *Member) SetFlags(f Flags) {
	m.flags.Store(uint32(f))
	m.reassess()
}

// SetWeight changes the member's weight (lbfactor), at least 1.
func (m *Member) SetWeight(w int) { m.weight.Store(int32(max(w, 1))) }

// SetDown records the verdict of the member's health checks.
func (m *Member) SetDown(down bool) {
	m.down.Store(down)
	m.reassess()
}

// Down reports whether the member failed its health checks.
func (m *Member) Down() bool { return m.down.Load() }

// SetIsolated records whether the member is out of its cluster's
// replication group (absent from the membership heartbeats it should be in).
func (m *Member) SetIsolated(isolated bool) {
	m.isolated.Store(isolated)
	m.reassess()
}

// Isolated reports whether the member is out of its replication group: its
// sessions are not copied anywhere, so it takes no new ones (and no moved
// ones) while members in the group can.
func (m *Member) Isolated() bool { return m.isolated.Load() }

// InError reports whether the member is in the error state (E) at now.
func (m *Member) InError(now time.Time) bool { return now.UnixNano() < m.errorUntil.Load() }

// Active is the number of requests in flight on the member.
func (m *Member) Active() int64 { return m.active.Load() }

// idlePoll is how often WaitIdle counts the requests in flight.
const idlePoll = 50 * time.Millisecond

// RemovalWait is how long a drained removal waits, by default, for the
// member's requests in flight before it removes the member anyway: the
// admin API's, and a tier peer's applying another instance's removal.
const RemovalWait = time.Minute

// WaitIdle waits until the member has no request in flight, or ctx ends
// (its error then). Removals wait so, after an evacuation moved its
// sessions away.
func (m *Member) WaitIdle(ctx context.Context) error {
	tick := time.NewTicker(idlePoll)
	defer tick.Stop()
	for m.Active() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Begin records a request sent to the member; call End when it completes.
func (m *Member) Begin() {
	m.active.Add(1)
	m.picks.Add(1)
}

// End records that a request begun with Begin completed, having sent the
// member sent bytes and received received from it.
func (m *Member) End(sent, received uint64) {
	m.active.Add(-1)
	m.traffic.Add(sent + received)
	m.bytesOut.Add(sent)
	m.bytesIn.Add(received)
}

// Traffic is what the member has done: requests sent to it (retries
// included) and bytes to and from it.
func (m *Member) Traffic() (requests, bytesOut, bytesIn uint64) {
	return m.picks.Load(), m.bytesOut.Load(), m.bytesIn.Load()
}

// Failure is a member's most recent failure, as shown to operators.
type Failure struct {
	At  time.Time
	Msg string
}

// SetLastError records a failure of the member (a failed exchange or
// health check), and signals it on Failures.
func (m *Member) SetLastError(at time.Time, msg string) {
	m.lastError.Store(&Failure{At: at, Msg: msg})
	select {
	case m.failures <- struct{}{}:
	default: // one signal pending is enough
	}
}

// Failures signals that failures were recorded (SetLastError) since the
// last receive: the health checker then probes the member at once instead
// of waiting for its next turn, so that a member that died is shown down
// within a probe or two of the first request that met it. One signal
// stands for any number of failures; it has one receiver.
func (m *Member) Failures() <-chan struct{} { return m.failures }

// LastError is the member's most recent failure, nil if none.
func (m *Member) LastError() *Failure { return m.lastError.Load() }

// State names the member's effective state at now, most severe first.
func (m *Member) State(now time.Time) State {
	f := m.Flags()
	switch {
	case f&Stopped != 0:
		return StateStopped
	case f&Disabled != 0:
		return StateDisabled
	case m.Down():
		return StateDown
	case m.Isolated():
		return StateIsolated
	case m.phase(now) == Settling:
		return StateSettling
	case m.InError(now):
		return StateError
	case f&Drain != 0:
		return StateDrain
	case f&Standby != 0:
		return StateStandby
	}
	return StateOK
}

// State is a member's effective state.
type State uint8

// The states, as exported in metrics.
const (
	StateOK State = iota
	StateError
	StateDisabled
	StateStopped
	StateDrain
	StateStandby
	StateDown
	StateIsolated
	StateSettling
)

// States lists every state, in the order of their values.
var States = []State{StateOK, StateError, StateDisabled, StateStopped, StateDrain, StateStandby, StateDown, StateIsolated, StateSettling}

func (s State) String() string {
	return [...]string{"ok", "error", "disabled", "stopped", "drain", "standby", "down", "isolated", "settling"}[s]
}

// The questions the rules ask of a member, each answered in one place.

// enabled reports whether operators let the member take requests: it is
// neither stopped nor disabled.
func (m *Member) enabled() bool { return m.Flags()&(Stopped|Disabled) == 0 && !m.removed.Load() }

// Removed reports whether the member was removed from its pool (Remove):
// it takes no request, and tables kept beside the pool drop it.
func (m *Member) Removed() bool { return m.removed.Load() }

// whole reports whether the member is in service as far as everything but
// its rejoin phase and error state goes: enabled, healthy, in its
// replication group. Its way back after a loss starts when it is whole
// again (reassess).
func (m *Member) whole() bool { return m.enabled() && !m.Down() && !m.Isolated() }

// servesSessions reports whether the member may take requests of sessions
// it already owns. A settling member may not: its partners have their
// copies. An isolated one may: only it has its sessions current.
func (m *Member) servesSessions(now time.Time) bool {
	return m.enabled() && !m.Down() && !m.InError(now) && m.phase(now) != Settling
}

// takesNewSessions reports whether the member may be given sessions it
// does not own (new ones, or ones moving off another member): enabled,
// healthy, not draining and, unless ignoreErrors, not in the error state.
// Which of those are preferred (standbys, isolated and settling members
// last) is newSessionCandidates' rule.
func (m *Member) takesNewSessions(now time.Time, ignoreErrors bool) bool {
	return m.enabled() && m.Flags()&Drain == 0 && !m.Down() && (ignoreErrors || !m.InError(now))
}
