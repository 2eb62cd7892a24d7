package provider

import (
	"cmp"
	"context"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/provider/probe"
)

// ProbeMetrics is the node's /metrics/probes: kubelet's prober series,
// read from the probes of the node's pod workers at each scrape (see
// podProbes for how long a series lives).
func (p *Pods) ProbeMetrics(_ context.Context) ([]*dto.MetricFamily, error) {
	var probes []podProbeCounts
	for _, w := range p.podWorkers() {
		counts := w.probes.counts()
		if len(counts) == 0 {
			continue
		}
		w.mu.Lock()
		pc := podProbeCounts{namespace: w.pod.Namespace, name: w.pod.Name, uid: w.pod.UID, probes: counts}
		w.mu.Unlock()
		probes = append(probes, pc)
	}
	return buildProbeMetrics(probes), nil
}

// podProbeCounts is one reading of the probes of one pod.
type podProbeCounts struct {
	namespace, name string
	uid             types.UID
	probes          []probeCounts
}

// Kubelet's prober_probe_total result label values.
const (
	probeResultSuccessful = "successful"
	probeResultFailed     = "failed"
)

// buildProbeMetrics renders kubelet's /metrics/probes, with its names,
// help texts (with component-base's stability prefixes) and labels:
//   - prober_probe_total{probe_type,result,container,pod,namespace,pod_uid}:
//     counter, one series per result counted (successful, failed; kubelet's
//     "unknown" never is: its prober reports none)
//   - prober_probe_duration_seconds{probe_type,container,pod,namespace}:
//     histogram of the successful attempts' durations in kubelet's buckets
//     (Prometheus' default ones), once one was observed
//
// As a Prometheus registry gathers them: families by name, each one's
// series by their label values in the order of the labels' names.
// Left out: process_start_time_seconds, which kubelet also serves here; it
// would describe the rbn-kubelet process every node of the replica shares
// (as go_* and process_* on /metrics, see buildKubeletMetrics).
func buildProbeMetrics(pods []podProbeCounts) []*dto.MetricFamily {
	total := newFamily("prober_probe_total", "[BETA] Cumulative number of a liveness, readiness or startup probe for a container by result.", dto.MetricType_COUNTER)
	duration := newFamily("prober_probe_duration_seconds", "[ALPHA] Duration in seconds for a probe response.", dto.MetricType_HISTOGRAM)
	for _, pd := range pods {
		for _, c := range pd.probes {
			for _, r := range []struct {
				result string
				n      uint64
			}{{probeResultSuccessful, c.Successful}, {probeResultFailed, c.Failed}} {
				if r.n > 0 {
					addSample(total, float64(r.n), time.Time{}, labelPairs("container", c.container, "namespace", pd.namespace,
						"pod", pd.name, "pod_uid", string(pd.uid), "probe_type", string(c.kind), "result", r.result))
				}
			}
			if c.Count > 0 {
				duration.Metric = append(duration.Metric, &dto.Metric{
					Label:     labelPairs("container", c.container, "namespace", pd.namespace, "pod", pd.name, "probe_type", string(c.kind)),
					Histogram: histogram(c.StatsSnapshot),
				})
			}
		}
	}
	for _, f := range []*dto.MetricFamily{total, duration} {
		slices.SortFunc(f.Metric, compareLabelValues)
	}
	return nonEmpty(duration, total)
}

// histogram is a probe's durations as a Prometheus histogram; the text
// format adds the +Inf bucket (the count).
func histogram(s probe.StatsSnapshot) *dto.Histogram {
	h := &dto.Histogram{SampleCount: ptr.To(s.Count), SampleSum: ptr.To(s.Sum)}
	for i, le := range probe.DurationBuckets {
		h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: ptr.To(le), CumulativeCount: ptr.To(s.Buckets[i])})
	}
	return h
}

// compareLabelValues orders series of one family (same label names, in
// the same order) by their label values, as a Prometheus registry does.
func compareLabelValues(a, b *dto.Metric) int {
	for i := range min(len(a.Label), len(b.Label)) {
		if c := cmp.Compare(a.Label[i].GetValue(), b.Label[i].GetValue()); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a.Label), len(b.Label))
}
