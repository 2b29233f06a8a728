package metrics

import "github.com/prometheus/client_golang/prometheus"

// scraped is a collector whose series are computed from plain values when
// Prometheus scrapes: what other parts of catherd report (member states,
// moved sessions, the cluster's membership, the tier, certificates, client
// connections) is read then, so a series never disagrees with what
// catherd uses.
type scraped struct {
	descs   []*prometheus.Desc // every series collect may send
	collect func(s sink)
}

// onScrape registers a scraped collector of descs.
func (m *Metrics) onScrape(descs []*prometheus.Desc, collect func(s sink)) {
	m.reg.MustRegister(scraped{descs, collect})
}

func (c scraped) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c scraped) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// sink sends the samples of one scrape.
type sink chan<- prometheus.Metric

func (s sink) gauge(d *prometheus.Desc, v float64, labels ...string) {
	s <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (s sink) counter(d *prometheus.Desc, v uint64, labels ...string) {
	s <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}
