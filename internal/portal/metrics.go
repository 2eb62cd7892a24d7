package portal

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/remote-build-nodes/rbn/internal/metrics"
)

const subsystem = "portal"

// Reasons a relayed connection failed (the reason label).
const (
	// ReasonDial: no port-forward connection to the pod could be made.
	ReasonDial = "Dial"
	// ReasonStream: the port-forward connection refused a new stream.
	ReasonStream = "Stream"
	// ReasonPortForward: the kubelet reported an error on the stream (the
	// pod's port refused, the pod is gone).
	ReasonPortForward = "PortForward"
	// ReasonUnknownDestination: the connection's destination (the pod
	// address and port it was sent to) is no endpoint of any EndpointSlice
	// (it left them, or a client used a pod address directly).
	ReasonUnknownDestination = "UnknownDestination"
)

// Metrics are the portal's series, updated where things happen.
type Metrics struct {
	listeners    prometheus.Gauge
	endpoints    prometheus.Gauge
	skipped      prometheus.Gauge
	accepted     prometheus.Counter
	failed       *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	dials        prometheus.Counter
	dialFailures prometheus.Counter
	fallbacks    prometheus.Counter
	// raw counts the connections relayed through the raw port-forward,
	// rawUnsupported the nodes found not serving it.
	raw, rawUnsupported prometheus.Counter
}

// NewMetrics makes the portal's series; register them with Collectors.
func NewMetrics() *Metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metrics.Namespace, Subsystem: subsystem, Name: name, Help: help}
	}
	return &Metrics{
		listeners: prometheus.NewGauge(prometheus.GaugeOpts(opts("listeners",
			"TCP ports the portal listens on in its network namespace: every port a relayed endpoint uses."))),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts(opts("endpoints",
			"Remote pod (IPv4 address, TCP port) pairs that EndpointSlices name and the portal relays."))),
		skipped: prometheus.NewGauge(prometheus.GaugeOpts(opts("skipped_ports",
			"Remote pod ports that EndpointSlices name but the portal does not relay (UDP, SCTP)."))),
		accepted: prometheus.NewCounter(prometheus.CounterOpts(opts("connections_accepted_total",
			"Connections to remote pod addresses accepted."))),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts(opts("connections_failed_total",
			"Accepted connections that could not be relayed, by reason (Dial, Stream, PortForward, UnknownDestination).")), []string{"reason"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts(opts("relayed_bytes_total",
			"Bytes relayed, by direction (to_pod, from_pod).")), []string{"direction"}),
		dials: prometheus.NewCounter(prometheus.CounterOpts(opts("portforward_dials_total",
			"Port-forward connections dialed to pods (to their node's kubelet API, or through the apiserver)."))),
		dialFailures: prometheus.NewCounter(prometheus.CounterOpts(opts("portforward_dial_failures_total",
			"Port-forward dials that failed."))),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts(opts("portforward_fallbacks_total",
			"Port-forward dials made through the apiserver instead of the pod's node's kubelet API: it refused the portal (403: an rbn-kubelet older than the portal, during an upgrade), or the pod's endpoint named no node."))),
		raw: prometheus.NewCounter(prometheus.CounterOpts(opts("raw_connections_total",
			"Connections relayed through rbn's raw port-forward on the pod's node's kubelet API (one TLS connection each, no SPDY)."))),
		rawUnsupported: prometheus.NewCounter(prometheus.CounterOpts(opts("raw_unsupported_total",
			"Raw port-forwards a node's rbn-kubelet did not serve (older than the portal): its connections go over SPDY for a minute."))),
	}
}

// Collectors are the series to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.listeners, m.endpoints, m.skipped, m.accepted, m.failed, m.bytes, m.dials, m.dialFailures, m.fallbacks, m.raw, m.rawUnsupported}
}
