package provider

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// StatsCollector reads what a node's kubelet API reports on /stats/summary,
// /metrics/resource and /metrics/cadvisor: the host's own CPU and memory
// (its /proc, over SSH), its podman storage, and podman's figures for the
// node's containers (a reading of the host's, shared by its nodes for up to
// containerStatsMaxAge: one podman stats read per host, whatever the pods).
// It keeps the previous reading of each CPU counter to report CPU as a rate
// too (usageNanoCores), as kubelet does between two samples.
type StatsCollector struct {
	pods *Pods

	mu   sync.Mutex
	prev map[string]cpuReading // container ID -> previous reading
}

// hostSampleInterval is how often the host's /proc is read while the
// node's figures are asked for.
const hostSampleInterval = 5 * time.Second

type cpuReading struct {
	t     time.Time
	nanos uint64
	// rate is the nanocores computed when this reading was taken.
	rate     uint64
	haveRate bool
}

// NewStatsCollector returns the collector of p's node. The host's /proc is
// read by its Host's sampler, shared by every node on the host.
func NewStatsCollector(p *Pods) *StatsCollector {
	return &StatsCollector{pods: p, prev: map[string]cpuReading{}}
}

// usage is one reading of a node.
type usage struct {
	node       string
	host       *hostUsage // nil when the host's /proc could not be read
	hostPrev   *hostUsage // the reading before host, if any
	hostErr    error
	info       *podman.HostInfo // storage figures; nil before the first contact
	containers []podman.ContainerStats
	ctrErr     error
	podStart   map[types.UID]time.Time
	// images is each Kubernetes container's image as the provider knows
	// it (its status, else its spec), for /metrics/cadvisor's image label.
	images map[containerKey]string
}

// containerKey names a Kubernetes container: its pod's UID and its name.
type containerKey struct {
	uid  types.UID
	name string
}

// read takes a reading: /proc and podman are asked at the same time.
func (s *StatsCollector) read(ctx context.Context) *usage {
	p := s.pods
	u := &usage{node: p.cfg.NodeName, podStart: map[types.UID]time.Time{}, images: map[containerKey]string{}}
	u.info, _ = p.cfg.Host.Snapshot()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The first reading of a fresh sampler takes a moment.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		u.host, u.hostPrev, u.hostErr = p.cfg.Host.sampler.readings(wctx)
	}()
	u.containers, u.ctrErr = p.cfg.Host.nodeContainerStats(ctx, p.cfg.NodeName)
	wg.Wait()
	for _, w := range p.podWorkers() {
		w.usageFacts(u)
	}
	return u
}

// podImages records the image of each of pd's containers: the one its
// status reports (what the runtime was given), else its spec's.
func podImages(pd *corev1.Pod, into map[containerKey]string) {
	for _, st := range slices.Concat(pd.Status.InitContainerStatuses, pd.Status.ContainerStatuses) {
		if st.Image != "" {
			into[containerKey{pd.UID, st.Name}] = st.Image
		}
	}
	for _, c := range slices.Concat(pd.Spec.InitContainers, pd.Spec.Containers) {
		k := containerKey{pd.UID, c.Name}
		if into[k] == "" {
			into[k] = c.Image
		}
	}
}

// limited says whether a container runs under a memory limit: without
// one podman reports the host's memory as its limit.
func (u *usage) limited(c podman.ContainerStats) bool {
	total := uint64(0)
	switch {
	case u.host != nil:
		total = u.host.MemTotal
	case u.info != nil:
		total = uint64(u.info.MemTotal)
	}
	return c.MemoryLimit > 0 && (total == 0 || c.MemoryLimit < total)
}

func (u *usage) err() error {
	if u.hostErr != nil && u.ctrErr != nil {
		return errors.Join(u.hostErr, u.ctrErr)
	}
	return nil
}

// Summary is the node's /stats/summary. Parts that could not be read are
// left out (as kubelet does); it fails only when nothing could be read.
func (s *StatsCollector) Summary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	u := s.read(ctx)
	if err := u.err(); err != nil {
		return nil, err
	}
	return buildSummary(u, s.rates(u)), nil
}

