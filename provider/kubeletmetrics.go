package provider

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/internal/callstats"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// KubeletMetrics is the node's /metrics: kubelet's own series that the
// kubernetes-mixin dashboards read and that rbn can give truthfully, from
// what the node's pod workers know (no podman call). See
// buildKubeletMetrics for what is left out.
func (p *Pods) KubeletMetrics(_ context.Context) ([]*dto.MetricFamily, error) {
	pods := p.statusViews()
	figures := kubeletFigures{evictions: p.evictionCounts(), starts: p.startDurations, syncs: p.syncDurations}
	if p.cfg.Host != nil {
		figures.runtime = p.cfg.Host.RuntimeCallStats()
	}
	return buildKubeletMetrics(p.cfg.NodeName, pods, figures), nil
}

// kubeletFigures are what a node's /metrics renders beside its pods.
type kubeletFigures struct {
	// evictions by the kubelet's eviction signal.
	evictions map[string]uint64
	// starts is kubelet_pod_start_duration_seconds.
	starts prometheus.Histogram
	// syncs is kubelet_pod_worker_duration_seconds by operation type.
	syncs map[string]prometheus.Histogram
	// runtime are the build host's podman calls by operation
	// (kubelet_runtime_operations_*).
	runtime map[string]callstats.Op
}

// The pod workers' sync operations, as kubelet's pod workers name them
// (kubelet_pod_worker_duration_seconds's operation_type): a pod's first
// sync, a sync after its spec changed, its teardown, any other sync.
const (
	syncCreate = "create"
	syncUpdate = "update"
	syncKill   = "kill"
	syncSync   = "sync"
)

var syncOperations = []string{syncCreate, syncKill, syncSync, syncUpdate}

const podWorkerHelp = "[ALPHA] Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync"

// newPodWorkerHistograms are one node's kubelet_pod_worker_duration_seconds,
// by operation type, with kubelet's buckets (Prometheus's default ones).
func newPodWorkerHistograms() map[string]prometheus.Histogram {
	out := make(map[string]prometheus.Histogram, len(syncOperations))
	for _, op := range syncOperations {
		out[op] = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kubelet_pod_worker_duration_seconds", Help: podWorkerHelp,
			Buckets: prometheus.DefBuckets, ConstLabels: prometheus.Labels{"operation_type": op}})
	}
	return out
}

// podStartBuckets are the kubelet's buckets of
// kubelet_pod_start_duration_seconds (its podStartupDurationBuckets), so
// that dashboards' quantiles read the same on every node.
var podStartBuckets = []float64{0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600}

const podStartHelp = "[ALPHA] Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run"

// newPodStartHistogram is one node's kubelet_pod_start_duration_seconds.
// It is rendered into the node's /metrics by buildKubeletMetrics, not
// registered: each node has its own, as each kubelet.
func newPodStartHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kubelet_pod_start_duration_seconds", Help: podStartHelp, Buckets: podStartBuckets})
}

// RuntimePods is the node's /runningpods/: the pods whose sandbox runs,
// each with its running containers, in the shape kubelet gives them (see
// runningPods).
func (p *Pods) RuntimePods(_ context.Context) ([]*corev1.Pod, error) {
	return runningPods(p.statusViews()), nil
}

// statusViews are the node's pods as statusView gives them.
func (p *Pods) statusViews() []*corev1.Pod {
	ws := p.podWorkers()
	out := make([]*corev1.Pod, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.statusView())
	}
	return out
}

// Container states as kubelet's kubelet_running_containers labels them
// (its runtime's container states).
const (
	containerStateCreated = "created"
	containerStateRunning = "running"
	containerStateExited  = "exited"
)

