package balancer

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/catherd/catherd/session/moved"
)

// Outcome says how a request's member was chosen.
type Outcome uint8

const (
	// New: the request had no session; the member was balanced.
	New Outcome = iota
	// Hit: the session's own member took it.
	Hit
	// Failover: the session's member was unusable; another took it.
	Failover
	// UnknownRoute: the session named a route no member has; it was
	// balanced as a new session.
	UnknownRoute
	// Moved: the session moved earlier (its member failed) and the member
	// it moved to took it, whether or not its old member is back.
	Moved
)

// NumOutcomes is the number of outcomes, for arrays indexed by Outcome.
const NumOutcomes = int(Moved) + 1

// Outcomes lists every outcome, in the order of their values.
var Outcomes = []Outcome{New, Hit, Failover, UnknownRoute, Moved}

func (o Outcome) String() string {
	return [...]string{"new", "hit", "failover", "unknown_route", "moved"}[o]
}

// Errors a pick can end with; the proxy answers both with 503.
var (
	// ErrNoMember: no member is usable.
	ErrNoMember = errors.New("no usable member")
	// ErrNoFailover: the session's member is unusable and failover is off.
	ErrNoFailover = errors.New("session member unusable and failover disabled")
	// ErrNoPartner: the session's member is unusable and no member of its
	// replication domain is left to take it (failover scope "domain").
	ErrNoPartner = errors.New("session member unusable and no member of its replication domain usable")
)

// Request is what the balancer needs to know about a request.
type Request struct {
	// Route is the session's route, nil when the request has no session.
	Route []byte
	// SessionKey is the session id without its route; it picks the
	// failover member, so it must not change when the route does.
	SessionKey []byte
	// ClientIP keys iphash and hash; IPv4-mapped addresses must be unmapped.
	ClientIP netip.Addr
	// Tried holds members already tried for this request; they are not
	// picked again.
	Tried Set

	now time.Time // of the pick, for policies that weigh by share
	// candidates is the pick's working set. It lives here, in the
	// caller's Request, rather than on the stack: handed to a Policy (an
	// interface), it would escape to the heap on every pick.
	candidates Set
}

// Options are the pool-wide settings.
type Options struct {
	// Retry is how long a member stays in the error state after a failure
	// before it is tried again (Apache's retry).
	Retry time.Duration
	// NoFailover answers 503 instead of moving a session whose member is
	// unusable (Apache's nofailover).
	NoFailover bool
	// AnyDomain lets a session move to a member of another replication
	// domain when none of its own is usable (--failover-scope any); by
	// default it moves only within its domain, where its copies are.
	AnyDomain bool
	// Moved, if set, remembers where sessions moved, so that they stay
	// there when their member returns (no flap-back to a stale copy).
	Moved *moved.Table
	// RejoinSettle is how long a member that was lost must be healthy,
	// enabled and in its group before it takes requests again.
	RejoinSettle time.Duration
	// SlowStart is how long, after settling, a returning member's share
	// of new sessions takes to ramp up to its weight.
	SlowStart time.Duration
}

// Pool is a set of members and the rules to choose among them.
type Pool struct {
	members []*Member
	byRoute map[string]*Member
	policy  Policy
	partner *rendezvous // picks failover members by session
	opts    Options
	now     func() time.Time
	// failovers counts failover picks from member i to member j at
	// [i*len(members)+j]: where each member's sessions went.
	failovers  []atomic.Uint64
	evacuating sync.Mutex
}

// NewPool builds a pool; members must have distinct names and routes (the
// configuration checks that) and are indexed in the given order.
func NewPool(members []*Member, method string, opts Options) (*Pool, error) {
	if len(members) == 0 {
		return nil, errors.New("no members")
	}
	if len(members) > MaxMembers {
		return nil, errors.New("too many members")
	}
	p := &Pool{members: members, byRoute: make(map[string]*Member, len(members)), opts: opts, now: time.Now,
		failovers: make([]atomic.Uint64, len(members)*len(members))}
	for i, m := range members {
		m.Index = i
		p.byRoute[m.Route] = m
		m.clock = p.Now
		m.rejoin.settle, m.rejoin.slowStart = opts.RejoinSettle, opts.SlowStart
	}
	p.partner = newRendezvous(members)
	var err error
	if p.policy, err = NewPolicy(method, members); err != nil {
		return nil, err
	}
	return p, nil
}

// Members returns the members in configuration order. The slice is shared:
// do not modify it.
func (p *Pool) Members() []*Member { return p.members }

