package main

import (
	"fmt"

	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/certs"
	"github.com/catherd/catherd/userspace/membership"
	"github.com/catherd/catherd/userspace/metrics"
	"github.com/catherd/catherd/userspace/tier"
	"github.com/catherd/catherd/userspace/version"
)

// The metrics package knows nothing of the parts it shows: these give it
// what each part reports, as the plain values it exports.

// newMetrics is catherd's registry, for this build and the balancer's
// outcomes.
func newMetrics() *metrics.Metrics {
	v := version.Get()
	return metrics.New(metrics.Build{Version: v.Version, Revision: v.Revision, GoVersion: v.GoVersion}, names(balancer.Outcomes))
}

// memberSeries reads pool's members as catherd_member_* show them.
func memberSeries(pool *balancer.Pool) func() []metrics.MemberState {
	return func() []metrics.MemberState {
		now := pool.Now()
		members := pool.Members()
		out := make([]metrics.MemberState, len(members))
		for i, m := range members {
			out[i] = metrics.MemberState{Name: m.Name, State: m.State(now).String(), Weight: m.Weight(), Ramp: m.Ramp(now)}
			for _, to := range members {
				if n := pool.Failovers(m, to); n > 0 {
					if out[i].Failovers == nil {
						out[i].Failovers = map[string]uint64{}
					}
					out[i].Failovers[to.Name] = n
				}
			}
		}
		return out
	}
}

// movedSeries reads the moved-session table.
func movedSeries(t *moved.Table) func() metrics.MovedStats {
	return func() metrics.MovedStats {
		st := t.Stats()
		out := metrics.MovedStats{Size: st.Size, Moves: map[string]uint64{}, Evicted: st.Evicted}
		for r, n := range st.Moves {
			out.Moves[r.String()] = n
		}
		return out
	}
}

// membershipSeries reads what the cluster's heartbeats told catherd.
func membershipSeries(read func() (membership.Stats, uint64)) func() metrics.MembershipStats {
	return func() metrics.MembershipStats {
		st, malformed := read()
		return metrics.MembershipStats{Observed: st.Observed, Malformed: malformed,
			IgnoredWrongDomain: st.IgnoredWrongDomain, IgnoredTableFull: st.IgnoredTableFull, IgnoredUnknownShutdown: st.IgnoredUnknownShutdown,
			Joins: st.Joins, Restarts: st.Restarts, Leaves: st.Leaves, Expiries: st.Expiries}
	}
}

// tierSeries reads the tier's peers and counters.
func tierSeries(t *tier.Tier) func() metrics.TierStats {
	return func() metrics.TierStats {
		st := t.Stats()
		out := metrics.TierStats{Sent: st.Sent, Received: st.Received, SendErrors: st.SendErrors, Records: st.Records, Version: st.Clock,
			Refused: map[string]uint64{"auth": st.RefusedAuth, "malformed": st.RefusedMalformed, "unknown": st.RefusedUnknown}}
		for _, p := range t.Peers() {
			out.Peers = append(out.Peers, metrics.PeerStats{Name: p.Name, State: string(p.State), LastContact: p.LastContact, Version: p.Clock})
		}
		return out
	}
}

// tlsSeries reads the served certificates and their reloads.
func tlsSeries(store *certs.Store) func() metrics.TLSStats {
	return func() metrics.TLSStats {
		st := store.Stats()
		out := metrics.TLSStats{Reloads: st.Reloads, Failures: st.Failures}
		for _, c := range st.Certs {
			out.Certs = append(out.Certs, metrics.Cert{File: c.File, Subject: c.Subject, NotAfter: c.NotAfter})
		}
		return out
	}
}

// names are the names of vs, in order: the label values of a series.
func names[T fmt.Stringer](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.String()
	}
	return out
}
