package provider

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// statusLatencyBuckets run from a millisecond (a write at once) to a
// minute (an apiserver that throttles or is away).
var statusLatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

func newStatusLatencyHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rbn_pod_status_update_latency_seconds", Buckets: statusLatencyBuckets})
}

// StatusLatency is the node's rbn_pod_status_update_latency_seconds, for
// rbn's metrics.
func (p *Pods) StatusLatency() prometheus.Histogram { return p.statusLatency }

// StatusClient wraps the pod client that virtual-kubelet writes the pods'
// statuses with, so that p learns of each status written: the latency from
// a change of a pod's status that p reported to the apiserver accepting it
// (virtual-kubelet's queue and the write).
func (p *Pods) StatusClient(c corev1client.PodsGetter) corev1client.PodsGetter {
	return statusWrites{PodsGetter: c, p: p}
}

type statusWrites struct {
	corev1client.PodsGetter
	p *Pods
}

func (s statusWrites) Pods(namespace string) corev1client.PodInterface {
	return statusWritesIn{PodInterface: s.PodsGetter.Pods(namespace), p: s.p}
}

type statusWritesIn struct {
	corev1client.PodInterface
	p *Pods
}

func (s statusWritesIn) UpdateStatus(ctx context.Context, pd *corev1.Pod, opts metav1.UpdateOptions) (*corev1.Pod, error) {
	out, err := s.PodInterface.UpdateStatus(ctx, pd, opts)
	if err == nil {
		s.p.statusWritten(pd)
	}
	return out, err
}

// statusWritten: pd's status was written. When it is the last status the
// pod's worker reported (virtual-kubelet writes the latest it was given),
// every change reported since the first one not yet written is in the API:
// that one's wait is observed. An older status, or one virtual-kubelet made
// itself (a provider error), leaves the wait running.
func (p *Pods) statusWritten(pd *corev1.Pod) {
	w := p.workerOf(pd.UID)
	if w == nil {
		return
	}
	w.mu.Lock()
	since := w.statusPending
	written := !since.IsZero() && equalStatus(&w.pod.Status, &pd.Status)
	if written {
		w.statusPending = time.Time{}
	}
	w.mu.Unlock()
	if written {
		p.statusLatency.Observe(p.cfg.Clock.Since(since).Seconds())
	}
}
