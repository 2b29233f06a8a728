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
	m.reg.MustRegister(membershipCollector{read})
}

type membershipCollector struct {
	read func() MembershipStats
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

func (c membershipCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- membershipMembersDesc
	ch <- membershipBeaconsDesc
	ch <- membershipEventsDesc
}

func (c membershipCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.read()
	counter := func(d *prometheus.Desc, v uint64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label)
	}
	members := st.Joins - st.Leaves - st.Expiries
	ch <- prometheus.MustNewConstMetric(membershipMembersDesc, prometheus.GaugeValue, float64(members))
	ignored := st.IgnoredWrongDomain + st.IgnoredTableFull + st.IgnoredUnknownShutdown
	counter(membershipBeaconsDesc, st.Observed-ignored, "accepted")
	counter(membershipBeaconsDesc, st.Malformed, "malformed")
	counter(membershipBeaconsDesc, st.IgnoredWrongDomain, "wrong_domain")
	counter(membershipBeaconsDesc, st.IgnoredTableFull, "table_full")
	counter(membershipBeaconsDesc, st.IgnoredUnknownShutdown, "unknown_shutdown")
	counter(membershipEventsDesc, st.Joins, "join")
	counter(membershipEventsDesc, st.Restarts, "restart")
	counter(membershipEventsDesc, st.Leaves, "leave")
	counter(membershipEventsDesc, st.Expiries, "expire")
}

// MovedStats describe the moved-session table.
type MovedStats struct {
	Size    int               // sessions in it
	Moves   map[string]uint64 // sessions moved, by reason
	Evicted uint64            // forgotten before their TTL, for room
}

// MovedSessions exports the moved-session table, read at scrape time;
// reasons names every reason a session moves for (each is a series).
func (m *Metrics) MovedSessions(reasons []string, read func() MovedStats) {
	m.reg.MustRegister(movedCollector{reasons, read})
}

type movedCollector struct {
	reasons []string
	read    func() MovedStats
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

func (c movedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- movedSizeDesc
	ch <- movesDesc
	ch <- movedEvictedDesc
}

func (c movedCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.read()
	ch <- prometheus.MustNewConstMetric(movedSizeDesc, prometheus.GaugeValue, float64(st.Size))
	for _, r := range c.reasons {
		ch <- prometheus.MustNewConstMetric(movesDesc, prometheus.CounterValue, float64(st.Moves[r]), r)
	}
	ch <- prometheus.MustNewConstMetric(movedEvictedDesc, prometheus.CounterValue, float64(st.Evicted))
}
