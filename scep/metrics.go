package scep

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus collectors of a Server. A nil *Metrics records
// nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	issue    prometheus.Histogram
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custody_scep_requests_total",
			Help: "SCEP requests by operation and result.",
		}, []string{"operation", "result"}),
		issue: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "custody_scep_issue_seconds",
			Help:    "Time to authorise, sign and record one certificate.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	reg.MustRegister(m.requests, m.issue)
	return m
}

func (m *Metrics) request(op, result string) {
	if m != nil {
		m.requests.WithLabelValues(op, result).Inc()
	}
}

func (m *Metrics) issued(d time.Duration) {
	if m != nil {
		m.issue.Observe(d.Seconds())
	}
}
