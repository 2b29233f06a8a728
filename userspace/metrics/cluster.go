package metrics

import "github.com/prometheus/client_golang/prometheus"

// MembershipStats count the cluster's membership heartbeats (beacons) that
// reached catherd's socket and the changes they made.
type MembershipStats struct {
	Observed  uint64 // beacons decoded and applied to the member table
	Malformed uint64 // datagrams that were not beacons
	// Beacons of Observed that changed nothing: of another domain, for a
	// full table, a shutdown of a member not known.
	IgnoredWrongDomain, IgnoredTableFull, IgnoredUnknownShutdown uint64
	// The table's changes: members that joined, restarted (a new
	// uniqueId), left (shutdown beacon), expired (silent for dropTime).
	Joins, Restarts, Leaves, Expiries uint64
}

// Membership exports what the cluster's membership heartbeats told catherd,
// read at scrape time.
func (m *Metrics) Membership(read func() MembershipStats) {
	m.onScrape([]*prometheus.Desc{membershipMembersDesc, membershipBeaconsDesc, membershipEventsDesc}, func(s sink) {
		st := read()
		s.gauge(membershipMembersDesc, float64(st.Joins-st.Leaves-st.Expiries))
		ignored := st.IgnoredWrongDomain + st.IgnoredTableFull + st.IgnoredUnknownShutdown
		s.counter(membershipBeaconsDesc, st.Observed-ignored, "accepted")
		s.counter(membershipBeaconsDesc, st.Malformed, "malformed")
		s.counter(membershipBeaconsDesc, st.IgnoredWrongDomain, "wrong_domain")
		s.counter(membershipBeaconsDesc, st.IgnoredTableFull, "table_full")
		s.counter(membershipBeaconsDesc, st.IgnoredUnknownShutdown, "unknown_shutdown")
		s.counter(membershipEventsDesc, st.Joins, "join")
		s.counter(membershipEventsDesc, st.Restarts, "restart")
		s.counter(membershipEventsDesc, st.Leaves, "leave")
		s.counter(membershipEventsDesc, st.Expiries, "expire")
	})
}

var (
	membershipMembersDesc = prometheus.NewDesc("catherd_membership_members",
		"Cluster members heard within dropTime.", nil, nil)
	membershipBeaconsDesc = prometheus.NewDesc("catherd_membership_beacons_total",
		"Beacons that reached catherd's socket, by what became of them: accepted (joined, refreshed, restarted or left the table), malformed, wrong_domain, table_full, unknown_shutdown.",
		[]string{"result"}, nil)
	membershipEventsDesc = prometheus.NewDesc("catherd_membership_events_total",
		"Membership changes: join, restart (a new uniqueId: a new member), leave (shutdown beacon), expire (silent for dropTime).",
		[]string{"event"}, nil)
)

// MovedStats describe the moved-session table.
type MovedStats struct {
	Size    int               // sessions in it
	Moves   map[string]uint64 // sessions moved, by reason
	Evicted uint64            // forgotten before their TTL, for room
}

// MovedSessions exports the moved-session table, read at scrape time;
// reasons names every reason a session moves for (each is a series).
func (m *Metrics) MovedSessions(reasons []string, read func() MovedStats) {
	m.onScrape([]*prometheus.Desc{movedSizeDesc, movesDesc, movedEvictedDesc}, func(s sink) {
		st := read()
		s.gauge(movedSizeDesc, float64(st.Size))
		for _, r := range reasons {
			s.counter(movesDesc, st.Moves[r], r)
		}
		s.counter(movedEvictedDesc, st.Evicted)
	})
}

var (
	movedSizeDesc = prometheus.NewDesc("catherd_moved_sessions",
		"Sessions kept on the member they moved to (no flap-back), in the moved-session table.", nil, nil)
	movesDesc = prometheus.NewDesc("catherd_session_moves_total",
		"Sessions moved to a failover partner, by why their member could not keep them: down, evacuated, isolated.",
		[]string{"reason"}, nil)
	movedEvictedDesc = prometheus.NewDesc("catherd_moved_sessions_evicted_total",
		"Moved sessions forgotten before their TTL to make room (raise --session-table-size if this grows).", nil, nil)
)
