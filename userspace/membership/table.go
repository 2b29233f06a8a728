package membership

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Defaults for a zero Config field; DefaultDropTime is Tomcat's dropTime.
const (
	DefaultDropTime   = 3 * time.Second
	DefaultMaxMembers = 1024
)

// Config sets up a Table.
type Config struct {
	// DropTime is how long a member may stay silent before Expire drops
	// it. Zero or negative means DefaultDropTime. Set it to the cluster's
	// dropTime so catherd and Tomcat agree on who is a member.
	DropTime time.Duration

	// Domain is the only cluster domain whose beacons count; it must match
	// the beacon's domain byte for byte. The zero value accepts only
	// beacons with an empty domain, which is what Tomcat sends unless the
	// cluster sets a domain attribute. Matching exactly (rather than
	// accepting anything when empty) keeps a second cluster sharing the
	// multicast group from becoming catherd's backends by accident.
	Domain string

	// AnyDomain accepts beacons of every domain (Domain is unused), for
	// a catherd in front of several clusters that share the group; each
	// member's domain is then what its beacons say.
	AnyDomain bool

	// MaxMembers bounds the table: beacons are unauthenticated, and each
	// new host and port would otherwise cost memory for as long as it is
	// repeated. When full, beacons of new members are refused (and
	// counted) until some member leaves or expires; members already in
	// the table keep refreshing and restarting. Zero or negative means
	// DefaultMaxMembers.
	MaxMembers int
}

// Member is one cluster member as the table knows it.
type Member struct {
	// Host, Port and UniqueID together identify the member, as in Tomcat.
	Host     netip.Addr
	Port     int32
	UniqueID [16]byte
	// Domain is the cluster domain its beacons carry.
	Domain string
	// AliveMillis is the uptime the member reported in its last beacon.
	AliveMillis int64
	// FirstHeard and LastHeard are receive times as passed by the caller.
	FirstHeard time.Time
	LastHeard  time.Time
}

// EventKind says what a beacon did to the table.
type EventKind uint8

const (
	// Ignored: the beacon changed nothing; Event.Reason says why.
	Ignored EventKind = iota
	// Joined: a member on a host and port not in the table appeared.
	Joined
	// Refreshed: a known member was heard again.
	Refreshed
	// Restarted: a new uniqueId appeared on a known host and port. The
	// old incarnation (Event.Previous) has left and a new one
	// (Event.Member) has joined; DeltaManager nodes need time to fetch
	// the sessions again before they are a good failover target.
	Restarted
	// Left: the member announced its shutdown and was removed at once.
	Left
)

func (k EventKind) String() string {
	switch k {
	case Joined:
		return "joined"
	case Refreshed:
		return "refreshed"
	case Restarted:
		return "restarted"
	case Left:
		return "left"
	default:
		return "ignored"
	}
}

// IgnoreReason says why a beacon was ignored.
type IgnoreReason uint8

const (
	// NotIgnored is the Reason of every event that is not Ignored.
	NotIgnored IgnoreReason = iota
	// WrongDomain: the beacon's domain is not Config.Domain.
	WrongDomain
	// TableFull: a new member while the table held Config.MaxMembers.
	TableFull
	// UnknownShutdown: a shutdown beacon from a member not in the table
	// (host, port and uniqueId must all match, as in Tomcat).
	UnknownShutdown
)

func (r IgnoreReason) String() string {
	switch r {
	case WrongDomain:
		return "wrong domain"
	case TableFull:
		return "table full"
	case UnknownShutdown:
		return "unknown shutdown"
	default:
		return "not ignored"
	}
}

// Event is the outcome of one Observe call.
type Event struct {
	Kind EventKind
	// Member is the member that joined, was refreshed or left; for
	// Restarted, the new incarnation. Zero when Ignored.
	Member Member
	// Previous is the incarnation that a restart replaced; zero otherwise.
	Previous Member
	// Reason is set when Kind is Ignored.
	Reason IgnoreReason
}

// Stats counts what the table has seen, for the caller to export.
// The number of members is always Joins - Leaves - Expiries: a restart
// replaces a member without changing the count.
type Stats struct {
	Observed               uint64 // every beacon passed to Observe
	IgnoredWrongDomain     uint64
	IgnoredTableFull       uint64
	IgnoredUnknownShutdown uint64
	Joins                  uint64 // Joined events
	Restarts               uint64 // Restarted events
	Leaves                 uint64 // Left events (shutdown beacons)
	Expiries               uint64 // members removed by Expire
}

// endpoint is the part of a member's identity that survives a restart.
type endpoint struct {
	host netip.Addr
	port int32
}

