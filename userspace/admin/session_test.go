package admin

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/session"
	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/balancer"
)

func get(t *testing.T, src Sources, path string, out any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler(src, "").ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("GET %s: %d %v: %s", path, rec.Code, err, rec.Body)
		}
	}
	return rec.Code
}

// Where a session goes and why, and the moved sessions listed, from the
// balancer's own rules; asking moves nothing.
func TestSessions(t *testing.T) {
	table := moved.New(time.Hour, 100)
	ms := []*balancer.Member{balancer.NewMember("node1", "node1", 1, 0), balancer.NewMember("node2", "node2", 1, 0),
		balancer.NewMember("node3", "node3", 1, 0)}
	pool, err := balancer.NewPool(ms, "byrequests", balancer.Options{Moved: table, Retry: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	src := Sources{Pool: pool, MovedTable: table, Sticky: session.Default}
	const id = "9BB776BF9523DDD13603A83FD59C59B3.node1"

	var s Session
	if code := get(t, src, "/api/v1/sessions/"+id, &s); code != 200 || s.Outcome != "hit" || s.Member != "node1" ||
		s.Key != "9BB776BF9523DDD13603A83FD59C59B3" || s.Route != "node1" || !strings.Contains(s.Why, "sticky") {
		t.Fatalf("node1 up: %d %+v", code, s)
	}
	ms[0].SetDown(true)
	s = Session{}
	get(t, src, "/api/v1/sessions/"+id, &s)
	if s.Outcome != "failover" || s.Member == "" || s.Member == "node1" || s.HomeState != "down" ||
		!strings.Contains(s.Why, "node1 is down: failover partner "+s.Member) {
		t.Fatalf("node1 down: %+v", s)
	}
	if table.Stats().Size != 0 {
		t.Fatal("asking moved the session")
	}
	partner := s.Member
	// A request moves it; then it is listed, and explained as moved.
	if m, _, _ := pool.Pick(&balancer.Request{Route: []byte("node1"), SessionKey: []byte("9BB776BF9523DDD13603A83FD59C59B3")}); m.Name != partner {
		t.Fatalf("Pick chose %s, the API said %s", m.Name, partner)
	}
	ms[0].SetDown(false)
	s = Session{}
	get(t, src, "/api/v1/sessions/"+id, &s)
	if s.Outcome != "moved" || s.Member != partner || s.MovedTo != partner || s.MovedReason != "down" || !strings.Contains(s.Why, "no flap-back") {
		t.Fatalf("moved: %+v", s)
	}
	var list MovedSessions
	if code := get(t, src, "/api/v1/sessions?moved=true", &list); code != 200 || list.Total != 1 || len(list.Sessions) != 1 ||
		list.Sessions[0].Member != partner || list.Sessions[0].Reason != "down" || list.Sessions[0].Key != "9BB776BF9523DDD13603A83FD59C59B3" {
		t.Fatalf("list: %d %+v", code, list)
	}
	if code := get(t, src, "/api/v1/sessions", nil); code != 400 {
		t.Errorf("a list without ?moved=true: %d, want 400", code)
	}
	if code := get(t, src, "/api/v1/sessions?moved=true&limit=0", nil); code != 400 {
		t.Errorf("limit=0: %d, want 400", code)
	}

	// No route: balanced; nobody usable: unusable.
	s = Session{}
	get(t, src, "/api/v1/sessions/ABCDEF", &s)
	if s.Outcome != "new" || len(s.Candidates) != 3 || !strings.Contains(s.Why, "balanced as a new session by byrequests among node1, node2, node3") {
		t.Fatalf("no route: %+v", s)
	}
	for _, m := range ms {
		m.SetFlags(balancer.Disabled)
	}
	s = Session{}
	get(t, src, "/api/v1/sessions/XYZ.node2", &s)
	if s.Outcome != "unusable" || s.Member != "" || !strings.Contains(s.Why, "503") {
		t.Fatalf("all disabled: %+v", s)
	}
}

func TestProbes(t *testing.T) {
	var notReady error
	h := Handler(Sources{Ready: func() error { return notReady }}, "")
	for _, c := range []struct {
		path   string
		status int
		body   string
	}{{"/healthz", 200, "ok\n"}, {"/readyz", 200, "ready\n"}} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", c.path, nil))
		if rec.Code != c.status || rec.Body.String() != c.body {
			t.Errorf("%s: %d %q", c.path, rec.Code, rec.Body)
		}
	}
	notReady = balancer.ErrNoMember
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || rec.Body.String() != "not ready: no usable member\n" {
		t.Errorf("not ready: %d %q", rec.Code, rec.Body)
	}
}
