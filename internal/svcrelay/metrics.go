package svcrelay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/remote-build-nodes/rbn/internal/metrics"
)

const subsystem = "cluster_services"

// Results of an accepted connection (the result label) besides the
// RouteError reasons.
const (
	// ResultRelayed: the Service's address answered; the connection is
	// relayed.
	ResultRelayed = "relayed"
	// ReasonHeader: no valid header line within the header timeout.
	ReasonHeader = "Header"
	// ReasonUnknownRoute: the header names an address the pod has no
	// route for.
	ReasonUnknownRoute = "UnknownRoute"
	// ReasonResolve: the resolver failed for a reason other than a
	// RouteError's (the Service cache unavailable).
	ReasonResolve = "Resolve"
	// ReasonDial: the Service's address did not answer within the dial
	// timeout, or refused.
	ReasonDial = "Dial"
)

// Metrics are the cluster-Services relay's series, shared by all pods.
type Metrics struct {
	connections *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	active      prometheus.Gauge
}

// NewMetrics makes the series and registers them with reg (none if nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metrics.Namespace, Subsystem: subsystem, Name: name, Help: help}
	}
	m := &Metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts(opts("connections_total",
			"Connections from pods' forwarders to cluster Services, by result: relayed, or why not (Header, UnknownRoute, ServiceNotFound, Headless, PortNotFound, NotTCP, Resolve, Dial).")), []string{"result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts(opts("bytes_total",
			"Bytes relayed between pods and cluster Services, by direction (to_service, from_service).")), []string{"direction"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts(opts("active_connections",
			"Connections from pods' forwarders open now, from accept to close (being set up or relayed)."))),
	}
	// Every series exists from the start, so that rate() and alerts see a
	// first failure as an increase rather than a new series.
	for _, r := range []string{ResultRelayed, ReasonHeader, ReasonUnknownRoute, ReasonServiceNotFound, ReasonHeadless,
		ReasonPortNotFound, ReasonNotTCP, ReasonResolve, ReasonDial} {
		m.connections.WithLabelValues(r)
	}
	m.bytes.WithLabelValues(directionTo)
	m.bytes.WithLabelValues(directionFrom)
	if reg != nil {
		reg.MustRegister(m.connections, m.bytes, m.active)
	}
	return m
}

const (
	directionTo   = "to_service"
	directionFrom = "from_service"
)
