// Package admin serves catherd's state to operators as JSON: the members
// and their states, the cluster membership as the heartbeats tell it, and
// the XDP datapath's services and counters. `catherd status` reads it. It
// listens on loopback by default; actions (enable, drain, evacuate, ...)
// are to come, behind a token and a nonce.
package admin

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/netip"
	"time"

	"github.com/catherd/catherd/session/membership"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/xdp"
)

// Sources are where the status comes from; nil ones are left out.
type Sources struct {
	Pool       *balancer.Pool
	Membership func() []membership.Member
	XDP        func() (xdp.Stats, error)
}

// Status is the JSON document of GET /api/v1/status.
type Status struct {
	Time       time.Time       `json:"time"`
	Members    []Member        `json:"members,omitempty"`
	Membership []ClusterMember `json:"membership,omitempty"`
	XDP        *xdp.Stats      `json:"xdp,omitempty"`
	XDPError   string          `json:"xdp_error,omitempty"`
}

// Member is one --backend as the balancer sees it.
type Member struct {
	Name     string `json:"name"`
	Route    string `json:"route"`
	Domain   string `json:"domain"`
	State    string `json:"state"`
	Flags    string `json:"flags"`
	Weight   int    `json:"weight"`
	InFlight int64  `json:"in_flight"`
}

// ClusterMember is one member of the cluster's replication group.
type ClusterMember struct {
	Host        netip.Addr `json:"host"`
	Port        int32      `json:"port"`
	UniqueID    string     `json:"unique_id"`
	AliveMillis int64      `json:"alive_ms"`
	LastHeard   time.Time  `json:"last_heard"`
}

// Handler serves the API.
func Handler(src Sources) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(Collect(src, time.Now()))
	})
	return mux
}

// Collect builds the status document.
func Collect(src Sources, now time.Time) Status {
	st := Status{Time: now}
	if src.Pool != nil {
		pnow := src.Pool.Now()
		for _, m := range src.Pool.Members() {
			st.Members = append(st.Members, Member{Name: m.Name, Route: m.Route, Domain: m.Domain, State: m.State(pnow).String(),
				Flags: m.Flags().String(), Weight: m.Weight(), InFlight: m.Active()})
		}
	}
	if src.Membership != nil {
		for _, m := range src.Membership() {
			st.Membership = append(st.Membership, ClusterMember{Host: m.Host, Port: m.Port,
				UniqueID: hex.EncodeToString(m.UniqueID[:]), AliveMillis: m.AliveMillis, LastHeard: m.LastHeard})
		}
	}
	if src.XDP != nil {
		x, err := src.XDP()
		if err != nil {
			st.XDPError = err.Error()
		} else {
			st.XDP = &x
		}
	}
	return st
}
