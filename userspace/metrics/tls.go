package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TLSStats are the certificates catherd serves and their reloads.
type TLSStats struct {
	Certs    []Cert
	Reloads  uint64 // reloads that took the new files
	Failures uint64 // reloads that kept the previous certificates
}

// Cert is one served certificate.
type Cert struct {
	File     string
	Subject  string
	NotAfter time.Time
}

// TLS exports the certificates catherd serves and their reloads, read at
// scrape time, the failed-handshake counter, and the count of HTTP/2
// streams reset before they were forwarded.
func (m *Metrics) TLS(read func() TLSStats) {
	m.reg.MustRegister(m.handshakeFailures, m.http2Resets)
	m.onScrape([]*prometheus.Desc{certExpiryDesc, certReloadsDesc}, func(s sink) {
		st := read()
		for _, cert := range st.Certs {
			s.gauge(certExpiryDesc, float64(cert.NotAfter.Unix()), cert.File, cert.Subject)
		}
		s.counter(certReloadsDesc, st.Reloads, "ok")
		s.counter(certReloadsDesc, st.Failures, "error")
	})
}

// TLSHandshakeFailed counts a client whose TLS handshake failed or timed
// out (scanners, clients without a common protocol version or cipher).
func (m *Metrics) TLSHandshakeFailed() { m.handshakeFailures.Inc() }

// HTTP2ResetUnforwarded counts an HTTP/2 request that catherd dropped
// because its client had reset the stream before a member was chosen: a
// browser that changed its mind, or the rapid-reset attack
// (CVE-2023-44487), which opens and resets streams to make the server
// work for requests nobody waits for.
func (m *Metrics) HTTP2ResetUnforwarded() { m.http2Resets.Inc() }

var (
	certExpiryDesc = prometheus.NewDesc("catherd_tls_certificate_expiry_timestamp_seconds",
		"When each served certificate expires (its NotAfter), as a Unix time; alert well before it.",
		[]string{"file", "subject"}, nil)
	certReloadsDesc = prometheus.NewDesc("catherd_tls_reloads_total",
		"Certificate reloads (SIGHUP), by result: ok, or error (the previous certificates stayed in use).",
		[]string{"result"}, nil)
)
