package broker

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type metrics struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	connections prometheus.Gauge
	produced    *prometheus.CounterVec
	fetched     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_requests_total", Help: "Kafka requests served, by API.",
		}, []string{"api"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strata_request_duration_seconds", Help: "Time to handle a Kafka request (including long-poll waits), by API.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"api"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_network_bytes_in_total", Help: "Request bytes received.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_network_bytes_out_total", Help: "Response bytes sent.",
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strata_connections", Help: "Open client connections.",
		}),
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_topic_bytes_in_total", Help: "Record-batch bytes appended, by topic.",
		}, []string{"topic"}),
		fetched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_topic_bytes_out_total", Help: "Record-batch bytes fetched, by topic.",
		}, []string{"topic"}),
	}
	reg.MustRegister(m.requests, m.latency, m.bytesIn, m.bytesOut, m.connections, m.produced, m.fetched, &logCollector{s: s})
	return m
}

func (m *metrics) observe(key int16, d time.Duration) {
	name := kmsg.NameForKey(key)
	if name == "" {
		name = strconv.Itoa(int(key))
	}
	m.requests.WithLabelValues(name).Inc()
	m.latency.WithLabelValues(name).Observe(d.Seconds())
}

// logCollector reports partition gauges at scrape time.
type logCollector struct{ s *Server }

var (
	descPartitions = prometheus.NewDesc("strata_partitions", "Partitions held by this broker.", nil, nil)
	descLogSize    = prometheus.NewDesc("strata_log_size_bytes", "Bytes of a partition's local log.", []string{"topic", "partition"}, nil)
	descLogEnd     = prometheus.NewDesc("strata_log_end_offset", "Next offset of a partition.", []string{"topic", "partition"}, nil)
	descLogStart   = prometheus.NewDesc("strata_log_start_offset", "First readable offset of a partition.", []string{"topic", "partition"}, nil)
)

func (c *logCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPartitions
	ch <- descLogSize
	ch <- descLogEnd
	ch <- descLogStart
}

func (c *logCollector) Collect(ch chan<- prometheus.Metric) {
	parts := c.s.allPartitions()
	ch <- prometheus.MustNewConstMetric(descPartitions, prometheus.GaugeValue, float64(len(parts)))
	for _, p := range parts {
		l := p.getLog()
		if l == nil {
			continue
		}
		idx := strconv.Itoa(int(p.index))
		ch <- prometheus.MustNewConstMetric(descLogSize, prometheus.GaugeValue, float64(l.Size()), p.topic, idx)
		ch <- prometheus.MustNewConstMetric(descLogEnd, prometheus.GaugeValue, float64(l.LogEndOffset()), p.topic, idx)
		ch <- prometheus.MustNewConstMetric(descLogStart, prometheus.GaugeValue, float64(l.LogStartOffset()), p.topic, idx)
	}
}
