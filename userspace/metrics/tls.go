package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/catherd/catherd/userspace/certs"
)

// TLS exports the certificates catherd serves and their reloads, read at
// scrape time, and the failed-handshake counter.
func (m *Metrics) TLS(read func() certs.Stats) {
	m.reg.MustRegister(tlsCollector{read}, m.handshakeFailures)
}

// TLSHandshakeFailed counts a client whose TLS handshake failed or timed
// out (scanners, clients without a common protocol version or cipher).
func (m *Metrics) TLSHandshakeFailed() { m.handshakeFailures.Inc() }

type tlsCollector struct{ read func() certs.Stats }

var (
	certExpiryDesc = prometheus.NewDesc("catherd_tls_certificate_expiry_timestamp_seconds",
		"When each served certificate expires (its NotAfter), as a Unix time; alert well before it.",
		[]string{"file", "subject"}, nil)
	certReloadsDesc = prometheus.NewDesc("catherd_tls_reloads_total",
		"Certificate reloads (SIGHUP), by result: ok, or error (the previous certificates stayed in use).",
		[]string{"result"}, nil)
)

func (c tlsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- certExpiryDesc
	ch <- certReloadsDesc
}

func (c tlsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.read()
	for _, cert := range st.Certs {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), cert.File, cert.Subject)
	}
	ch <- prometheus.MustNewConstMetric(certReloadsDesc, prometheus.CounterValue, float64(st.Reloads), "ok")
	ch <- prometheus.MustNewConstMetric(certReloadsDesc, prometheus.CounterValue, float64(st.Failures), "error")
}
