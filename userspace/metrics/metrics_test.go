package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
)

func TestSeries(t *testing.T) {
	a := balancer.NewMember("a", "a", 3, 0)
	b := balancer.NewMember("b", "b", 1, balancer.Drain)
	c := balancer.NewMember("c", "c", 1, 0)
	pool, err := balancer.NewPool([]*balancer.Member{a, b, c}, "byrequests", balancer.Options{Retry: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c.SetDown(true)
	if m, _, err := pool.Pick(&balancer.Request{Route: []byte("c"), SessionKey: []byte("s")}); err != nil || m != a {
		t.Fatalf("failover of c's session: %v %v", m, err)
	}
	m := New(pool)
	ma := m.Member("a")
	ma.Begin()
	ma.Done(200, time.Now(), 10, 250, true)
	ma.Begin() // still in flight
	ma.Error("connect")
	m.Sticky(balancer.Hit)
	m.Sticky(balancer.Failover)
	m.Sticky(balancer.Failover)
	pool.MarkError(a)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`catherd_requests_total{code="200",member="a"} 1`,
		`catherd_backend_bytes_total{direction="in",member="a"} 250`,
		`catherd_backend_bytes_total{direction="out",member="a"} 10`,
		`catherd_active_requests{member="a"} 1`,
		`catherd_backend_errors_total{kind="connect",member="a"} 1`,
		`catherd_sticky_total{outcome="hit"} 1`,
		`catherd_sticky_total{outcome="failover"} 2`,
		`catherd_member_state{member="a",state="error"} 1`,
		`catherd_member_state{member="a",state="ok"} 0`,
		`catherd_member_state{member="b",state="drain"} 1`,
		`catherd_member_weight{member="a"} 3`,
		`catherd_member_ramp_ratio{member="a"} 1`,
		`catherd_member_state{member="c",state="down"} 1`,
		`catherd_failovers_total{member="c",partner="a"} 1`,
		`catherd_request_duration_seconds_count{member="a"} 1`,
		`process_cpu_seconds_total`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s", want)
		}
	}
}

// An instance without an HTTP proxy (L4 services only) has no members.
func TestNoPoolNoMemberStates(t *testing.T) {
	rec := httptest.NewRecorder()
	New(nil).Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if strings.Contains(rec.Body.String(), "catherd_member_state") {
		t.Errorf("member states exported without a pool")
	}
}
