package provider

import (
	"cmp"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/types"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// buildCadvisorMetrics renders a reading as kubelet's /metrics/cadvisor:
// the cAdvisor series Prometheus's kubelet cAdvisor job, kubernetes-mixin's
// recording rules and dashboards read, under cAdvisor's names, help texts,
// types and labels as kubelet gives them (label names sorted, families
// sorted by name, figures stamped with the reading's time in ms).
//
// Labels of a container's series:
//   - container, pod, namespace: the Kubernetes names; container is "" for
//     the pod's infra container, as kubelet labels a pod's sandbox
//     (the pause container) with CRI runtimes (containerd, CRI-O). Docker's
//     dockershim labelled it container="POD"; no current kubelet does.
//   - image: the container's image as the provider knows it (its status,
//     else its spec); for the infra container, podman's infra image. The
//     mixin's rules select image!="", so it must not be empty.
//   - id: cAdvisor gives the container's cgroup path (/kubepods/...); a
//     podman container's cgroup is podman's to name (it differs with the
//     cgroup manager), so id is the podman container ID instead: unique per
//     container run, as the cgroup path is.
//   - name: cAdvisor gives the runtime's name for the container (its first
//     alias); here podman's container name.
//
// Series left out, because podman's container stats do not carry them
// (see docs/operations.md, "Kubelet API endpoints"): container_memory_rss,
// container_memory_cache, container_memory_swap and
// container_memory_failures_total (podman reports one memory figure, not
// the cgroup's breakdown), container_fs_* (podman gives per-container block
// I/O totals only, no per-device reads/writes, and no filesystem usage per
// container), container_cpu_cfs_* throttling, container_oom_events_total,
// container_network_*_packets/errors/dropped (podman 4 reports bytes only),
// container_spec_cpu_* and container_processes (podman's PIDs count is not
// cAdvisor's), and the pod-level cgroup's own series (id
// /kubepods/.../pod<uid>, container="" image=""): podman reads containers,
// not the podman pod's cgroup.
//
// container_memory_usage_bytes is podman's usage figure, the same as
// container_memory_working_set_bytes (and /metrics/resource's): podman
// (its common cgroups library, as Docker) reports the cgroup's usage minus
// its inactive file cache, which is cAdvisor's working set; cAdvisor's
// usage would include that cache, so ours reads lower than kubelet's.
func buildCadvisorMetrics(u *usage) []*dto.MetricFamily {
	cpu := newFamily("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", dto.MetricType_COUNTER)
	memUsage := newFamily("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", dto.MetricType_GAUGE)
	memWS := newFamily("container_memory_working_set_bytes", "Current working set in bytes.", dto.MetricType_GAUGE)
	rx := newFamily("container_network_receive_bytes_total", "Cumulative count of bytes received", dto.MetricType_COUNTER)
	tx := newFamily("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", dto.MetricType_COUNTER)
	scrapeErr := newFamily("container_scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", dto.MetricType_GAUGE)
	memLimit := newFamily("container_spec_memory_limit_bytes", "Memory limit for the container.", dto.MetricType_GAUGE)
	start := newFamily("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", dto.MetricType_GAUGE)
	cores := newFamily("machine_cpu_cores", "Number of logical CPU cores.", dto.MetricType_GAUGE)
	memory := newFamily("machine_memory_bytes", "Amount of memory installed on the machine.", dto.MetricType_GAUGE)

	for _, pu := range groupByPod(u) {
		// ctrLabels are a container's labels, with extra ones.
		ctrLabels := func(c podman.ContainerStats, extra ...string) []*dto.LabelPair {
			name := c.Labels[pod.LabelContainer]
			image := c.Image
			if name != "" {
				image = cmp.Or(u.images[containerKey{types.UID(pu.ref.UID), name}], c.Image)
			}
			return labelPairs(sortedLabels(append([]string{
				"container", name, "id", c.ID, "image", image, "name", c.Name,
				"namespace", pu.ref.Namespace, "pod", pu.ref.Name,
			}, extra...))...)
		}
		var net *podman.ContainerStats
		for i, c := range pu.all {
			addSample(cpu, float64(c.CPUNanos)/1e9, c.Time, ctrLabels(c, "cpu", "total"))
			addSample(memUsage, float64(c.MemoryUsage), c.Time, ctrLabels(c))
			addSample(memWS, float64(c.MemoryUsage), c.Time, ctrLabels(c))
			if u.limited(c) {
				addSample(memLimit, float64(c.MemoryLimit), time.Time{}, ctrLabels(c))
			}
			if !c.StartedAt.IsZero() {
				addSample(start, float64(c.StartedAt.Unix()), time.Time{}, ctrLabels(c))
			}
			// The pod's interface is reported once, on its infra container
			// (its sandbox, as kubelet does); without one running, on the
			// container first by name: they all share the interface.
			if net == nil || c.Labels[pod.LabelContainer] < net.Labels[pod.LabelContainer] {
				net = &pu.all[i]
			}
		}
		if net != nil {
			lp := ctrLabels(*net, "interface", podInterface)
			addSample(rx, float64(net.NetworkRx), net.Time, lp)
			addSample(tx, float64(net.NetworkTx), net.Time, lp)
		}
	}
	// Host facts carry cAdvisor's machine labels, which rbn does not read
	// from the host (yet): empty, as for a machine cAdvisor cannot identify.
	machine := labelPairs("boot_id", "", "machine_id", "", "system_uuid", "")
	if u.info != nil && u.info.CPUs > 0 {
		addSample(cores, float64(u.info.CPUs), time.Time{}, machine)
	}
	switch {
	case u.host != nil:
		addSample(memory, float64(u.host.MemTotal), time.Time{}, machine)
	case u.info != nil && u.info.MemTotal > 0:
		addSample(memory, float64(u.info.MemTotal), time.Time{}, machine)
	}
	failed := 0.0
	if u.ctrErr != nil {
		failed = 1
	}
	addSample(scrapeErr, failed, time.Time{}, nil)
	fams := nonEmpty(cpu, memUsage, memWS, rx, tx, scrapeErr, memLimit, start, cores, memory)
	for _, f := range fams {
		sortSamples(f)
	}
	return fams
}

// podInterface is the name of a pod's interface in its network namespace,
// as /stats/summary reports it: podman's per-interface figures are summed
// (podman 4 gives totals only).
const podInterface = "eth0"

// sortedLabels sorts name/value pairs by name, as the Prometheus client
// orders a series' labels.
func sortedLabels(kv []string) []string {
	type pair struct{ k, v string }
	ps := make([]pair, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		ps = append(ps, pair{kv[i], kv[i+1]})
	}
	slices.SortFunc(ps, func(a, b pair) int { return strings.Compare(a.k, b.k) })
	out := make([]string, 0, len(kv))
	for _, p := range ps {
		out = append(out, p.k, p.v)
	}
	return out
}

// sortSamples orders a family's samples by their label values, as the
// Prometheus client's gatherer does, so that a scrape reads the same
// whatever order podman listed the containers in.
func sortSamples(f *dto.MetricFamily) {
	slices.SortStableFunc(f.Metric, func(a, b *dto.Metric) int {
		for i := 0; i < len(a.Label) && i < len(b.Label); i++ {
			if c := strings.Compare(a.Label[i].GetValue(), b.Label[i].GetValue()); c != 0 {
				return c
			}
		}
		return cmp.Compare(len(a.Label), len(b.Label))
	})
}
