package tiering

import (
	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics registers the tiering metrics (process-wide counters) with
// reg; call it once per registry.
func RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{metricUploadedSegments, metricUploadedBytes, metricUploadSeconds,
		metricExpiredSegments, metricOrphansRemoved, metricTaskErrors, metricRemoteReadBytes} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

var (
	metricUploadedSegments = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strata_tiering_uploaded_segments_total", Help: "Segments copied to the remote tier."})
	metricUploadedBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strata_tiering_uploaded_bytes_total", Help: "Bytes copied to the remote tier (segments, indexes, manifests)."})
	metricUploadSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "strata_tiering_upload_seconds", Help: "Time to copy one segment, copy-started to copy-finished.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)})
	metricExpiredSegments = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strata_tiering_expired_segments_total", Help: "Remote segments deleted by retention."})
	metricOrphansRemoved = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strata_tiering_unfinished_segments_removed_total", Help: "Objects of upload or delete attempts that never finished, removed."})
	metricTaskErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strata_tiering_task_errors_total", Help: "Partition tiering tasks that failed (retried next round)."})
	metricRemoteReadBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strata_tiering_remote_read_bytes_total", Help: "Record bytes served from the remote tier."})
)