// Member returns the member with the given name, or nil.
func (p *Pool) Member(name string) *Member {
	for _, m := range p.members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Now is the pool's clock (replaceable in tests).
func (p *Pool) Now() time.Time { return p.now() }

// Pick chooses the member for r. A session whose member can serve it stays
// there (Hit), unless it moved earlier: then the member it moved to keeps
// it (Moved) for as long as that member can. Otherwise, unless failover is
// off, it moves (Failover) to the member that weighted rendezvous hashing
// of the session key ranks first among those of its replication domain
// that could take a new session: every request of the session, on every
// catherd with the same view of the pool, goes to that same partner,
// instead of being spread by the balancing method. A session whose route
// no member has is balanced like a new one. Members in r.Tried are never
// picked.
func (p *Pool) Pick(r *Request) (*Member, Outcome, error) {
	now := p.now()
	r.now = now
	outcome := New
	var home *Member
	if r.Route != nil {
		home = p.byRoute[string(r.Route)]
		if m, ok := p.movedTo(r, home, now); ok {
			return m, Moved, nil
		}
		switch {
		case home == nil:
			outcome = UnknownRoute
		case !r.Tried.Has(home.Index) && home.servesSessions(now):
			return home, Hit, nil
		case p.opts.NoFailover:
			return nil, Failover, ErrNoFailover
		default:
			outcome = Failover
		}
	}
	candidates := &r.candidates
	var ok bool
	if *candidates, ok = p.newSessionCandidates(now, &r.Tried, false); !ok {
		// Like Apache's forcerecovery: when every member is in error,
		// try them anyway rather than fail every request for the whole
		// retry period after a blip that hit them all.
		if *candidates, ok = p.newSessionCandidates(now, &r.Tried, true); !ok {
			return nil, outcome, ErrNoMember
		}
	}
	if outcome == Failover && len(r.SessionKey) > 0 {
		if !p.opts.AnyDomain {
			if *candidates = p.inDomain(*candidates, home.Domain()); candidates.Empty() {
				return nil, outcome, ErrNoPartner
			}
		}
		partner := p.partner.pickKey(p.members, candidates, hashBytes(r.SessionKey), time.Time{})
		if partner == home {
			return home, Hit, nil // a settling home, and no one else left
		}
		p.failovers[home.Index*len(p.members)+partner.Index].Add(1)
		if p.opts.Moved != nil {
			p.opts.Moved.Move(r.SessionKey, partner.Index, moveReason(home), now)
		}
		return partner, outcome, nil
	}
	return p.policy.Pick(p.members, candidates, r), outcome, nil
}

// movedTo returns the member r's session moved to, when it moved and that
// member can serve it. A client that now carries that member's route needs
// the entry no more (the backend renamed the session), so it is dropped.
func (p *Pool) movedTo(r *Request, home *Member, now time.Time) (*Member, bool) {
	if p.opts.Moved == nil || len(r.SessionKey) == 0 {
		return nil, false
	}
	i, ok := p.opts.Moved.Lookup(r.SessionKey, now)
	if !ok {
		return nil, false
	}
	m := p.members[i]
	if m == home || r.Tried.Has(i) || !m.servesSessions(now) {
		// Renamed to its new member's route, or that member failed too
		// (then the session goes home if home serves again, or moves
		// anew): either way the entry is done with.
		p.opts.Moved.Forget(r.SessionKey)
		return nil, false
	}
	return m, true
}

// inDomain keeps the members of set in domain.
func (p *Pool) inDomain(set Set, domain string) Set {
	var out Set
	for i, m := range p.members {
		if set.Has(i) && m.Domain() == domain {
			out.Add(i)
		}
	}
	return out
}

// moveReason says why a session leaves m.
func moveReason(m *Member) moved.Reason {
	switch {
	case m.Flags()&(Disabled|Stopped) != 0:
		return moved.Evacuated
	case m.Isolated() && !m.Down():
		return moved.Isolated
	}
	return moved.Down
}

// newSessionCandidates is the set of members that may take a new session:
// those serving sessions and not draining, leaving hot standbys out unless
// no one else is left, members isolated from their replication group out
// unless nobody in a group is left (better an unreplicated session than
// none, e.g. while catherd has not heard the cluster yet), and settling
// members out unless there is nobody else at all. With
// ignoreErrors, members in the error state count as usable; members that
// failed their health checks never are.
func (p *Pool) newSessionCandidates(now time.Time, tried *Set, ignoreErrors bool) (Set, bool) {
	var primary, standby, isolated, settling Set
	for i, m := range p.members {
		if tried.Has(i) || m.Flags()&(Stopped|Disabled|Drain) != 0 || m.Down() || (!ignoreErrors && m.InError(now)) {
			continue
		}
		switch {
		case m.phase(now) == Settling:
			settling.Add(i)
		case m.Isolated():
			isolated.Add(i)
		case m.Flags()&Standby != 0:
			standby.Add(i)
		default:
			primary.Add(i)
		}
	}
	for _, s := range []Set{primary, standby, isolated, settling} {
		if !s.Empty() {
			return s, true
		}
	}
	return settling, false
}

// Failovers returns how many requests of from's sessions failed over to
// to (each moved session counts once when a moved-session table is set).
func (p *Pool) Failovers(from, to *Member) uint64 {
	return p.failovers[from.Index*len(p.members)+to.Index].Load()
}

// ErrLastInDomain refuses to evacuate a member whose sessions would have
// nowhere to go.
var ErrLastInDomain = errors.New("no other member of its replication domain can take its sessions")

// Evacuate disables m so that its sessions move to their partners, as on
// failover (recorded as evacuated), and it takes no new ones. It refuses
// when no other member could take m's sessions: none usable in m's
// replication domain (or at all, with failover scope any).
func (p *Pool) Evacuate(m *Member) error {
	p.evacuating.Lock() // two evacuations must not both count on each other
	defer p.evacuating.Unlock()
	now := p.now()
	takers := 0
	for _, o := range p.members {
		if o != m && (p.opts.AnyDomain || o.Domain() == m.Domain()) &&
			o.Flags()&(Stopped|Disabled|Drain) == 0 && !o.Down() && o.phase(now) != Settling {
			takers++
		}
	}
	if takers == 0 {
		if p.opts.AnyDomain {
			return errors.New("no other member can take its sessions")
		}
		return ErrLastInDomain
	}
	m.SetFlags(m.Flags() | Disabled)
	return nil
}

// Recover takes m out of the error state at once, instead of at the end
// of its retry period.
func (p *Pool) Recover(m *Member) { m.errorUntil.Store(0) }

// MarkError puts m in the error state for the retry period: it gets no
// requests until then, after which the next request tries it again.
func (p *Pool) MarkError(m *Member) {
	m.errorUntil.Store(p.now().Add(p.opts.Retry).UnixNano())
}
