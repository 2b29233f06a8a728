package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/balancer"
)

// fakeRoster adds members to a pool as a --backend spec names them
// (NAME=anything) and records what it was asked.
type fakeRoster struct {
	pool    *balancer.Pool
	removed []string
	drained []bool
	wait    time.Duration
}

func (f *fakeRoster) Add(spec string) (*balancer.Member, error) {
	name, _, ok := strings.Cut(spec, "=")
	if !ok {
		return nil, fmt.Errorf("%w: want NAME=URL", ErrInvalid)
	}
	m := balancer.NewMember(name, name, 1, 0)
	if _, err := f.pool.Add(m, nil); err != nil {
		return nil, err
	}
	return m, nil
}

func (f *fakeRoster) Remove(ctx context.Context, name string, drain bool) error {
	m := f.pool.Member(name)
	if m == nil {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if d, ok := ctx.Deadline(); ok {
		f.wait = time.Until(d).Round(time.Second)
	}
	f.removed, f.drained = append(f.removed, name), append(f.drained, drain)
	return f.pool.Remove(m)
}

// The API adds and removes members through the Roster, with the token,
// and answers each kind of failure with its own status.
func TestRosterAPI(t *testing.T) {
	pool, err := balancer.NewPool([]*balancer.Member{balancer.NewMember("a", "a", 1, 0)}, "byrequests", balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRoster{pool: pool}
	h := Handler(Sources{Pool: pool, Roster: f}, "tok")
	call := func(method, path string, token bool) (int, string) {
		r := httptest.NewRequest(method, path, nil)
		if token {
			r.Header.Set("Authorization", "Bearer tok")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	add := "/api/v1/members?spec=" + url.QueryEscape("b=http://10.0.0.2:8080,secret=x")
	if code, _ := call("POST", add, false); code != http.StatusForbidden || pool.Member("b") != nil {
		t.Errorf("add without the token: %d", code)
	}
	if code, body := call("POST", add, true); code != http.StatusOK || !strings.Contains(body, `"name": "b"`) {
		t.Errorf("add: %d %s", code, body)
	}
	for path, want := range map[string]int{
		"/api/v1/members?spec=nonsense": http.StatusBadRequest,
		add:                             http.StatusConflict, // b exists
	} {
		if code, body := call("POST", path, true); code != want {
			t.Errorf("POST %s: %d %s, want %d", path, code, body, want)
		}
	}
	for path, want := range map[string]int{
		"/api/v1/members/b?drain=maybe": http.StatusBadRequest,
		"/api/v1/members/b?wait=-1s":    http.StatusBadRequest,
		"/api/v1/members/zz":            http.StatusNotFound,
	} {
		if code, body := call("DELETE", path, true); code != want {
			t.Errorf("DELETE %s: %d %s, want %d", path, code, body, want)
		}
	}
	if code, body := call("DELETE", "/api/v1/members/b?drain=false&wait=30s", true); code != http.StatusOK || !strings.Contains(body, `"drained": false`) {
		t.Errorf("remove b: %d %s", code, body)
	}
	if len(f.removed) != 1 || f.drained[0] || f.wait != 30*time.Second {
		t.Errorf("the roster was asked to remove %v, drained %v, waiting %v", f.removed, f.drained, f.wait)
	}
	if code, body := call("DELETE", "/api/v1/members/a", true); code != http.StatusConflict || !errors.Is(pool.Remove(pool.Member("a")), balancer.ErrLastMember) {
		t.Errorf("removing the last member: %d %s", code, body)
	}
	// No roster: the API says so.
	h = Handler(Sources{Pool: pool}, "")
	r := httptest.NewRequest("POST", add, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusConflict {
		t.Errorf("add with no roster: %d", w.Code)
	}
}

// Moved sessions are listed by their member's name, also after another
// member was removed (the list no longer lines up with the indexes).
func TestMovedListAfterRemove(t *testing.T) {
	table := moved.New(time.Hour, 10)
	a, b, c := balancer.NewMember("a", "a", 1, 0), balancer.NewMember("b", "b", 1, 0), balancer.NewMember("c", "c", 1, 0)
	pool, err := balancer.NewPool([]*balancer.Member{a, b, c}, "byrequests", balancer.Options{Moved: table})
	if err != nil {
		t.Fatal(err)
	}
	table.Move([]byte("S"), c.Index(), moved.Down, time.Now())
	pool.Remove(b)
	got := listMoved(Sources{Pool: pool, MovedTable: table}, 10)
	if len(got.Sessions) != 1 || got.Sessions[0].Member != "c" {
		t.Errorf("moved sessions: %+v, want S on c", got.Sessions)
	}
}
