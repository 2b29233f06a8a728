package metrics

import (
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/catherd/catherd/userspace/xdp"
)

var update = flag.Bool("update", false, "rewrite testdata/names.txt from the registry")

// everything is a registry with every source plugged in and every series
// touched once, as a full catherd exports them: the XDP datapath's
// collector included, which its package owns (only this test imports it).
func everything(t *testing.T) *Metrics {
	t.Helper()
	m := New(Build{Version: "v", Revision: "r", GoVersion: "go"}, outcomes)
	m.Members(states, func() []MemberState {
		return []MemberState{{Name: "a", State: "ok", Weight: 1, Ramp: 1}, {Name: "b", State: "down", Weight: 1, Ramp: 1,
			Failovers: map[string]uint64{"a": 1}}}
	})
	mm := m.Member("a")
	mm.Begin()
	mm.Done(200, time.Now(), 1, 1, true)
	mm.Error("connect")
	mm.Retried()
	m.Sticky(1)
	m.HealthCheck("a", true, time.Millisecond)
	m.ClientConns(func() (uint64, uint64, int) { return 1, 2, 3 })
	m.AccessLog(func() uint64 { return 1 }, func() uint64 { return 0 })
	m.BackendConns("a", func() uint64 { return 1 }, func() uint64 { return 0 })
	m.MovedSessions([]string{"down"}, func() MovedStats { return MovedStats{} })
	m.TLS(func() TLSStats { return TLSStats{Certs: []Cert{{File: "site.crt", Subject: "CN=site"}}} })
	m.Membership(func() MembershipStats { return MembershipStats{} })
	m.Tier(func() TierStats {
		return TierStats{Peers: []PeerStats{{Name: "lb2", State: "alive", LastContact: time.Now(), Version: 1}}}
	})
	m.Register(xdp.Collector(func() (xdp.Stats, error) {
		return xdp.Stats{Services: []xdp.ServiceStats{{Service: "s", Backends: []xdp.BackendStats{{}}}}}, nil
	}))
	return m
}

// The exported names are an interface (dashboards, alerts): a change must
// be deliberate, made with go test -run TestMetricNames -update, and show
// in review as a change of testdata/names.txt. They also keep Prometheus'
// conventions.
func TestMetricNames(t *testing.T) {
	families, err := everything(t).reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, f := range families {
		name, kind := f.GetName(), strings.ToLower(f.GetType().String())
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue // the client library's own
		}
		lines = append(lines, name+" "+kind)
		switch {
		case !strings.HasPrefix(name, "catherd_"):
			t.Errorf("%s: not under catherd_", name)
		case f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total"):
			t.Errorf("%s: a counter's name ends in _total", name)
		case f.GetType() != dto.MetricType_COUNTER && strings.HasSuffix(name, "_total"):
			t.Errorf("%s: only counters end in _total", name)
		case regexp.MustCompile(`_(ms|milliseconds|kb|mb)(_|$)`).MatchString(name):
			t.Errorf("%s: use base units (seconds, bytes)", name)
		case f.GetHelp() == "":
			t.Errorf("%s: no help text", name)
		}
	}
	slices.Sort(lines)
	got := strings.Join(lines, "\n") + "\n"
	const golden = "testdata/names.txt"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("exported metrics changed (go test -run TestMetricNames -update, if on purpose):\ngot:\n%s\nwant:\n%s", got, want)
	}
}

// The Grafana dashboard in the repository queries only series catherd
// exports.
func TestDashboardUsesExportedNames(t *testing.T) {
	b, err := os.ReadFile("../../docs/grafana/catherd.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	names, err := os.ReadFile("testdata/names.txt")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, line := range strings.Split(string(names), "\n") {
		if name, kind, ok := strings.Cut(line, " "); ok {
			known[name] = true
			if kind == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					known[name+s] = true
				}
			}
		}
	}
	series := regexp.MustCompile(`catherd_[a-z0-9_]+`)
	queries := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			queries++
			for _, name := range series.FindAllString(target.Expr, -1) {
				if !known[name] {
					t.Errorf("panel %q queries %s, which catherd does not export", p.Title, name)
				}
			}
		}
	}
	if queries < 10 {
		t.Errorf("the dashboard has %d queries; it should cover requests, members, failover, membership and XDP", queries)
	}
}
