package xdp

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestXDPSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector(func() (Stats, error) {
		return Stats{
			Verdicts: map[string]uint64{"forwarded": 7, "drop_fragment": 2},
			Services: []ServiceStats{{Service: "10.0.0.1:80/tcp", Packets: 8, Bytes: 600, ConnHits: 5, ConnMisses: 3, NoBackend: 1,
				Backends: []BackendStats{{Addr: netip.MustParseAddr("10.0.0.11"), Usable: true, Packets: 7, Bytes: 600}}}},
		}, nil
	}))
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
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
}
