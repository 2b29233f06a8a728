package balancer

import (
	"time"

	"github.com/catherd/catherd/session/moved"
)

// Snapshot is what a process taking over from this one (userspace/handoff)
// needs of the pool to go on where it left off: each member as operators,
// health checks and its way back left it, and the sessions that moved.
// It travels as JSON between two catherd builds, so its fields only grow.
type Snapshot struct {
	Members []MemberSnapshot `json:"members"`
	Moved   []MovedSession   `json:"moved"`
	// Added are the specs (--backend values) of members added at run
	// time, which the receiver adds before it restores the rest; the pool
	// neither fills nor reads them.
	Added []string `json:"added,omitempty"`
}

// MovedSession is a moved-session table entry, its member named: the
// successor's members may be numbered differently.
type MovedSession struct {
	Key      string       `json:"key"`
	Member   string       `json:"member"`
	Reason   moved.Reason `json:"reason"`
	LastUsed time.Time    `json:"last_used"`
}

// Snapshot describes the pool's members and moved sessions for Restore.
func (p *Pool) Snapshot() Snapshot { return p.snapshot(true) }

// MembersSnapshot is Snapshot without the moved sessions, which may be
// many: cheap enough to compare every second.
func (p *Pool) MembersSnapshot() Snapshot { return p.snapshot(false) }

func (p *Pool) snapshot(withMoved bool) Snapshot {
	var s Snapshot
	ro := p.roster.Load()
	for _, m := range ro.members {
		s.Members = append(s.Members, m.snapshot())
	}
	if withMoved && p.opts.Moved != nil {
		for _, e := range p.opts.Moved.Snapshot() {
			if e.Member < len(ro.slots) && !ro.slots[e.Member].Removed() {
				s.Moved = append(s.Moved, MovedSession{Key: e.Key, Member: ro.slots[e.Member].Name, Reason: e.Reason, LastUsed: e.LastUsed})
			}
		}
	}
	return s
}

// Restore applies a predecessor's snapshot by member name and reports how
// many members and moved sessions it restored. Members, and sessions of
// members, that this pool does not have are left out.
func (p *Pool) Restore(s Snapshot) (members, sessions int) {
	return p.apply(s, (*Member).restore)
}

// Settings is the part of a snapshot that outlives the process, in a state
// file (--state-file): what operators set on each member, and the sessions
// that moved. What health checks and the cluster observed (down, domain,
// state, the way back after a loss) is left out: the next process
// observes it again.
func (s Snapshot) Settings() Snapshot {
	out := Snapshot{Moved: s.Moved, Added: s.Added}
	for _, m := range s.Members {
		out.Members = append(out.Members, MemberSnapshot{Name: m.Name, Flags: m.Flags, Weight: m.Weight, Configured: m.Configured})
	}
	return out
}

// Resume applies Settings that an earlier process saved, as Restore does
// a predecessor's snapshot: by member name, an edited --backend winning.
func (p *Pool) Resume(s Snapshot) (members, sessions int) {
	return p.apply(s, (*Member).restoreSettings)
}

func (p *Pool) apply(s Snapshot, restore func(*Member, MemberSnapshot)) (members, sessions int) {
	all := p.Members()
	byName := make(map[string]*Member, len(all))
	for _, m := range all {
		byName[m.Name] = m
	}
	for _, ms := range s.Members {
		if m, ok := byName[ms.Name]; ok {
			restore(m, ms)
			members++
		}
	}
	if p.opts.Moved == nil {
		return members, 0
	}
	entries := make([]moved.Entry, 0, len(s.Moved))
	for _, ms := range s.Moved {
		if m, ok := byName[ms.Member]; ok {
			entries = append(entries, moved.Entry{Key: ms.Key, Member: m.index, Reason: ms.Reason, LastUsed: ms.LastUsed})
		}
	}
	p.opts.Moved.Restore(entries, p.now())
	return members, len(entries)
}

// MemberSnapshot is what a process taking over from this one needs to go
// on where it left off with a member: what operators set (flags, weight), what
// its health checks found, the domain it learnt, and its way back after a
// loss. The group membership is not in it: heartbeats tell the next process
// within a second.
type MemberSnapshot struct {
	Name   string `json:"name"`
	Flags  Flags  `json:"flags"`
	Weight int    `json:"weight"`
	Down   bool   `json:"down"`
	Domain string `json:"domain"`
	// Configured is what the member's configuration said (--backend):
	// Restore keeps the successor's own configuration where it differs
	// (nil from a catherd too old to say).
	Configured *Configured `json:"configured,omitempty"`
	Served     bool        `json:"served"`
	Lost       bool        `json:"lost"`
	// BackSince is when a lost member became whole again (Unix
	// nanoseconds; 0 when it is not back, or was not lost).
	BackSince int64 `json:"back_since"`
	// State, and since when the member has been in it (Unix
	// nanoseconds), so that a successor goes on counting.
	State      string `json:"state,omitempty"`
	StateSince int64  `json:"state_since,omitempty"`
}

// snapshot describes the member for restore.
func (m *Member) snapshot() MemberSnapshot {
	rj := &m.rejoin
	rj.mu.Lock()
	defer rj.mu.Unlock()
	state, since := m.StateSince(m.clock())
	configured := m.configured
	return MemberSnapshot{Name: m.Name, Flags: m.Flags(), Weight: m.Weight(), Down: m.Down(), Domain: m.Domain(), Configured: &configured,
		Served: rj.served, Lost: rj.lost, BackSince: rj.since.Load(), State: state.String(), StateSince: since.UnixNano()}
}

// restoreSettings applies what operators set (flags, weight), except
// where this process's configuration differs from the one s was taken
// under: an edited --backend wins.
func (m *Member) restoreSettings(s MemberSnapshot) {
	c := s.Configured
	if c == nil || c.Flags == m.configured.Flags {
		m.flags.Store(uint32(s.Flags))
	}
	if c == nil || c.Weight == m.configured.Weight {
		m.SetWeight(s.Weight)
	}
}

// Configured is what the member's configuration set, as it entered the
// pool.
func (m *Member) Configured() Configured { return m.configured }

// Configured is what a member's configuration (its --backend flag) set.
type Configured struct {
	Flags  Flags  `json:"flags"`
	Weight int    `json:"weight"`
	Domain string `json:"domain"`
}

// restore makes the member what s describes (its name aside). A member
// that was settling or ramping goes on from where it was. What operators
// changed at run time (flags, weight) and the domain learnt from the
// cluster carry over, except where this process's configuration differs
// from the predecessor's: an edited --backend then wins (a reload that
// picks up new flags).
func (m *Member) restore(s MemberSnapshot) {
	m.restoreSettings(s)
	if c := s.Configured; c == nil || c.Domain == m.configured.Domain {
		m.SetDomain(s.Domain)
	}
	m.down.Store(s.Down)
	rj := &m.rejoin
	rj.mu.Lock()
	rj.served, rj.lost = s.Served, s.Lost
	rj.since.Store(s.BackSince)
	rj.mu.Unlock()
	now := m.clock()
	m.note(now)
	for _, st := range States {
		if st.String() == s.State && s.StateSince != 0 {
			m.restoreSince(st, time.Unix(0, s.StateSince), now)
		}
	}
}
