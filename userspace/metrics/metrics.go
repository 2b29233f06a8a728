// Package metrics owns catherd's Prometheus metrics. The proxy gets one
// Member handle per backend with every per-request series resolved up front,
// so the request path does no label lookups beyond the status code.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/version"
)

// NoMember labels requests that no member served (e.g. 503 when all are down).
const NoMember = "none"

// latencyBuckets are the histogram buckets of times spent on a member:
// requests and health checks, from half a millisecond to half a minute.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Metrics is the registry and every series catherd exports.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
	active   *prometheus.GaugeVec
	errors   *prometheus.CounterVec
	attempts *prometheus.CounterVec
	sticky   [balancer.NumOutcomes]prometheus.Counter // by balancer.Outcome
	// handshakeFailures and http2Resets are registered by TLS, when
	// catherd terminates TLS (and so serves HTTP/2).
	handshakeFailures prometheus.Counter
	http2Resets       prometheus.Counter
	health            healthChecks
}

// New registers catherd's metrics, the member-state collector over pool
// (nil when the instance runs no HTTP proxy), the build's description, and
// Go runtime and process metrics.
func New(pool *balancer.Pool) *Metrics {
	m := &Metrics{
		health: newHealthChecks(),
		reg:    prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "catherd_requests_total",
			Help: "Client requests answered, by member and HTTP status code.",
		}, []string{"member", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "catherd_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response body, by member.",
			Buckets: latencyBuckets,
		}, []string{"member"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "catherd_backend_bytes_total",
			Help: "Body bytes sent to (out) and received from (in) each member.",
		}, []string{"member", "direction"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "catherd_active_requests",
			Help: "Requests in flight on each member.",
		}, []string{"member"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "catherd_backend_errors_total",
			Help: "Failed exchanges with a member, by kind: connect, reset, timeout, protocol.",
		}, []string{"member", "kind"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "catherd_retries_total",
			Help: "Requests sent again to another member after a failure on this one.",
		}, []string{"member"}),
		handshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "catherd_tls_handshake_failures_total",
			Help: "Client TLS handshakes that failed or timed out.",
		}),
		http2Resets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "catherd_http2_resets_unforwarded_total",
			Help: "HTTP/2 requests not forwarded because the client reset the stream before a member was chosen.",
		}),
	}
	sticky := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "catherd_sticky_total",
		Help: "How each request's member was chosen: hit (its session's member), new (balanced), failover (its session's member was unusable), unknown_route, moved (to where its session moved earlier).",
	}, []string{"outcome"})
	for _, o := range balancer.Outcomes {
		m.sticky[o] = sticky.WithLabelValues(o.String())
	}
	m.reg.MustRegister(m.requests, m.duration, m.bytes, m.active, m.errors, m.attempts, sticky,
		m.health.results, m.health.duration, buildInfo(version.Get()),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if pool != nil {
		m.reg.MustRegister(stateCollector{pool})
	}
	return m
}

// Register adds a collector that another package owns (the XDP
// datapath's), so that /metrics serves its series too.
func (m *Metrics) Register(c prometheus.Collector) { m.reg.MustRegister(c) }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// BackendConns exports a member's connection counters, read from its
// transport at scrape time: connections opened, and connections closed
// because they failed or broke the protocol (nil when the transport does
// not tell).
func (m *Metrics) BackendConns(member string, opened, discarded func() uint64) {
	labels := prometheus.Labels{"member": member}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "catherd_backend_connections_opened_total",
		Help:        "Connections opened to each member.",
		ConstLabels: labels,
	}, func() float64 { return float64(opened()) }))
	if discarded != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "catherd_backend_connections_discarded_total",
			Help:        "Connections to each member closed because they failed or broke the protocol (AJP members).",
			ConstLabels: labels,
		}, func() float64 { return float64(discarded()) }))
	}
}

// Sticky counts one routing outcome.
func (m *Metrics) Sticky(o balancer.Outcome) { m.sticky[o].Inc() }