// sandboxRunning says whether a pod's sandbox (its podman pod's infra
// container) runs: as kubelet, a pod that ended has its sandbox stopped;
// PodReadyToStartContainers is true once the sandbox is set up.
func sandboxRunning(pd *corev1.Pod) bool {
	if pod.Ended(pd.Status.Phase) {
		return false
	}
	for _, c := range pd.Status.Conditions {
		if c.Type == corev1.PodReadyToStartContainers {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// runtimeState is the state of a container's newest run in the runtime,
// from its status, "" when it has no container on the host (not created
// yet: no ContainerID). Earlier runs are not counted: the pod worker
// replaces a container's run with the next.
func runtimeState(st corev1.ContainerStatus) string {
	switch {
	case st.ContainerID == "":
		return ""
	case st.State.Running != nil:
		return containerStateRunning
	case st.State.Terminated != nil:
		return containerStateExited
	case st.State.Waiting != nil && st.State.Waiting.Reason != "ContainerCreating" && st.LastTerminationState.Terminated != nil:
		return containerStateExited // waiting to restart (back-off)
	default:
		return containerStateCreated
	}
}

// buildKubeletMetrics renders kubelet's series of a node, with kubelet's
// names, help texts (component-base prefixes ALPHA ones with "[ALPHA] ")
// and labels:
//   - kubelet_node_name{node} 1
//   - kubelet_running_pods: pods whose sandbox runs
//   - kubelet_running_containers{container_state}: the node's containers
//     by runtime state (created, exited, running), sandboxes not counted,
//     every state given (0 when none)
//   - kubelet_evictions{eviction_signal}: the pods evicted, by the
//     kubelet's signal (emptydirfs.limit, ephemeralpodfs.limit,
//     ephemeralcontainerfs.limit, nodefs.available), the signals seen only
//     (as kubelet's counter vector)
//   - kubelet_pod_start_duration_seconds: from the pod's first sight by
//     this process (its pod worker's start) to its first report as
//     Running, with kubelet's buckets; a pod taken over from another
//     replica already running is not counted again
//   - kubelet_pod_worker_duration_seconds{operation_type}: each sync of a
//     pod's worker, named as kubelet's, the types seen only
//   - kubelet_runtime_operations_total, _errors_total and
//     _duration_seconds{operation_type}: the build host's podman calls
//     (runtimeOperations)
//
// Left out: go_* and process_* (they would describe the rbn-kubelet
// process every node of the replica shares: they are on rbn-kubelet's own
// metrics port, see docs/operations.md); kubelet_pleg_relist_* (podman's
// events drive the pod workers, the relist is only their fallback, and it
// is not timed) and the volume/cgroup series: nothing observes them (yet),
// and an empty histogram would read as "nothing happened".
func buildKubeletMetrics(node string, pods []*corev1.Pod, figures kubeletFigures) []*dto.MetricFamily {
	nodeName := newFamily("kubelet_node_name", "[ALPHA] The node's name. The count is always 1.", dto.MetricType_GAUGE)
	runningPods := newFamily("kubelet_running_pods", "[ALPHA] Number of pods that have a running pod sandbox", dto.MetricType_GAUGE)
	runningCtrs := newFamily("kubelet_running_containers", "[ALPHA] Number of containers currently running", dto.MetricType_GAUGE)

	addSample(nodeName, 1, time.Time{}, labelPairs("node", node))
	sandboxes := 0
	states := map[string]int{}
	for _, pd := range pods {
		if sandboxRunning(pd) {
			sandboxes++
		}
		for _, st := range slices.Concat(pd.Status.InitContainerStatuses, pd.Status.ContainerStatuses) {
			if s := runtimeState(st); s != "" {
				states[s]++
			}
		}
	}
	addSample(runningPods, float64(sandboxes), time.Time{}, nil)
	for _, s := range []string{containerStateCreated, containerStateExited, containerStateRunning} {
		addSample(runningCtrs, float64(states[s]), time.Time{}, labelPairs("container_state", s))
	}
	families := []*dto.MetricFamily{nodeName, runningCtrs, runningPods}
	if figures.starts != nil {
		m := &dto.Metric{}
		if err := figures.starts.Write(m); err == nil {
			families = append(families, &dto.MetricFamily{Name: ptr.To("kubelet_pod_start_duration_seconds"), Help: ptr.To(podStartHelp),
				Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{m}})
		}
	}
	// As kubelet's histogram vector: an operation type once it happened.
	syncs := &dto.MetricFamily{Name: ptr.To("kubelet_pod_worker_duration_seconds"), Help: ptr.To(podWorkerHelp), Type: dto.MetricType_HISTOGRAM.Enum()}
	for _, op := range syncOperations {
		m := &dto.Metric{}
		if h := figures.syncs[op]; h != nil && h.Write(m) == nil && m.GetHistogram().GetSampleCount() > 0 {
			syncs.Metric = append(syncs.Metric, m)
		}
	}
	if len(syncs.Metric) > 0 {
		families = append(families, syncs)
	}
	families = append(families, runtimeOperations(figures.runtime)...)
	if len(figures.evictions) > 0 {
		evicted := newFamily("kubelet_evictions", "[ALPHA] Cumulative number of pod evictions by eviction signal", dto.MetricType_COUNTER)
		for _, signal := range slices.Sorted(maps.Keys(figures.evictions)) {
			addSample(evicted, float64(figures.evictions[signal]), time.Time{}, labelPairs("eviction_signal", signal))
		}
		families = append(families, evicted)
	}
	slices.SortFunc(families, func(a, b *dto.MetricFamily) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return families
}

// runtimeOperations renders the host's podman calls as kubelet renders its
// container runtime's (CRI) calls, by operation type: podman's operation
// names (container_create, container_start, image_pull, ...), which are
// not CRI's; nodes that share a build host show its calls alike; an answer that the object does not exist is no error, as CRI's
// status calls answer so without one. None before the first call.
func runtimeOperations(calls map[string]callstats.Op) []*dto.MetricFamily {
	if len(calls) == 0 {
		return nil
	}
	total := newFamily("kubelet_runtime_operations_total", "[ALPHA] Cumulative number of runtime operations by operation type.", dto.MetricType_COUNTER)
	errs := newFamily("kubelet_runtime_operations_errors_total", "[ALPHA] Cumulative number of runtime operation errors by operation type.", dto.MetricType_COUNTER)
	took := &dto.MetricFamily{Name: ptr.To("kubelet_runtime_operations_duration_seconds"),
		Help: ptr.To("[ALPHA] Duration in seconds of runtime operations. Broken down by operation type."), Type: dto.MetricType_HISTOGRAM.Enum()}
	for _, op := range slices.Sorted(maps.Keys(calls)) {
		o := calls[op]
		lp := labelPairs("operation_type", op)
		addSample(total, float64(o.Calls), time.Time{}, lp)
		addSample(errs, float64(o.Errors), time.Time{}, lp)
		h := &dto.Histogram{SampleCount: ptr.To(o.Calls), SampleSum: ptr.To(o.Duration.Seconds())}
		for i, n := range o.Cumulative() {
			h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: ptr.To(callstats.Bounds[i].Seconds()), CumulativeCount: ptr.To(n)})
		}
		took.Metric = append(took.Metric, &dto.Metric{Label: lp, Histogram: h})
	}
	return []*dto.MetricFamily{took, errs, total}
}

// runningPods renders pods as kubelet's /runningpods/ does (its runtime's
// pods turned into API pods): name, namespace and UID, and in spec only
// the running containers' names and images; nothing else. Pods whose
// sandbox does not run are left out; sorted by namespace and name.
func runningPods(pods []*corev1.Pod) []*corev1.Pod {
	out := make([]*corev1.Pod, 0, len(pods))
	for _, pd := range pods {
		if !sandboxRunning(pd) {
			continue
		}
		rp := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pd.Name, Namespace: pd.Namespace, UID: pd.UID}}
		for _, st := range slices.Concat(pd.Status.InitContainerStatuses, pd.Status.ContainerStatuses) {
			if runtimeState(st) == containerStateRunning {
				rp.Spec.Containers = append(rp.Spec.Containers, corev1.Container{Name: st.Name, Image: st.Image})
			}
		}
		out = append(out, rp)
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}
