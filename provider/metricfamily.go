package provider

import (
	"time"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/utils/ptr"
)

// The kubelet API's metrics endpoints (/metrics/resource,
// /metrics/cadvisor, /metrics, /metrics/probes) are rendered from metric families built
// here rather than from a Prometheus registry: each scrape renders one
// reading of a node, and the same process serves many nodes.

func newFamily(name, help string, typ dto.MetricType) *dto.MetricFamily {
	return &dto.MetricFamily{Name: ptr.To(name), Help: ptr.To(help), Type: typ.Enum()}
}

// labelPairs pairs up names and values: labelPairs("pod", "a", "namespace", "b").
func labelPairs(kv ...string) []*dto.LabelPair {
	out := make([]*dto.LabelPair, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &dto.LabelPair{Name: ptr.To(kv[i]), Value: ptr.To(kv[i+1])})
	}
	return out
}

// addSample appends a sample to a counter or gauge family, stamped with t
// in ms (as kubelet stamps a reading's figures) unless t is zero.
func addSample(f *dto.MetricFamily, value float64, t time.Time, lp []*dto.LabelPair) {
	m := &dto.Metric{Label: lp}
	if *f.Type == dto.MetricType_COUNTER {
		m.Counter = &dto.Counter{Value: ptr.To(value)}
	} else {
		m.Gauge = &dto.Gauge{Value: ptr.To(value)}
	}
	if !t.IsZero() {
		m.TimestampMs = ptr.To(t.UnixMilli())
	}
	f.Metric = append(f.Metric, m)
}

// nonEmpty keeps the families that have a sample, in order.
func nonEmpty(fs ...*dto.MetricFamily) []*dto.MetricFamily {
	var out []*dto.MetricFamily
	for _, f := range fs {
		if len(f.Metric) > 0 {
			out = append(out, f)
		}
	}
	return out
}
