package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
)

// Session says where a session's next request goes now, and why: the
// answer of GET /api/v1/sessions/ID.
type Session struct {
	ID    string `json:"id"`
	Key   string `json:"key"`             // the id without its route
	Route string `json:"route,omitempty"` // the route the id carries
	// Outcome is hit (its own member), moved (where it moved earlier),
	// failover (to its member's partner), new or unknown_route (balanced
	// as a new session), or unusable (no member can take it: 503).
	Outcome string `json:"outcome"`
	// Member takes it; empty when it is balanced or refused.
	Member string `json:"member,omitempty"`
	// Home is the member its route names, and its state.
	Home      string `json:"home,omitempty"`
	HomeState string `json:"home_state,omitempty"`
	// MovedTo is where the moved-session table says it went (also when
	// that member cannot serve it now), and why it moved.
	MovedTo     string `json:"moved_to,omitempty"`
	MovedReason string `json:"moved_reason,omitempty"`
	// Candidates are the members a balanced request is picked among.
	Candidates []string `json:"candidates,omitempty"`
	Why        string   `json:"why"`
}

// MovedSessions lists the moved-session table: GET /api/v1/sessions?moved=true.
type MovedSessions struct {
	Total    int            `json:"total"`
	Sessions []MovedSession `json:"sessions"` // most recently used first
}

// MovedSession is one session that moved off its member.
type MovedSession struct {
	Key      string    `json:"key"`
	Member   string    `json:"member"`
	Reason   string    `json:"reason"`
	LastUsed time.Time `json:"last_used"`
}

// defaultListLimit bounds a listing of moved sessions unless asked for
// more: the table may hold hundreds of thousands.
const defaultListLimit = 100

func serveSessions(mux *http.ServeMux, src Sources) {
	mux.HandleFunc("GET /api/v1/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		if src.Pool == nil {
			reply(w, http.StatusNotFound, Error{Error: "this catherd runs no HTTP members (L4 services only)"})
			return
		}
		reply(w, http.StatusOK, explain(src, r.PathValue("id")))
	})
	mux.HandleFunc("GET /api/v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("moved") != "true" {
			reply(w, http.StatusBadRequest, Error{Error: "catherd remembers only the sessions that moved: ask with ?moved=true"})
			return
		}
		limit := defaultListLimit
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				reply(w, http.StatusBadRequest, Error{Error: fmt.Sprintf("limit: want a whole number, 1 or more, got %q", v)})
				return
			}
			limit = n
		}
		reply(w, http.StatusOK, listMoved(src, limit))
	})
}

// explain answers where the session id goes, from the balancer's own
// rules (Pool.Explain, which changes nothing).
func explain(src Sources, id string) Session {
	s := Session{ID: id, Key: id}
	if !src.Sticky.Enabled() {
		s.Outcome, s.Why = balancer.New.String(), "stickiness is off (--sticky off): every request is balanced as a new session"
		return s
	}
	key, route := src.Sticky.Split([]byte(id))
	s.Key, s.Route = string(key), string(route)
	pool := src.Pool
	d := pool.Explain(route, key)
	s.Outcome = d.Outcome.String()
	if d.Member != nil {
		s.Member = d.Member.Name
	}
	if d.Home != nil {
		s.Home, s.HomeState = d.Home.Name, d.Home.State(pool.Now()).String()
	}
	if d.MovedTo != nil {
		s.MovedTo, s.MovedReason = d.MovedTo.Name, d.Moved.String()
	}
	for _, m := range d.Candidates {
		s.Candidates = append(s.Candidates, m.Name)
	}
	s.Why = why(s, d, pool.Method())
	if d.Err != nil {
		s.Outcome = "unusable"
	}
	return s
}

// why puts a decision in words.
func why(s Session, d balancer.Decision, method string) string {
	balanced := fmt.Sprintf("balanced as a new session by %s among %s", method, strings.Join(s.Candidates, ", "))
	var w string
	switch {
	case errors.Is(d.Err, balancer.ErrNoFailover):
		w = fmt.Sprintf("unusable: %s is %s and failover is off (--nofailover): 503", s.Home, s.HomeState)
	case errors.Is(d.Err, balancer.ErrNoPartner):
		w = fmt.Sprintf("unusable: %s is %s and no other member of its replication domain %q can take it: 503", s.Home, s.HomeState, d.Home.Domain())
	case d.Err != nil:
		w = "unusable: no member can take it: 503"
	case d.Outcome == balancer.Hit:
		w = fmt.Sprintf("sticky: its route %s names %s, which serves it", s.Route, s.Member)
	case d.Outcome == balancer.Moved:
		w = fmt.Sprintf("moved to %s earlier (%s), and stays there while %s serves it (no flap-back to %s)", s.Member, s.MovedReason, s.Member, s.Home)
	case d.Outcome == balancer.Failover && d.Member != nil:
		w = fmt.Sprintf("%s is %s: failover partner %s, the same on every catherd (rendezvous hash of the session id)", s.Home, s.HomeState, s.Member)
	case d.Outcome == balancer.Failover:
		w = fmt.Sprintf("%s is %s, and the id has no key to pick a partner by: %s", s.Home, s.HomeState, balanced)
	case d.Outcome == balancer.UnknownRoute:
		w = fmt.Sprintf("no member has route %q: %s", s.Route, balanced)
	default:
		w = "the id carries no route: " + balanced
	}
	if d.MovedTo != nil && d.MovedTo != d.Member {
		w += fmt.Sprintf(" (it had moved to %s, which cannot serve it now)", s.MovedTo)
	}
	return w
}

// listMoved lists at most limit moved sessions, most recently used first.
func listMoved(src Sources, limit int) MovedSessions {
	out := MovedSessions{Sessions: []MovedSession{}}
	if src.MovedTable == nil || src.Pool == nil {
		return out
	}
	out.Total = src.MovedTable.Stats().Size
	for _, e := range src.MovedTable.Recent(limit) {
		if m := src.Pool.At(e.Member); m != nil {
			out.Sessions = append(out.Sessions, MovedSession{Key: e.Key, Member: m.Name, Reason: e.Reason.String(), LastUsed: e.LastUsed})
		}
	}
	return out
}
