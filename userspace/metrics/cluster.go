package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/catherd/catherd/session/membership"
	"github.com/catherd/catherd/session/moved"
)

// Membership exports what the cluster's membership heartbeats told catherd,
// read at scrape time.
func (m *Metrics) Membership(read func() (membership.Stats, uint64)) {
	m.reg.MustRegister(membershipCollector{read})
}

type membershipCollector struct {
	read func() (membership.Stats, uint64)
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
	st, malformed := c.read()
	counter := func(d *prometheus.Desc, v uint64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label)
	}
	members := st.Joins - st.Leaves - st.Expiries
	ch <- prometheus.MustNewConstMetric(membershipMembersDesc, prometheus.GaugeValue, float64(members))
	ignored := st.IgnoredWrongDomain + st.IgnoredTableFull + st.IgnoredUnknownShutdown
	counter(membershipBeaconsDesc, st.Observed-ignored, "accepted")
	counter(membershipBeaconsDesc, malformed, "malformed")
	counter(membershipBeaconsDesc, st.IgnoredWrongDomain, "wrong_domain")
	counter(membershipBeaconsDesc, st.IgnoredTableFull, "table_full")
	counter(membershipBeaconsDesc, st.IgnoredUnknownShutdown, "unknown_shutdown")
	counter(membershipEventsDesc, st.Joins, "join")
	counter(membershipEventsDesc, st.Restarts, "restart")
	counter(membershipEventsDesc, st.Leaves, "leave")
	counter(membershipEventsDesc, st.Expiries, "expire")
}

// MovedSessions exports the moved-session table, read at scrape time.
func (m *Metrics) MovedSessions(read func() moved.Stats) {
	m.reg.MustRegister(movedCollector{read})
}

type movedCollector struct{ read func() moved.Stats }

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
	for _, r := range moved.Reasons {
		ch <- prometheus.MustNewConstMetric(movesDesc, prometheus.CounterValue, float64(st.Moves[r]), r.String())
	}
	ch <- prometheus.MustNewConstMetric(movedEvictedDesc, prometheus.CounterValue, float64(st.Evicted))
}