// ResourceMetrics is the node's /metrics/resource, what metrics-server
// scrapes: cumulative CPU and working set of the node, pods and containers.
func (s *StatsCollector) ResourceMetrics(ctx context.Context) ([]*dto.MetricFamily, error) {
	u := s.read(ctx)
	if err := u.err(); err != nil {
		return nil, err
	}
	return buildResourceMetrics(u), nil
}

// CadvisorMetrics is the node's /metrics/cadvisor, what Prometheus's
// kubelet cAdvisor job scrapes, from the same reading (see cadvisor.go).
func (s *StatsCollector) CadvisorMetrics(ctx context.Context) ([]*dto.MetricFamily, error) {
	u := s.read(ctx)
	if err := u.err(); err != nil {
		return nil, err
	}
	return buildCadvisorMetrics(u), nil
}

// rates turns each CPU counter into nanocores: the node's between the
// host sampler's last two readings, a container's against its reading at
// the previous call (remembered for the next). Key "" is the node.
func (s *StatsCollector) rates(u *usage) map[string]uint64 {
	out := map[string]uint64{}
	if h, p := u.host, u.hostPrev; h != nil && p != nil {
		if r, ok := rate(cpuReading{t: p.Time, nanos: p.CPUNanos}, cpuReading{t: h.Time, nanos: h.CPUNanos}); ok {
			out[""] = r
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := map[string]cpuReading{}
	for _, c := range u.containers {
		cur := cpuReading{t: c.Time, nanos: c.CPUNanos}
		prev, ok := s.prev[c.ID]
		if ok && cur.t.Sub(prev.t) < minRateInterval {
			// Asked again soon: keep the older base, and the rate it
			// gave, or a first rate over a span not too short for one.
			next[c.ID] = prev
			if prev.haveRate {
				out[c.ID] = prev.rate
			} else if cur.t.Sub(prev.t) >= minRateSpan {
				if r, rok := rate(prev, cur); rok {
					out[c.ID] = r
				}
			}
			continue
		}
		if r, rok := rate(prev, cur); rok {
			out[c.ID] = r
			cur.rate, cur.haveRate = r, true
		}
		next[c.ID] = cur
	}
	s.prev = next
	return out
}

// minRateInterval is the shortest span a stored CPU reading is replaced
// after; minRateSpan the shortest a rate is computed over.
const (
	minRateInterval = time.Second
	minRateSpan     = 200 * time.Millisecond
)

func rate(prev, cur cpuReading) (uint64, bool) {
	if prev.t.IsZero() || !cur.t.After(prev.t) || cur.nanos < prev.nanos {
		return 0, false
	}
	return uint64(float64(cur.nanos-prev.nanos) / cur.t.Sub(prev.t).Seconds()), true
}

// podUsage gathers the containers of one pod.
type podUsage struct {
	ref        statsv1alpha1.PodReference
	start      time.Time
	containers []podman.ContainerStats // Kubernetes containers
	all        []podman.ContainerStats // with the infra container
}

func groupByPod(u *usage) []*podUsage {
	byUID := map[string]*podUsage{}
	for _, c := range u.containers {
		uid := c.Labels[pod.LabelPodUID]
		if uid == "" {
			continue
		}
		pu := byUID[uid]
		if pu == nil {
			pu = &podUsage{ref: statsv1alpha1.PodReference{
				Name: c.Labels[pod.LabelPodName], Namespace: c.Labels[pod.LabelPodNamespace], UID: uid,
			}}
			pu.start = u.podStart[types.UID(uid)]
			byUID[uid] = pu
		}
		pu.all = append(pu.all, c)
		if c.Labels[pod.LabelContainer] != "" {
			pu.containers = append(pu.containers, c)
		}
	}
	out := make([]*podUsage, 0, len(byUID))
	for _, pu := range byUID {
		if pu.start.IsZero() {
			for _, c := range pu.all {
				if pu.start.IsZero() || (!c.StartedAt.IsZero() && c.StartedAt.Before(pu.start)) {
					pu.start = c.StartedAt
				}
			}
		}
		slices.SortFunc(pu.containers, func(a, b podman.ContainerStats) int {
			return cmp.Compare(a.Labels[pod.LabelContainer], b.Labels[pod.LabelContainer])
		})
		out = append(out, pu)
	}
	slices.SortFunc(out, func(a, b *podUsage) int {
		return cmp.Or(cmp.Compare(a.ref.Namespace, b.ref.Namespace), cmp.Compare(a.ref.Name, b.ref.Name))
	})
	return out
}

// sums adds up the CPU and memory of a pod's containers, infra included:
// kubelet reports the pod's cgroup, which holds them all.
func (pu *podUsage) sums() (cpu, mem uint64, t time.Time) {
	for _, c := range pu.all {
		cpu += c.CPUNanos
		mem += c.MemoryUsage
		if c.Time.After(t) {
			t = c.Time
		}
	}
	return cpu, mem, t
}

// network is the pod's interface: its containers share the infra
// container's network namespace, so any of them reports the same figures.
func (pu *podUsage) network() (rx, tx uint64, t time.Time, ok bool) {
	for _, c := range pu.all {
		if c.Labels[pod.LabelContainer] == "" || !ok {
			rx, tx, t, ok = c.NetworkRx, c.NetworkTx, c.Time, true
		}
	}
	return rx, tx, t, ok
}

func buildSummary(u *usage, rates map[string]uint64) *statsv1alpha1.Summary {
	sum := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: u.node}, Pods: []statsv1alpha1.PodStats{}}
	n := &sum.Node
	if h := u.host; h != nil {
		t := metav1.NewTime(h.Time)
		n.StartTime = metav1.NewTime(h.BootTime)
		n.CPU = &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: ptr.To(h.CPUNanos)}
		if r, ok := rates[""]; ok {
			n.CPU.UsageNanoCores = ptr.To(r)
		}
		n.Memory = &statsv1alpha1.MemoryStats{
			Time:            t,
			AvailableBytes:  ptr.To(h.MemAvailable),
			UsageBytes:      ptr.To(sub(h.MemTotal, h.MemFree)),
			WorkingSetBytes: ptr.To(h.WorkingSet()),
			RSSBytes:        ptr.To(h.AnonPages),
		}
	}
	if info := u.info; info != nil && info.StorageTotal > 0 {
		t := metav1.Now()
		if u.host != nil {
			t = metav1.NewTime(u.host.Time)
		}
		fs := func() *statsv1alpha1.FsStats {
			return &statsv1alpha1.FsStats{
				Time:           t,
				CapacityBytes:  ptr.To(info.StorageTotal),
				UsedBytes:      ptr.To(info.StorageUsed),
				AvailableBytes: ptr.To(info.StorageAvailable),
			}
		}
		// Images, containers and emptyDirs all live in podman's store.
		n.Fs = fs()
		n.Runtime = &statsv1alpha1.RuntimeStats{ImageFs: fs(), ContainerFs: fs()}
	}
	for _, pu := range groupByPod(u) {
		ps := statsv1alpha1.PodStats{PodRef: pu.ref, StartTime: metav1.NewTime(pu.start)}
		var podRate uint64
		haveRate := true
		for _, c := range pu.all {
			r, ok := rates[c.ID]
			podRate += r
			haveRate = haveRate && ok
		}
		for _, c := range pu.containers {
			t := metav1.NewTime(c.Time)
			cs := statsv1alpha1.ContainerStats{
				Name:      c.Labels[pod.LabelContainer],
				StartTime: metav1.NewTime(c.StartedAt),
				CPU:       &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: ptr.To(c.CPUNanos)},
				Memory:    &statsv1alpha1.MemoryStats{Time: t, UsageBytes: ptr.To(c.MemoryUsage), WorkingSetBytes: ptr.To(c.MemoryUsage)},
			}
			if r, ok := rates[c.ID]; ok {
				cs.CPU.UsageNanoCores = ptr.To(r)
			}
			if u.limited(c) {
				cs.Memory.AvailableBytes = ptr.To(sub(c.MemoryLimit, c.MemoryUsage))
			}
			ps.Containers = append(ps.Containers, cs)
		}
		cpu, mem, t := pu.sums()
		ps.CPU = &statsv1alpha1.CPUStats{Time: metav1.NewTime(t), UsageCoreNanoSeconds: ptr.To(cpu)}
		if haveRate {
			ps.CPU.UsageNanoCores = ptr.To(podRate)
		}
		ps.Memory = &statsv1alpha1.MemoryStats{Time: metav1.NewTime(t), UsageBytes: ptr.To(mem), WorkingSetBytes: ptr.To(mem)}
		if rx, tx, nt, ok := pu.network(); ok {
			ps.Network = &statsv1alpha1.NetworkStats{
				Time:           metav1.NewTime(nt),
				InterfaceStats: statsv1alpha1.InterfaceStats{Name: "eth0", RxBytes: ptr.To(rx), TxBytes: ptr.To(tx)},
			}
		}
		sum.Pods = append(sum.Pods, ps)
	}
	return sum
}

