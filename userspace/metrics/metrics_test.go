package metrics

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/xdp"
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

func TestXDPSeries(t *testing.T) {
	m := New(nil) // an L4-only instance has no HTTP pool
	m.XDP(func() (xdp.Stats, error) {
		return xdp.Stats{
			Verdicts: map[string]uint64{"forwarded": 7, "drop_fragment": 2},
			Services: []xdp.ServiceStats{{Service: "10.0.0.1:80/tcp", Packets: 8, Bytes: 600, ConnHits: 5, ConnMisses: 3, NoBackend: 1,
				Backends: []xdp.BackendStats{{Addr: netip.MustParseAddr("10.0.0.11"), Usable: true, Packets: 7, Bytes: 600}}}},
		}, nil
	})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`catherd_xdp_packets_total{reason="forwarded"} 7`,
		`catherd_xdp_packets_total{reason="drop_fragment"} 2`,
		`catherd_xdp_packets_total{reason="pass_not_ip"} 0`,
		`catherd_xdp_service_packets_total{service="10.0.0.1:80/tcp"} 8`,
		`catherd_xdp_service_bytes_total{service="10.0.0.1:80/tcp"} 600`,
		`catherd_xdp_conntrack_lookups_total{result="hit",service="10.0.0.1:80/tcp"} 5`,
		`catherd_xdp_conntrack_lookups_total{result="miss",service="10.0.0.1:80/tcp"} 3`,
		`catherd_xdp_no_backend_drops_total{service="10.0.0.1:80/tcp"} 1`,
		`catherd_xdp_backend_packets_total{backend="10.0.0.11",service="10.0.0.1:80/tcp"} 7`,
		`catherd_xdp_backend_usable{backend="10.0.0.11",service="10.0.0.1:80/tcp"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(body, "catherd_member_state") {
		t.Errorf("member states exported without a pool")
	}
}
