// Package admin is catherd's operator interface over HTTP: the state of the
// members, the cluster membership and the XDP datapath as JSON, where a
// session goes and why, the actions that change members (enable, disable,
// drain, evacuate, recover, weight), each logged with who asked, and the
// process's liveness and readiness probes. `catherd status`, `catherd
// member` and `catherd session` speak it. It listens on loopback by
// default; actions carry a bearer token whenever one is set, which catherd
// requires when the admin address is not on loopback.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/catherd/catherd/session"
	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/health"
	"github.com/catherd/catherd/userspace/membership"
	"github.com/catherd/catherd/userspace/tier"
	"github.com/catherd/catherd/userspace/version"
	"github.com/catherd/catherd/userspace/xdp"
)

// Sources are where the status comes from; nil ones are left out.
type Sources struct {
	Pool *balancer.Pool
	// Target is a member's address as a URL (http://host:port,
	// ajp://host:port); nil: not shown.
	Target func(*balancer.Member) string
	// Roster adds and removes members at run time; nil: the API refuses.
	Roster     Roster
	Moved      func() moved.Stats
	Membership func() []membership.Member
	XDP        func() (xdp.Stats, error)
	// Version and Started describe this process.
	Version version.Info
	Started time.Time
	// Health is what the health checks know of a member.
	Health func(*balancer.Member) (health.Status, bool)
	// ClientConns reads the client side: connections open (slots in
	// use), accepted since start, and --max-client-conns.
	ClientConns func() (open, accepted uint64, limit int)
	// MovedTable is the moved-session table, listed by GET
	// /api/v1/sessions; Sticky splits the ids GET /api/v1/sessions/ID is
	// asked about, as the proxy does.
	MovedTable *moved.Table
	Sticky     session.Config
	// Ready says why catherd is not ready to serve, nil when it is
	// (GET /readyz); nil means always ready.
	Ready func() error
	// Log gets one line per member action and refused request (nil:
	// none).
	Log *slog.Logger
	// Tier is this instance's tier (nil: it is in none): member actions
	// are shared through it, the status lists its peers, and a member's
	// requests in flight are asked of every peer.
	Tier *tier.Tier
}

// Status is the JSON document of GET /api/v1/status.
type Status struct {
	Time time.Time `json:"time"`
	// Pid is the answering process: after a take-over, the successor's.
	Pid     int          `json:"pid,omitempty"`
	Version version.Info `json:"version"`
	// Started is when the answering process started; Uptime is since.
	Started       time.Time       `json:"started"`
	UptimeSeconds float64         `json:"uptime_seconds"`
	Clients       *Clients        `json:"clients,omitempty"`
	Members       []Member        `json:"members,omitempty"`
	Moved         *moved.Stats    `json:"moved_sessions,omitempty"`
	Membership    []ClusterMember `json:"membership,omitempty"`
	XDP           *xdp.Stats      `json:"xdp,omitempty"`
	XDPError      string          `json:"xdp_error,omitempty"`
	Tier          *Tier           `json:"tier,omitempty"`
}

// Tier is this instance in its tier (--peer-listen): its name and state
// version, the state messages it counted, and its peers.
type Tier struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// StateVersion is the shared table's logical clock here; Digest is a
	// hash of every record's version: instances with the same digest
	// hold the same shared state.
	StateVersion uint64 `json:"state_version"`
	Digest       string `json:"digest"`
	Records      int    `json:"records"`
	Sent         uint64 `json:"messages_sent"`
	Received     uint64 `json:"messages_received"`
	// Refused by reason: auth (not sealed with the tier's key),
	// malformed, unknown (from no known peer).
	Refused    map[string]uint64 `json:"messages_refused"`
	SendErrors uint64            `json:"send_errors"`
	Peers      []Peer            `json:"peers"`
}

// Peer is another instance of the tier as this one sees it.
type Peer struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"` // alive, suspect, dead or left
	// Since is when it entered its state.
	Since       time.Time `json:"since"`
	LastContact time.Time `json:"last_contact"`
	// StateVersion and Digest are what it last advertised.
	StateVersion uint64 `json:"state_version"`
	Digest       string `json:"digest"`
}

// InFlight is a member's requests in flight on this instance and on each
// peer of its tier (GET /api/v1/members/{name}/in-flight), read by
// catherd member evacuate --wait.
type InFlight struct {
	Member string `json:"member"`
	Local  int64  `json:"local"`
	// Peers are the answers by peer name; -1 from a peer that has no
	// such member.
	Peers map[string]int64 `json:"peers,omitempty"`
	// Unreachable names the peers that did not answer in time.
	Unreachable []string `json:"unreachable,omitempty"`
}

