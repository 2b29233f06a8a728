package xdp

import "github.com/prometheus/client_golang/prometheus"

// Collector exports the datapath's counters as Prometheus series, read at
// scrape time by read (Datapath.Stats: the per-CPU maps summed over CPUs).
// The series are the datapath's own, so they live beside it; catherd's
// registry (userspace/metrics) takes them as any other collector.
func Collector(read func() (Stats, error)) prometheus.Collector { return xdpCollector{read} }

type xdpCollector struct{ read func() (Stats, error) }

var (
	xdpPacketsDesc = prometheus.NewDesc("catherd_xdp_packets_total",
		"Packets the XDP program saw, by verdict reason (forwarded, pass_*, drop_*).", []string{"reason"}, nil)
	xdpServicePacketsDesc = prometheus.NewDesc("catherd_xdp_service_packets_total",
		"Packets to an L4 service.", []string{"service"}, nil)
	xdpServiceBytesDesc = prometheus.NewDesc("catherd_xdp_service_bytes_total",
		"Bytes (whole frames) to an L4 service.", []string{"service"}, nil)
	xdpConntrackDesc = prometheus.NewDesc("catherd_xdp_conntrack_lookups_total",
		"Connection table lookups of an L4 service: hit (flow known, backend usable) or miss (Maglev picked).", []string{"service", "result"}, nil)
	xdpNoBackendDesc = prometheus.NewDesc("catherd_xdp_no_backend_drops_total",
		"Packets to an L4 service dropped because no backend was usable.", []string{"service"}, nil)
	xdpBackendPacketsDesc = prometheus.NewDesc("catherd_xdp_backend_packets_total",
		"Packets forwarded to an L4 backend.", []string{"service", "backend"}, nil)
	xdpBackendBytesDesc = prometheus.NewDesc("catherd_xdp_backend_bytes_total",
		"Bytes (whole frames) forwarded to an L4 backend.", []string{"service", "backend"}, nil)
	xdpBackendUsableDesc = prometheus.NewDesc("catherd_xdp_backend_usable",
		"1 when an L4 backend takes flows (healthy, enabled, next hop known), else 0.", []string{"service", "backend"}, nil)
	xdpReadErrorDesc = prometheus.NewDesc("catherd_xdp_read_error",
		"Reported (as a scrape error) when the XDP counters cannot be read.", nil, nil)
)

func (c xdpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{xdpPacketsDesc, xdpServicePacketsDesc, xdpServiceBytesDesc, xdpConntrackDesc,
		xdpNoBackendDesc, xdpBackendPacketsDesc, xdpBackendBytesDesc, xdpBackendUsableDesc, xdpReadErrorDesc} {
		ch <- d
	}
}

func (c xdpCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.read()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(xdpReadErrorDesc, err)
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, r := range Reasons {
		counter(xdpPacketsDesc, st.Verdicts[r], r)
	}
	for _, s := range st.Services {
		counter(xdpServicePacketsDesc, s.Packets, s.Service)
		counter(xdpServiceBytesDesc, s.Bytes, s.Service)
		counter(xdpConntrackDesc, s.ConnHits, s.Service, "hit")
		counter(xdpConntrackDesc, s.ConnMisses, s.Service, "miss")
		counter(xdpNoBackendDesc, s.NoBackend, s.Service)
		for _, b := range s.Backends {
			counter(xdpBackendPacketsDesc, b.Packets, s.Service, b.Addr.String())
			counter(xdpBackendBytesDesc, b.Bytes, s.Service, b.Addr.String())
			usable := 0.0
			if b.Usable {
				usable = 1
			}
			ch <- prometheus.MustNewConstMetric(xdpBackendUsableDesc, prometheus.GaugeValue, usable, s.Service, b.Addr.String())
		}
	}
}