// Table is the set of live members.
//
// It is safe for concurrent use: the expected caller has one goroutine
// reading the socket and calling Observe and a ticker calling Expire, and a
// mutex inside is simpler for it than coordinating the two.
//
// Times are the caller's receive times. Pass values from time.Now, whose
// monotonic reading makes silence measurements immune to wall-clock steps;
// like Tomcat, the table judges silence on the receiver's clock and never
// trusts the sender's.
type Table struct {
	mu      sync.Mutex
	cfg     Config
	members map[endpoint]*Member
	stats   Stats
}

// NewTable returns an empty table configured by cfg (zero fields take the
// defaults documented on Config).
func NewTable(cfg Config) *Table {
	if cfg.DropTime <= 0 {
		cfg.DropTime = DefaultDropTime
	}
	if cfg.MaxMembers <= 0 {
		cfg.MaxMembers = DefaultMaxMembers
	}
	return &Table{cfg: cfg, members: make(map[endpoint]*Member)}
}

// Observe applies one beacon received at now and reports what it did.
// It keeps nothing that aliases b.
//
// A member is keyed by host and port; a beacon with a new uniqueId on a
// known host and port is a restart and replaces the old incarnation at once.
// Tomcat instead lets the old one linger until dropTime, but only one
// process can listen on a host and port, so the old incarnation is gone.
func (t *Table) Observe(b *Beacon, now time.Time) Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.Observed++

	if !t.cfg.AnyDomain && string(b.Domain) != t.cfg.Domain {
		t.stats.IgnoredWrongDomain++
		return Event{Kind: Ignored, Reason: WrongDomain}
	}
	key := endpoint{b.Host, b.Port}
	m := t.members[key]

	if b.IsShutdown() {
		if m == nil || m.UniqueID != b.UniqueID {
			t.stats.IgnoredUnknownShutdown++
			return Event{Kind: Ignored, Reason: UnknownShutdown}
		}
		delete(t.members, key)
		t.stats.Leaves++
		m.AliveMillis = b.AliveMillis
		m.LastHeard = now
		return Event{Kind: Left, Member: *m}
	}

	switch {
	case m == nil:
		if len(t.members) >= t.cfg.MaxMembers {
			t.stats.IgnoredTableFull++
			return Event{Kind: Ignored, Reason: TableFull}
		}
		m = newMember(b, now)
		t.members[key] = m
		t.stats.Joins++
		return Event{Kind: Joined, Member: *m}
	case m.UniqueID != b.UniqueID:
		prev := *m
		*m = *newMember(b, now)
		t.stats.Restarts++
		return Event{Kind: Restarted, Member: *m, Previous: prev}
	default:
		m.AliveMillis = b.AliveMillis
		m.LastHeard = now
		return Event{Kind: Refreshed, Member: *m}
	}
}

func newMember(b *Beacon, now time.Time) *Member {
	return &Member{
		Host:        b.Host,
		Port:        b.Port,
		UniqueID:    b.UniqueID,
		Domain:      string(b.Domain),
		AliveMillis: b.AliveMillis,
		FirstHeard:  now,
		LastHeard:   now,
	}
}

// Expire removes and returns (in Members order) the members not heard from
// for more than DropTime at now. A member silent for exactly DropTime stays,
// as in Tomcat. The result is nil when nothing expired, so a frequent ticker
// costs no allocation.
func (t *Table) Expire(now time.Time) []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone []Member
	for key, m := range t.members {
		if now.Sub(m.LastHeard) > t.cfg.DropTime {
			gone = append(gone, *m)
			delete(t.members, key)
		}
	}
	t.stats.Expiries += uint64(len(gone))
	sortMembers(gone)
	return gone
}

// Members returns a copy of the live members sorted by host, then port
// (unique in the table), so that output and logs do not depend on map order.
func (t *Table) Members() []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := make([]Member, 0, len(t.members))
	for _, m := range t.members {
		list = append(list, *m)
	}
	sortMembers(list)
	return list
}

// DomainOf returns the domain of the live member with address host, and
// whether there is one: whether host is in the group. catherd matches
// members to backends by host address, since the beacon carries the
// replication port, not the HTTP or AJP port. IPv4-mapped IPv6 and plain
// IPv4 forms of an address match each other, and host's zone is ignored
// (beacons carry none). It is a linear scan: the table is small and
// bounded by MaxMembers.
func (t *Table) DomainOf(host netip.Addr) (string, bool) {
	host = host.Unmap().WithZone("")
	t.mu.Lock()
	defer t.mu.Unlock()
	for key, m := range t.members {
		if key.host.Unmap() == host {
			return m.Domain, true
		}
	}
	return "", false
}

// Stats returns a snapshot of the counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

func sortMembers(list []Member) {
	slices.SortFunc(list, func(a, b Member) int {
		if c := a.Host.Compare(b.Host); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
}
