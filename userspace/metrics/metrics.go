// Package metrics owns catherd's Prometheus registry and series. The proxy
// gets one Member handle per backend with every per-request series resolved
// up front, so the request path does no label lookups beyond the status
// code.
//
// It depends on nothing else of catherd's: what it shows of other parts
// (member states, moved sessions, the cluster's membership, certificates)
// comes in as plain values read at scrape time, and a part that owns a
// whole family of series (the XDP datapath) registers its own collector.
// So the L7 proxy, which records into it, does not depend on the datapath.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	sticky   []prometheus.Counter // by outcome, in the order New was given
	// handshakeFailures and http2Resets are registered by TLS, when
	// catherd terminates TLS (and so serves HTTP/2).
	handshakeFailures prometheus.Counter
	http2Resets       prometheus.Counter
	health            healthChecks

	connsMu sync.Mutex
	conns   map[string][]prometheus.Collector // BackendConns' series, by member
}

// Build describes the running build, as the labels of catherd_build_info.
type Build struct {
	Version, Revision, GoVersion string
}

// New registers catherd's metrics, the build's description, and Go runtime
// and process metrics. stickyOutcomes name the ways a request's member is
// chosen (the balancer's outcomes, as catherd_sticky_total labels them);
// Sticky counts them by their position in it.
func New(build Build, stickyOutcomes []string) *Metrics {
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
	for _, o := range stickyOutcomes {
		m.sticky = append(m.sticky, sticky.WithLabelValues(o))
	}
	m.reg.MustRegister(m.requests, m.duration, m.bytes, m.active, m.errors, m.attempts, sticky,
		m.health.results, m.health.duration, buildInfo(build),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
	cs := []prometheus.Collector{prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "catherd_backend_connections_opened_total",
		Help:        "Connections opened to each member.",
		ConstLabels: labels,
	}, func() float64 { return float64(opened()) })}
	if discarded != nil {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "catherd_backend_connections_discarded_total",
			Help:        "Connections to each member closed because they failed or broke the protocol (AJP members).",
			ConstLabels: labels,
		}, func() float64 { return float64(discarded()) }))
	}
	m.reg.MustRegister(cs...)
	m.connsMu.Lock()
	defer m.connsMu.Unlock()
	if m.conns == nil {
		m.conns = map[string][]prometheus.Collector{}
	}
	m.conns[member] = cs
}

// ForgetMember drops every series of a member removed at run time, so
// that a member added later under its name starts from zero.
func (m *Metrics) ForgetMember(member string) {
	labels := prometheus.Labels{"member": member}
	m.requests.DeletePartialMatch(labels)
	m.duration.DeletePartialMatch(labels)
	m.bytes.DeletePartialMatch(labels)
	m.active.DeletePartialMatch(labels)
	m.errors.DeletePartialMatch(labels)
	m.attempts.DeletePartialMatch(labels)
	m.health.results.DeletePartialMatch(labels)
	m.health.duration.DeletePartialMatch(labels)
	m.connsMu.Lock()
	defer m.connsMu.Unlock()
	for _, c := range m.conns[member] {
		m.reg.Unregister(c)
	}
	delete(m.conns, member)
}

// Sticky counts one routing outcome, by its position in the outcomes
// given to New.
func (m *Metrics) Sticky(outcome int) { m.sticky[outcome].Inc() }

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