// Clients describes the client side.
type Clients struct {
	// Open connections, each holding one of Limit slots
	// (--max-client-conns); Accepted since the process started.
	Open     uint64 `json:"open"`
	Accepted uint64 `json:"accepted"`
	Limit    int    `json:"limit"`
}

// Member is one --backend as the balancer sees it.
type Member struct {
	Name   string `json:"name"`
	Route  string `json:"route"`
	Domain string `json:"domain"`
	State  string `json:"state"`
	// StateSince is since when the member has been in State.
	StateSince time.Time `json:"state_since"`
	Flags      string    `json:"flags"`
	Target     string    `json:"target,omitempty"`
	Weight     int       `json:"weight"`
	InFlight   int64     `json:"in_flight"`
	// Requests sent to the member (retries included), and body bytes.
	Requests uint64 `json:"requests"`
	BytesOut uint64 `json:"bytes_out"`
	BytesIn  uint64 `json:"bytes_in"`
	// InGroup says whether the member is in its replication group (nil
	// when catherd does not follow the cluster's membership).
	InGroup     *bool      `json:"in_group,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// LastErrorCurrent says the last error is why the member is out
	// now (its state is error or down); else it is past.
	LastErrorCurrent bool `json:"last_error_current,omitempty"`
	// Health is the last health check and the counts toward a change
	// (nil without health checks).
	Health *Health `json:"health,omitempty"`
	// Ramp is the fraction of its weight the member gets while it ramps
	// up after a return (slow start); 1 otherwise.
	Ramp float64 `json:"ramp"`
	// Failovers counts, by partner, the requests of this member's
	// sessions that failed over (once per session when moves are
	// remembered): where its sessions went.
	Failovers map[string]uint64 `json:"failovers,omitempty"`
}

// Health is a member's last health check, and how far it is on its way
// to a change of state.
type Health struct {
	LastCheck *time.Time `json:"last_check,omitempty"` // nil before the first
	Result    string     `json:"result,omitempty"`     // pass or fail
	Error     string     `json:"error,omitempty"`
	Duration  float64    `json:"duration_seconds"`
	// Failures are consecutive failed checks of a member that is up (at
	// Fall it is down); Passes, consecutive passed checks of a member
	// that is down (at Rise it is back).
	Failures int `json:"failures"`
	Passes   int `json:"passes"`
	Fall     int `json:"fall"`
	Rise     int `json:"rise"`
}

// ClusterMember is one member of the cluster's replication group.
type ClusterMember struct {
	Host        netip.Addr `json:"host"`
	Port        int32      `json:"port"`
	UniqueID    string     `json:"unique_id"`
	AliveMillis int64      `json:"alive_ms"`
	LastHeard   time.Time  `json:"last_heard"`
}

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
	// Members lists the member names when the one asked for is unknown.
	Members []string `json:"members,omitempty"`
}

// Actions are the member actions, by the name in their URL.
var Actions = []string{"enable", "disable", "drain", "evacuate", "recover", "weight"}

// minTokenLen is the shortest token admin actions may be authorized by.
const minTokenLen = 16

// LoadToken reads the token admin actions must carry from the file at path
// (--admin-token-file), its surrounding white space trimmed.
func LoadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	token := strings.TrimSpace(string(b))
	if len(token) < minTokenLen {
		return "", fmt.Errorf("the token must be at least %d characters", minTokenLen)
	}
	return token, nil
}

// Handler serves the API. token, if not empty, must come with every action
// as "Authorization: Bearer <token>".
func Handler(src Sources, token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, Collect(src, time.Now()))
	})
	mux.HandleFunc("GET /api/v1/members", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, describeAll(src))
	})
	mux.HandleFunc("GET /api/v1/members/{name}", func(w http.ResponseWriter, r *http.Request) {
		if m := member(w, src.Pool, r.PathValue("name")); m != nil {
			reply(w, http.StatusOK, describe(src, m))
		}
	})
	mux.HandleFunc("POST /api/v1/members/{name}/{action}", func(w http.ResponseWriter, r *http.Request) {
		if err := authorize(r, token); err != nil {
			src.logAction(r, "api", r.PathValue("action"), r.PathValue("name"), "", err)
			reply(w, http.StatusForbidden, Error{Error: err.Error()})
			return
		}
		m := member(w, src.Pool, r.PathValue("name"))
		if m == nil {
			return
		}
		status, err := src.act(m, r.PathValue("action"), r.URL.Query())
		src.logAction(r, "api", r.PathValue("action"), m.Name, r.URL.Query().Get("value"), err)
		if err != nil {
			reply(w, status, Error{Error: err.Error()})
			return
		}
		reply(w, http.StatusOK, describe(src, m))
	})
	serveRoster(mux, src, token)
	mux.HandleFunc("GET /api/v1/members/{name}/in-flight", func(w http.ResponseWriter, r *http.Request) {
		if m := member(w, src.Pool, r.PathValue("name")); m != nil {
			reply(w, http.StatusOK, src.inFlight(r.Context(), m))
		}
	})
	serveSessions(mux, src)
	servePage(mux, src, token)
	HandleProbes(mux, src.Ready)
	return mux
}

// logAction logs a member action asked through the API or the page: what,
// on which member, from which peer, and whether it was done. value is the
// weight asked for, if any.
func (src Sources) logAction(r *http.Request, via, action, name, value string, err error) {
	if src.Log == nil {
		return
	}
	attrs := []any{"action", action, "member", name, "peer", r.RemoteAddr, "via", via}
	if action == "weight" {
		attrs = append(attrs, "value", value)
	}
	if err != nil {
		src.Log.Warn("admin action refused", append(attrs, "result", "refused", "err", err)...)
		return
	}
	src.Log.Info("admin action", append(attrs, "result", "done")...)
}

// authorize lets an action through when it carries the token, or, with no
// token set (loopback only), when it does not come from another site's
// page in a browser: a page may send a POST to 127.0.0.1 but cannot hide
// where it comes from (Origin, Sec-Fetch-Site).
func authorize(r *http.Request, token string) error {
	if token != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			return errors.New("this action needs the admin token (Authorization: Bearer, from --admin-token-file)")
		}
		return nil
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return fmt.Errorf("cross-site request refused (Sec-Fetch-Site: %s)", site)
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if u, err := url.Parse(origin); err != nil || u.Host != r.Host {
			return fmt.Errorf("cross-origin request refused (Origin: %s)", origin)
		}
	}
	return nil
}

// member finds the named member, or answers 404 with the names there are.
func member(w http.ResponseWriter, pool *balancer.Pool, name string) *balancer.Member {
	if pool != nil {
		if m := pool.Member(name); m != nil {
			return m
		}
	}
	e := Error{Error: fmt.Sprintf("no member %q", name)}
	if pool != nil {
		for _, m := range pool.Members() {
			e.Members = append(e.Members, m.Name)
		}
	}
	reply(w, http.StatusNotFound, e)
	return nil
}

// act applies an action to m, and shares it with the tier, if any; on
// error it also returns the HTTP status.
func (src Sources) act(m *balancer.Member, action string, q url.Values) (int, error) {
	status, err := act(src.Pool, m, action, q)
	if err == nil && src.Tier != nil {
		src.Tier.Acted(m, action)
	}
	return status, err
}

// inFlightWait bounds how long the peers are waited for.
const inFlightWait = 2 * time.Second

// inFlight counts m's requests in flight here and, in a tier, on every
// peer.
func (src Sources) inFlight(ctx context.Context, m *balancer.Member) InFlight {
	in := InFlight{Member: m.Name, Local: m.Active()}
	if src.Tier == nil {
		return in
	}
	ctx, cancel := context.WithTimeout(ctx, inFlightWait)
	defer cancel()
	peers, unreachable, err := src.Tier.InFlight(ctx, m.Name)
	if err != nil { // this instance is leaving the tier: no peer is asked
		for _, p := range src.Tier.Peers() {
			unreachable = append(unreachable, p.Name)
		}
	}
	in.Peers, in.Unreachable = peers, unreachable
	return in
}

// act applies an action to m; on error it also returns the HTTP status.
func act(pool *balancer.Pool, m *balancer.Member, action string, q url.Values) (int, error) {
	switch action {
	case "enable": // back through the rejoin path: settle, then slow start
		m.SetFlags(m.Flags() &^ (balancer.Disabled | balancer.Stopped | balancer.Drain))
	case "disable":
		m.SetFlags(m.Flags() | balancer.Disabled)
	case "drain":
		m.SetFlags(m.Flags() | balancer.Drain)
	case "evacuate":
		if err := pool.Evacuate(m); err != nil {
			return http.StatusConflict, fmt.Errorf("cannot evacuate %s: %w", m.Name, err)
		}
	case "recover":
		pool.Recover(m)
	case "weight":
		w, err := strconv.Atoi(q.Get("value"))
		if err != nil || w < 1 || w > 100 {
			return http.StatusBadRequest, fmt.Errorf("weight: want ?value=1..100, got %q", q.Get("value"))
		}
		m.SetWeight(w)
	default:
		return http.StatusNotFound, fmt.Errorf("no action %q (want one of %s)", action, strings.Join(Actions, ", "))
	}
	return 0, nil
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// describe is m as the API shows it.
func describe(src Sources, m *balancer.Member) Member {
	pool := src.Pool
	now := pool.Now()
	state, since := m.StateSince(now)
	d := Member{Name: m.Name, Route: m.Route, Domain: m.Domain(), State: state.String(), StateSince: since, Target: src.target(m),
		Flags: m.Flags().String(), Weight: m.Weight(), InFlight: m.Active(), Ramp: m.Ramp(now)}
	d.Requests, d.BytesOut, d.BytesIn = m.Traffic()
	if src.Membership != nil {
		in := !m.Isolated()
		d.InGroup = &in
	}
	if f := m.LastError(); f != nil {
		d.LastError, d.LastErrorAt = f.Msg, &f.At
		d.LastErrorCurrent = state == balancer.StateError || state == balancer.StateDown
	}
	if src.Health != nil {
		if st, ok := src.Health(m); ok {
			d.Health = describeHealth(st)
		}
	}
	for _, to := range pool.Members() {
		if n := pool.Failovers(m, to); n > 0 {
			if d.Failovers == nil {
				d.Failovers = map[string]uint64{}
			}
			d.Failovers[to.Name] = n
		}
	}
	return d
}

// describeAll describes every member (none without a pool).
func describeAll(src Sources) []Member {
	if src.Pool == nil {
		return nil
	}
	ms := make([]Member, 0, len(src.Pool.Members()))
	for _, m := range src.Pool.Members() {
		ms = append(ms, describe(src, m))
	}
	return ms
}

// describeHealth is a health checker's status as the API shows it.
func describeHealth(st health.Status) *Health {
	h := &Health{Failures: st.Failures, Passes: st.Passes, Fall: st.Fall, Rise: st.Rise}
	if r := st.Last; r != nil {
		h.LastCheck, h.Result, h.Duration = &r.At, "pass", r.Duration.Seconds()
		if r.Err != nil {
			h.Result, h.Error = "fail", r.Err.Error()
		}
	}
	return h
}

// Collect builds the status document.
func Collect(src Sources, now time.Time) Status {
	st := Status{Time: now, Pid: os.Getpid(), Version: src.Version, Started: src.Started}
	if !src.Started.IsZero() {
		st.UptimeSeconds = now.Sub(src.Started).Seconds()
	}
	if src.ClientConns != nil {
		open, accepted, limit := src.ClientConns()
		st.Clients = &Clients{Open: open, Accepted: accepted, Limit: limit}
	}
	st.Members = describeAll(src)
	if src.Moved != nil {
		m := src.Moved()
		st.Moved = &m
	}
	if src.Membership != nil {
		for _, m := range src.Membership() {
			st.Membership = append(st.Membership, ClusterMember{Host: m.Host, Port: m.Port,
				UniqueID: hex.EncodeToString(m.UniqueID[:]), AliveMillis: m.AliveMillis, LastHeard: m.LastHeard})
		}
	}
	if src.Tier != nil {
		st.Tier = describeTier(src.Tier)
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

// describeTier is this instance's tier as the API shows it.
func describeTier(t *tier.Tier) *Tier {
	st := t.Stats()
	out := &Tier{Name: t.Name(), Addr: t.Addr(), StateVersion: st.Clock, Digest: fmt.Sprintf("%016x", st.Digest), Records: st.Records,
		Sent: st.Sent, Received: st.Received, SendErrors: st.SendErrors,
		Refused: map[string]uint64{"auth": st.RefusedAuth, "malformed": st.RefusedMalformed, "unknown": st.RefusedUnknown}, Peers: []Peer{}}
	for _, p := range t.Peers() {
		out.Peers = append(out.Peers, Peer{Name: p.Name, Addr: p.Addr, State: string(p.State), Since: p.Since, LastContact: p.LastContact,
			StateVersion: p.Clock, Digest: fmt.Sprintf("%016x", p.Digest)})
	}
	return out
}
