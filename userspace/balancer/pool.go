package balancer

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
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
	// candidates is the set a balanced pick chooses among.
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
	// Clock is the pool's clock, which its members' states are dated by
	// and every deadline is read on; nil is time.Now.
	Clock func() time.Time
}

// Pool is a set of members and the rules to choose among them.
type Pool struct {
	method string
	opts   Options
	now    func() time.Time
	// roster is the members as one value, replaced whole when a member
	// is added or removed (under changing), so that a pick reads one
	// consistent set without a lock.
	roster   atomic.Pointer[roster]
	changing sync.Mutex
	// failovers counts failover picks by [from, to] member: where each
	// member's sessions went (*atomic.Uint64 values).
	failovers  sync.Map
	evacuating sync.Mutex
}

// roster is a pool's members at one time.
type roster struct {
	// slots holds every member by its index: tables kept beside a pool
	// (the proxy's, the moved-session table) are indexed alike. A removed
	// member keeps its slot, never picked, until a member added when
	// every slot is taken reuses it.
	slots []*Member
	// members are the slots' members that are not removed, in the order
	// they were configured or added.
	members []*Member
	byRoute map[string]*Member
	policy  Policy
	partner *rendezvous // picks failover members by session
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
	p := &Pool{method: method, opts: opts, now: opts.Clock}
	if p.now == nil {
		p.now = time.Now
	}
	for i, m := range members {
		p.adopt(m, i)
	}
	r, err := p.newRoster(members)
	if err != nil {
		return nil, err
	}
	p.roster.Store(r)
	return p, nil
}

// adopt makes m the pool's member at index i.
func (p *Pool) adopt(m *Member, i int) {
	m.index = i
	m.clock = p.now
	m.rejoin.settle, m.rejoin.slowStart = p.opts.RejoinSettle, p.opts.SlowStart
	m.startStateClock(p.now()) // dated by the pool's clock from now on
	m.configured = Configured{Flags: m.Flags(), Weight: m.Weight(), Domain: m.Domain()}
}

// newRoster indexes slots (each member's index set) for picks: a policy
// and failover partners of its own, as both keep state by index.
func (p *Pool) newRoster(slots []*Member) (*roster, error) {
	r := &roster{slots: slots, byRoute: make(map[string]*Member, len(slots))}
	for _, m := range slots {
		if !m.Removed() {
			r.members = append(r.members, m)
			r.byRoute[m.Route] = m
		}
	}
	// A removed member's route still names it, unless a member has the
	// route now: its sessions fail over to their partners, as when it
	// fails, rather than being balanced as unknown.
	for _, m := range slots {
		if _, taken := r.byRoute[m.Route]; !taken {
			r.byRoute[m.Route] = m
		}
	}
	var err error
	if r.policy, err = NewPolicy(p.method, slots); err != nil {
		return nil, err
	}
	r.partner = newRendezvous(slots)
	return r, nil
}

// Members returns the members (removed ones aside) in the order they were
// configured or added. The slice is shared: do not modify it.
func (p *Pool) Members() []*Member { return p.roster.Load().members }

// At returns the member at index i (Member.Index), as tables kept beside
// the pool name it; nil when no member has that index, or when it was
// removed.
func (p *Pool) At(i int) *Member {
	slots := p.roster.Load().slots
	if i < 0 || i >= len(slots) || slots[i].Removed() {
		return nil
	}
	return slots[i]
}

