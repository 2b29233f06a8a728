package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// outcomes are the balancer's, as catherd passes them to New.
var outcomes = []string{"new", "hit", "failover", "unknown_route", "moved"}

// states are the balancer's member states, as catherd passes them to Members.
var states = []string{"ok", "error", "disabled", "stopped", "drain", "standby", "down", "isolated", "settling"}

func TestSeries(t *testing.T) {
	m := New(Build{}, outcomes)
	m.Members(states, func() []MemberState {
		return []MemberState{
			{Name: "a", State: "error", Weight: 3, Ramp: 1},
			{Name: "b", State: "drain", Weight: 1, Ramp: 1},
			{Name: "c", State: "down", Weight: 1, Ramp: 1, Failovers: map[string]uint64{"a": 1}},
		}
	})
	ma := m.Member("a")
	ma.Begin()
	ma.Done(200, time.Now(), 10, 250, true)
	ma.Begin() // still in flight
	ma.Error("connect")
	m.Sticky(1) // hit
	m.Sticky(2) // failover
	m.Sticky(2)

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
	New(Build{}, outcomes).Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if strings.Contains(rec.Body.String(), "catherd_member_state") {
		t.Errorf("member states exported without a pool")
	}
}