// buildResourceMetrics renders a reading as kubelet's /metrics/resource
// families (names, help and labels as kubelet's, timestamps in ms).
func buildResourceMetrics(u *usage) []*dto.MetricFamily {
	ctrCPU := newFamily("container_cpu_usage_seconds_total", "[STABLE] Cumulative cpu time consumed by the container in core-seconds", dto.MetricType_COUNTER)
	ctrMem := newFamily("container_memory_working_set_bytes", "[STABLE] Current working set of the container in bytes", dto.MetricType_GAUGE)
	ctrStart := newFamily("container_start_time_seconds", "[STABLE] Start time of the container since unix epoch in seconds", dto.MetricType_GAUGE)
	nodeCPU := newFamily("node_cpu_usage_seconds_total", "[STABLE] Cumulative cpu time consumed by the node in core-seconds", dto.MetricType_COUNTER)
	nodeMem := newFamily("node_memory_working_set_bytes", "[STABLE] Current working set of the node in bytes", dto.MetricType_GAUGE)
	podCPU := newFamily("pod_cpu_usage_seconds_total", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds", dto.MetricType_COUNTER)
	podMem := newFamily("pod_memory_working_set_bytes", "[STABLE] Current working set of the pod in bytes", dto.MetricType_GAUGE)
	scrapeErr := newFamily("resource_scrape_error", "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise", dto.MetricType_GAUGE)

	if h := u.host; h != nil {
		addSample(nodeCPU, float64(h.CPUNanos)/1e9, h.Time, nil)
		addSample(nodeMem, float64(h.WorkingSet()), h.Time, nil)
	}
	for _, pu := range groupByPod(u) {
		for _, c := range pu.containers {
			lp := labelPairs("container", c.Labels[pod.LabelContainer], "namespace", pu.ref.Namespace, "pod", pu.ref.Name)
			addSample(ctrCPU, float64(c.CPUNanos)/1e9, c.Time, lp)
			addSample(ctrMem, float64(c.MemoryUsage), c.Time, lp)
			if !c.StartedAt.IsZero() {
				addSample(ctrStart, float64(c.StartedAt.Unix()), time.Time{}, lp)
			}
		}
		cpu, mem, t := pu.sums()
		lp := labelPairs("namespace", pu.ref.Namespace, "pod", pu.ref.Name)
		addSample(podCPU, float64(cpu)/1e9, t, lp)
		addSample(podMem, float64(mem), t, lp)
	}
	failed := 0.0
	if u.hostErr != nil || u.ctrErr != nil {
		failed = 1
	}
	addSample(scrapeErr, failed, time.Time{}, nil)
	return nonEmpty(ctrCPU, ctrMem, ctrStart, nodeCPU, nodeMem, podCPU, podMem, scrapeErr)
}
