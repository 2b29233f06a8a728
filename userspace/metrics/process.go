package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// buildInfo exports the running build as labels of a constant 1, as
// Prometheus' own exporters do: a query can join it on instance to show
// which version each catherd runs.
func buildInfo(v Build) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "catherd_build_info",
		Help:        "Always 1; the labels say which build of catherd this is.",
		ConstLabels: prometheus.Labels{"version": v.Version, "revision": v.Revision, "goversion": v.GoVersion},
	})
	g.Set(1)
	return g
}

// ClientConns exports the client side, read at scrape time: connections
// open (each holds a slot of --max-client-conns), accepted since start, and
// the limit, so that saturation is open / limit.
func (m *Metrics) ClientConns(read func() (open, accepted uint64, limit int)) {
	m.onScrape([]*prometheus.Desc{clientOpenDesc, clientAcceptedDesc, clientLimitDesc}, func(s sink) {
		open, accepted, limit := read()
		s.gauge(clientOpenDesc, float64(open))
		s.counter(clientAcceptedDesc, accepted)
		s.gauge(clientLimitDesc, float64(limit))
	})
}

var (
	clientOpenDesc = prometheus.NewDesc("catherd_client_connections_open",
		"Client connections open, each holding one of the --max-client-conns slots (WebSocket tunnels included).", nil, nil)
	clientAcceptedDesc = prometheus.NewDesc("catherd_client_connections_accepted_total",
		"Client connections accepted.", nil, nil)
	clientLimitDesc = prometheus.NewDesc("catherd_client_connections_limit",
		"--max-client-conns: past it, new clients wait in the kernel's accept queue.", nil, nil)
)

// healthChecks are the series of health probes, registered by New.
type healthChecks struct {
	results  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHealthChecks() healthChecks {
	return healthChecks{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "catherd_health_checks_total",
			Help: "Health probes of each member, by result: pass or fail.",
		}, []string{"member", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "catherd_health_check_duration_seconds",
			Help:    "How long each member's health probes took, failed ones included.",
			Buckets: latencyBuckets,
		}, []string{"member"}),
	}
}

// HealthCheck records one health probe of a member.
func (m *Metrics) HealthCheck(member string, passed bool, took time.Duration) {
	result := "fail"
	if passed {
		result = "pass"
	}
	m.health.results.WithLabelValues(member, result).Inc()
	m.health.duration.WithLabelValues(member).Observe(took.Seconds())
}

// AccessLog exports the access log's line counters, read at scrape time:
// lines handed to the file, and lines dropped because the writer was
// behind (the request path never waits for it).
func (m *Metrics) AccessLog(written, dropped func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "catherd_access_log_lines_total",
		Help: "Access log lines handed to the file.",
	}, func() float64 { return float64(written()) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "catherd_access_log_dropped_total",
		Help: "Access log lines dropped because the writer was behind; requests never wait for the log.",
	}, func() float64 { return float64(dropped()) }))
}
