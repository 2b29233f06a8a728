package main

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
)

// The balancer's members reach catherd_member_* and
// catherd_failovers_total as the balancer sees them.
func TestMemberSeries(t *testing.T) {
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
	pool.MarkError(a)
	m := newMetrics()
	m.Members(names(balancer.States), memberSeries(pool))
	m.Sticky(int(balancer.Failover))
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`catherd_member_state{member="a",state="error"} 1`,
		`catherd_member_state{member="a",state="ok"} 0`,
		`catherd_member_state{member="b",state="drain"} 1`,
		`catherd_member_state{member="c",state="down"} 1`,
		`catherd_member_weight{member="a"} 3`,
		`catherd_member_ramp_ratio{member="a"} 1`,
		`catherd_failovers_total{member="c",partner="a"} 1`,
		`catherd_sticky_total{outcome="failover"} 1`,
		`catherd_sticky_total{outcome="moved"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s", want)
		}
	}
}
