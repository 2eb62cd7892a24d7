package server

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the extender's decisions as Prometheus sees them.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	nodes    *prometheus.CounterVec
}

// NewMetrics registers the extender's metrics in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rbn", Subsystem: "extender", Name: "requests_total",
			Help: "Calls of kube-scheduler to rbn-extender, by verb (filter, prioritize) and HTTP status code.",
		}, []string{"verb", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "rbn", Subsystem: "extender", Name: "request_duration_seconds",
			Help:    "Time rbn-extender took to answer kube-scheduler, by verb.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
		}, []string{"verb"}),
		nodes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rbn", Subsystem: "extender", Name: "filtered_nodes_total",
			Help: "Candidate nodes of filter calls, by result (passed, failed: the extender ruled the node out for the pod).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.requests, m.duration, m.nodes)
	return m
}

// observe records one call; a nil Metrics records nothing.
func (m *Metrics) observe(verb string, code int, took time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(verb, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(verb).Observe(took.Seconds())
}

// filtered records the outcome of a filter call's candidates.
func (m *Metrics) filtered(passed, failed int) {
	if m == nil {
		return
	}
	m.nodes.WithLabelValues("passed").Add(float64(passed))
	m.nodes.WithLabelValues("failed").Add(float64(failed))
}
