package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
)

// Roster adds and removes members while catherd serves (catherd member
// add|remove, HAProxy's add server and del server). Its errors say what
// went wrong by wrapping ErrInvalid (a spec that does not parse: 400) or
// ErrNotFound (404); any other is a conflict with the pool as it is (409:
// a name or URL taken, the last member, a member that cannot drain).
type Roster interface {
	// Add adds the member spec describes, as --backend would
	// (NAME=URL[,options]).
	Add(spec string) (*balancer.Member, error)
	// Remove removes the named member; with drain, only once its
	// sessions moved to their partners (evacuate) and it has no request
	// in flight, waiting until ctx ends for that.
	Remove(ctx context.Context, name string, drain bool) error
}

// Errors a Roster's answers wrap.
var (
	ErrInvalid  = errors.New("invalid member")
	ErrNotFound = errors.New("no such member")
)

// DefaultDrainWait bounds how long DELETE /api/v1/members/NAME waits for
// the member to drain, unless ?wait= says otherwise.
const DefaultDrainWait = balancer.RemovalWait

// serveRoster serves POST /api/v1/members?spec=NAME=URL,... (add) and
// DELETE /api/v1/members/NAME[?drain=false][&wait=DURATION] (remove).
func serveRoster(mux *http.ServeMux, src Sources, token string) {
	mux.HandleFunc("POST /api/v1/members", func(w http.ResponseWriter, r *http.Request) {
		spec := r.FormValue("spec")
		// The member's name only: the rest of a spec may hold an AJP
		// secret, which has no place in a log.
		name, _, _ := strings.Cut(spec, "=")
		if err := authorize(r, token); err != nil {
			src.logAction(r, "api", "add", name, "", err)
			reply(w, http.StatusForbidden, Error{Error: err.Error()})
			return
		}
		m, err := src.addMember(spec)
		src.logAction(r, "api", "add", name, "", err)
		if err != nil {
			reply(w, rosterStatus(err), Error{Error: err.Error()})
			return
		}
		reply(w, http.StatusOK, describe(src, m))
	})
	mux.HandleFunc("DELETE /api/v1/members/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := authorize(r, token); err != nil {
			src.logAction(r, "api", "remove", name, "", err)
			reply(w, http.StatusForbidden, Error{Error: err.Error()})
			return
		}
		drain, wait, err := removeOptions(r)
		if err == nil {
			ctx, cancel := context.WithTimeout(r.Context(), wait)
			err = src.removeMember(ctx, name, drain)
			cancel()
		}
		src.logAction(r, "api", "remove", name, "", err)
		if err != nil {
			reply(w, rosterStatus(err), Error{Error: err.Error()})
			return
		}
		reply(w, http.StatusOK, Removed{Name: name, Drained: drain})
	})
}

// Removed is the answer to DELETE /api/v1/members/NAME.
type Removed struct {
	Name    string `json:"name"`
	Drained bool   `json:"drained"`
}

// removeOptions reads ?drain= (default true) and ?wait= (a duration).
func removeOptions(r *http.Request) (drain bool, wait time.Duration, err error) {
	drain, wait = true, DefaultDrainWait
	switch v := r.FormValue("drain"); v {
	case "", "1", "true":
	case "0", "false":
		drain = false
	default:
		return false, 0, fmt.Errorf("%w: drain: want true or false, got %q", ErrInvalid, v)
	}
	if v := r.FormValue("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait <= 0 {
			return false, 0, fmt.Errorf("%w: wait: want a duration like 30s, got %q", ErrInvalid, v)
		}
	}
	return drain, wait, nil
}

func (src Sources) addMember(spec string) (*balancer.Member, error) {
	if src.Roster == nil {
		return nil, errors.New("members cannot be added to this catherd")
	}
	return src.Roster.Add(spec)
}

func (src Sources) removeMember(ctx context.Context, name string, drain bool) error {
	if src.Roster == nil {
		return errors.New("members cannot be removed from this catherd")
	}
	return src.Roster.Remove(ctx, name, drain)
}

// rosterStatus is the HTTP status of a Roster's error.
func rosterStatus(err error) int {
	switch {
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	}
	return http.StatusConflict
}

// target is m's URL, if the sources say.
func (src Sources) target(m *balancer.Member) string {
	if src.Target == nil {
		return ""
	}
	return src.Target(m)
}
