package metrics

import "github.com/prometheus/client_golang/prometheus"

// MemberState is a member as catherd_member_* and catherd_failovers_total
// show it, at the moment of a scrape.
type MemberState struct {
	Name   string
	State  string // its current state, one of those given to Members
	Weight int
	Ramp   float64 // the fraction of its weight it gets while it ramps up
	// Failovers counts requests of the member's sessions that failed
	// over, by the name of the partner that took them (none: nil).
	Failovers map[string]uint64
}

// Members exports each member's state, weight, ramp and failovers, read at
// scrape time so that the series never disagree with what the balancer
// uses. states names every state a member can be in: each is a series, 1
// for the member's current state and 0 for the others.
func (m *Metrics) Members(states []string, read func() []MemberState) {
	m.onScrape([]*prometheus.Desc{stateDesc, weightDesc, rampDesc, failoverDesc}, func(s sink) {
		members := read()
		for _, mem := range members {
			for _, st := range states {
				v := 0.0
				if st == mem.State {
					v = 1
				}
				s.gauge(stateDesc, v, mem.Name, st)
			}
			s.gauge(weightDesc, float64(mem.Weight), mem.Name)
			s.gauge(rampDesc, mem.Ramp, mem.Name)
			for _, to := range members { // in the members' order, as before
				if n := mem.Failovers[to.Name]; n > 0 {
					s.counter(failoverDesc, n, mem.Name, to.Name)
				}
			}
		}
	})
}

var stateDesc = prometheus.NewDesc("catherd_member_state",
	"1 for the member's current state (ok, error, disabled, stopped, drain, standby, down, isolated, settling), 0 for the others.",
	[]string{"member", "state"}, nil)

var weightDesc = prometheus.NewDesc("catherd_member_weight",
	"The member's weight (lbfactor) for new sessions.", []string{"member"}, nil)

var rampDesc = prometheus.NewDesc("catherd_member_ramp_ratio",
	"The fraction of its weight a returning member gets while its slow start lasts (1 otherwise).", []string{"member"}, nil)

var failoverDesc = prometheus.NewDesc("catherd_failovers_total",
	"Requests of a member's sessions that failed over, by the partner that took them (once per session while moves are remembered).",
	[]string{"member", "partner"}, nil)