// Member is the per-member handle the proxy records into.
type Member struct {
	name     string
	requests *prometheus.CounterVec
	codes    sync.Map // int -> prometheus.Counter
	duration prometheus.Observer
	in, out  prometheus.Counter
	active   prometheus.Gauge
	errors   *prometheus.CounterVec
	retries  prometheus.Counter
}

// Member returns the handle for a member name (NoMember for requests no
// member served).
func (m *Metrics) Member(name string) *Member {
	return &Member{
		name:     name,
		requests: m.requests,
		duration: m.duration.WithLabelValues(name),
		in:       m.bytes.WithLabelValues(name, "in"),
		out:      m.bytes.WithLabelValues(name, "out"),
		active:   m.active.WithLabelValues(name),
		errors:   m.errors,
		retries:  m.attempts.WithLabelValues(name),
	}
}

// Begin counts a request sent to the member.
func (mm *Member) Begin() { mm.active.Inc() }

// Done records a finished request: status code, time since start, and body
// bytes sent to and received from the member. Call Begin first when the
// member served it.
func (mm *Member) Done(code int, start time.Time, sent, received int64, begun bool) {
	c, ok := mm.codes.Load(code)
	if !ok {
		c, _ = mm.codes.LoadOrStore(code, mm.requests.WithLabelValues(mm.name, strconv.Itoa(code)))
	}
	c.(prometheus.Counter).Inc()
	mm.duration.Observe(time.Since(start).Seconds())
	if sent > 0 {
		mm.out.Add(float64(sent))
	}
	if received > 0 {
		mm.in.Add(float64(received))
	}
	if begun {
		mm.active.Dec()
	}
}

// Abort ends a request begun with Begin that got no response from the
// member; Error says why.
func (mm *Member) Abort() { mm.active.Dec() }

// Error counts a failed exchange of the given kind (the proxy names its
// kinds: connect, reset, timeout, protocol).
func (mm *Member) Error(kind string) { mm.errors.WithLabelValues(mm.name, kind).Inc() }

// Retried counts a request moved off this member after a failure.
func (mm *Member) Retried() { mm.retries.Inc() }

// stateCollector reports each member's current state at scrape time, so the
// series can never disagree with what the balancer uses.
type stateCollector struct{ pool *balancer.Pool }

var stateDesc = prometheus.NewDesc("catherd_member_state",
	"1 for the member's current state (ok, error, disabled, stopped, drain, standby, down, isolated, settling), 0 for the others.",
	[]string{"member", "state"}, nil)

var weightDesc = prometheus.NewDesc("catherd_member_weight",
	"The member's weight (lbfactor) for new sessions.", []string{"member"}, nil)

var rampDesc = prometheus.NewDesc("catherd_member_ramp_ratio",
	"The fraction of its weight a returning member gets while its slow start lasts (1 otherwise).", []string{"member"}, nil)

var failoverDesc = prometheus.NewDesc("catherd_failovers_total",
	"Requests of a member's sessions that failed over, by the partner that took them (once per session while moves are remembered).",
	[]string{"member", "partner"}, nil)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- stateDesc
	ch <- weightDesc
	ch <- rampDesc
	ch <- failoverDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.pool.Now()
	for _, mem := range c.pool.Members() {
		current := mem.State(now)
		for _, s := range balancer.States {
			v := 0.0
			if s == current {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, v, mem.Name, s.String())
		}
		ch <- prometheus.MustNewConstMetric(weightDesc, prometheus.GaugeValue, float64(mem.Weight()), mem.Name)
		ch <- prometheus.MustNewConstMetric(rampDesc, prometheus.GaugeValue, mem.Ramp(now), mem.Name)
		for _, to := range c.pool.Members() {
			if n := c.pool.Failovers(mem, to); n > 0 {
				ch <- prometheus.MustNewConstMetric(failoverDesc, prometheus.CounterValue, float64(n), mem.Name, to.Name)
			}
		}
	}
}