// Member returns the member with the given name, or nil.
func (p *Pool) Member(name string) *Member {
	for _, m := range p.Members() {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Errors of Add and Remove.
var (
	ErrMemberExists = errors.New("a member has that name or route already")
	ErrPoolFull     = errors.New("the pool has as many members as it can hold")
	ErrLastMember   = errors.New("the last member cannot be removed")
)

// Add makes m a member of the pool (taking requests from its first pick
// on, as its flags allow) and reports its index. Its name and route must
// be new to the pool. attach, if not nil, is called once m has its index
// and before any pick can choose it, so that what is kept beside the pool
// by index (the proxy's upstreams) is ready for it.
func (p *Pool) Add(m *Member, attach func()) (int, error) {
	p.changing.Lock()
	defer p.changing.Unlock()
	old := p.roster.Load()
	for _, o := range old.members {
		if o.Name == m.Name || o.Route == m.Route {
			return 0, ErrMemberExists
		}
	}
	slots := slices.Clone(old.slots)
	i := len(slots)
	if i == MaxMembers {
		if i = slices.IndexFunc(slots, (*Member).Removed); i < 0 {
			return 0, ErrPoolFull
		}
		// Nothing may point at the slot's old member any more: its
		// moved sessions were forgotten when it was removed, and its
		// failover counts go with it.
		p.forgetFailovers(slots[i])
		slots[i] = m
	} else {
		slots = append(slots, m)
	}
	p.adopt(m, i)
	r, err := p.newRoster(slots)
	if err != nil {
		return 0, err
	}
	if attach != nil {
		attach()
	}
	p.roster.Store(r)
	return i, nil
}

// Remove takes m out of the pool at once: it gets no request from the
// next pick on, the sessions that moved to it are forgotten (they go home
// or move anew), and the sessions it owns move to their partners as when
// it fails. Requests in flight to it finish. Draining it first (Evacuate,
// then waiting for Active to reach 0) is the caller's choice.
func (p *Pool) Remove(m *Member) error {
	p.changing.Lock()
	defer p.changing.Unlock()
	old := p.roster.Load()
	if !slices.Contains(old.members, m) {
		return fmt.Errorf("%s is not a member", m.Name)
	}
	if len(old.members) == 1 {
		return ErrLastMember
	}
	m.removed.Store(true)
	m.reassess()
	if p.opts.Moved != nil {
		p.opts.Moved.ForgetMember(m.index)
	}
	r, err := p.newRoster(old.slots)
	if err != nil {
		return err
	}
	p.roster.Store(r)
	return nil
}

// Method names the balancing method of new sessions (--lbmethod).
func (p *Pool) Method() string { return p.method }

// Usable reports whether a member can take a new session now (members in
// the error state do not count, though a request would still try them).
func (p *Pool) Usable() bool {
	_, ok := p.roster.Load().newSessionCandidates(p.now(), &Set{}, false)
	return ok
}

// Now is the pool's clock (Options.Clock).
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
	ro := p.roster.Load()
	d := p.decide(ro, r, now, func(key []byte) (moved.Entry, bool) {
		i, ok := p.opts.Moved.Lookup(key, now) // counts as use
		return moved.Entry{Member: i}, ok
	})
	if d.staleMove {
		p.opts.Moved.Forget(r.SessionKey)
	}
	switch {
	case d.err != nil:
		return nil, d.outcome, d.err
	case d.member == nil:
		// In the caller's Request: handed to a Policy (an interface), a
		// set on the stack would escape to the heap on every pick.
		r.candidates = d.candidates
		return ro.policy.Pick(ro.slots, &r.candidates, r), d.outcome, nil
	case d.outcome == Failover:
		p.countFailover(d.home, d.member)
		if p.opts.Moved != nil {
			p.opts.Moved.Move(r.SessionKey, d.member.index, moveReason(d.home), now)
		}
	}
	return d.member, d.outcome, nil
}

// Decision is where a request of a session would go now, and why, as
// Explain tells it.
type Decision struct {
	// Outcome: Hit (its own member), Moved (where it moved earlier),
	// Failover (its member is unusable: its partner), or New or
	// UnknownRoute (balanced among Candidates by the method).
	Outcome Outcome
	// Member takes it; nil when it is balanced, or when none can (Err).
	Member *Member
	// Home is the member its route names; nil when none does.
	Home *Member
	// MovedTo is where the moved-session table says it went, also when
	// that no longer holds (that member cannot serve it now).
	MovedTo *Member
	// Moved says why it moved, when MovedTo is set.
	Moved moved.Reason
	// Candidates are the members a balanced request is picked among.
	Candidates []*Member
	// Err is why no member can take it: ErrNoMember, ErrNoFailover or
	// ErrNoPartner (the request would get 503).
	Err error
}

// Explain says where the next request of the session (route, key) would
// go now and why, by the same rules as Pick but without any of Pick's
// effects: nothing is counted, moved, forgotten or balanced.
func (p *Pool) Explain(route, key []byte) Decision {
	now := p.now()
	r := &Request{Route: route, SessionKey: key, now: now}
	ro := p.roster.Load()
	var movedTo *Member
	var why moved.Reason
	d := p.decide(ro, r, now, func(key []byte) (moved.Entry, bool) {
		e, ok := p.opts.Moved.Peek(key, now)
		if ok && e.Member < len(ro.slots) {
			movedTo, why = ro.slots[e.Member], e.Reason
		}
		return e, ok
	})
	out := Decision{Outcome: d.outcome, Member: d.member, Home: d.home, MovedTo: movedTo, Moved: why, Err: d.err}
	if d.err == nil && d.member == nil {
		for i, m := range ro.slots {
			if d.candidates.Has(i) {
				out.Candidates = append(out.Candidates, m)
			}
		}
	}
	return out
}

// decision is what decide found.
type decision struct {
	outcome    Outcome
	member     *Member // nil: balance among candidates
	home       *Member
	candidates Set
	staleMove  bool // the moved-session entry no longer applies
	err        error
}

// decide applies Pick's rules to r at now among ro's members, reading the
// moved-session table through lookup, and changes nothing.
func (p *Pool) decide(ro *roster, r *Request, now time.Time, lookup func(key []byte) (moved.Entry, bool)) decision {
	d := decision{outcome: New}
	if r.Route != nil {
		d.home = ro.byRoute[string(r.Route)]
		if p.opts.Moved != nil && len(r.SessionKey) > 0 {
			if e, ok := lookup(r.SessionKey); ok {
				if e.Member >= len(ro.slots) {
					ro = p.roster.Load() // a member added since this pick began
				}
				if e.Member < len(ro.slots) {
					m := ro.slots[e.Member]
					if m != d.home && !r.Tried.Has(e.Member) && m.servesSessions(now) {
						d.outcome, d.member = Moved, m
						return d
					}
				}
				// Renamed to its new member's route, or that member
				// failed too (then the session goes home if home
				// serves again, or moves anew): either way the entry
				// is done with.
				d.staleMove = true
			}
		}
		switch {
		case d.home == nil:
			d.outcome = UnknownRoute
		case !r.Tried.Has(d.home.index) && d.home.servesSessions(now):
			d.outcome, d.member = Hit, d.home
			return d
		case p.opts.NoFailover:
			d.outcome, d.err = Failover, ErrNoFailover
			return d
		default:
			d.outcome = Failover
		}
	}
	candidates, ok := ro.newSessionCandidates(now, &r.Tried, false)
	if !ok {
		// Like Apache's forcerecovery: when every member is in error,
		// try them anyway rather than fail every request for the whole
		// retry period after a blip that hit them all.
		if candidates, ok = ro.newSessionCandidates(now, &r.Tried, true); !ok {
			d.err = ErrNoMember
			return d
		}
	}
	d.candidates = candidates
	if d.outcome != Failover || len(r.SessionKey) == 0 {
		return d // balanced (a failover without a key has no partner)
	}
	if !p.opts.AnyDomain {
		if candidates = ro.inDomain(candidates, d.home.Domain()); candidates.Empty() {
			d.err = ErrNoPartner
			return d
		}
	}
	d.member = ro.partner.pickKey(ro.slots, &candidates, hashBytes(r.SessionKey), time.Time{})
	if d.member == d.home {
		d.outcome = Hit // a settling home, and no one else left
	}
	return d
}

// inDomain keeps the members of set in domain.
func (ro *roster) inDomain(set Set, domain string) Set {
	var out Set
	for i, m := range ro.slots {
		if set.Has(i) && m.Domain() == domain {
			out.Add(i)
		}
	}
	return out
}

// moveReason says why a session leaves m.
func moveReason(m *Member) moved.Reason {
	switch {
	case !m.enabled():
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
func (ro *roster) newSessionCandidates(now time.Time, tried *Set, ignoreErrors bool) (Set, bool) {
	var primary, standby, isolated, settling Set
	for i, m := range ro.slots {
		if tried.Has(i) || !m.takesNewSessions(now, ignoreErrors) {
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
	if n, ok := p.failovers.Load([2]*Member{from, to}); ok {
		return n.(*atomic.Uint64).Load()
	}
	return 0
}

func (p *Pool) countFailover(from, to *Member) {
	n, ok := p.failovers.Load([2]*Member{from, to})
	if !ok {
		n, _ = p.failovers.LoadOrStore([2]*Member{from, to}, new(atomic.Uint64))
	}
	n.(*atomic.Uint64).Add(1)
}

// forgetFailovers drops the counts from and to m.
func (p *Pool) forgetFailovers(m *Member) {
	p.failovers.Range(func(k, _ any) bool {
		if pair := k.([2]*Member); pair[0] == m || pair[1] == m {
			p.failovers.Delete(k)
		}
		return true
	})
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
	for _, o := range p.Members() {
		// Sessions move as on failover, to members that could take a
		// new session (errors aside: they pass), settling ones not.
		if o != m && (p.opts.AnyDomain || o.Domain() == m.Domain()) && o.takesNewSessions(now, true) && o.phase(now) != Settling {
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
func (p *Pool) Recover(m *Member) {
	m.errorUntil.Store(0)
	m.note(p.now())
}

// MarkError puts m in the error state for the retry period: it gets no
// requests until then, after which the next request tries it again.
func (p *Pool) MarkError(m *Member) {
	now := p.now()
	m.errorUntil.Store(now.Add(p.opts.Retry).UnixNano())
	m.note(now)
}
