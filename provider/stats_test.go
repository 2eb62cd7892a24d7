package provider

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"k8s.io/apimachinery/pkg/types"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// statsFixture is one pod (infra, build, sidecar) on n1, started before
// t0, read at now.
func statsFixture(t0, now time.Time) *usage {
	labels := func(ctr string) map[string]string {
		l := map[string]string{pod.LabelNode: "n1", pod.LabelPodUID: "uid-a", pod.LabelPodNamespace: "ns", pod.LabelPodName: "build-a"}
		if ctr != "" {
			l[pod.LabelContainer] = ctr
		}
		return l
	}
	gib := uint64(1 << 30)
	return &usage{
		node: "n1",
		host: &hostUsage{Time: now, BootTime: t0.Add(-time.Hour), CPUNanos: 7_000_000_000_000,
			MemTotal: 16 * gib, MemFree: 2 * gib, MemAvailable: 10 * gib, AnonPages: 3 * gib},
		info: &podman.HostInfo{MemTotal: int64(16 * gib), StorageTotal: 100 * gib, StorageUsed: 40 * gib, StorageAvailable: 55 * gib},
		containers: []podman.ContainerStats{
			{ID: "infra", Labels: labels(""), StartedAt: t0.Add(-10 * time.Minute), CPUNanos: 1_000_000, MemoryUsage: 100_000, MemoryLimit: 16 * gib, NetworkRx: 500, NetworkTx: 700, Time: now},
			{ID: "c2", Labels: labels("sidecar"), StartedAt: t0.Add(-9 * time.Minute), CPUNanos: 2_000_000_000, MemoryUsage: 20 << 20, MemoryLimit: 16 * gib, NetworkRx: 500, NetworkTx: 700, Time: now},
			{ID: "c1", Labels: labels("build"), StartedAt: t0.Add(-9 * time.Minute), CPUNanos: 30_000_000_000, MemoryUsage: 300 << 20, MemoryLimit: 1 * gib, NetworkRx: 500, NetworkTx: 700, Time: now},
			{ID: "stray", Labels: map[string]string{pod.LabelNode: "n1"}, CPUNanos: 1, Time: now}, // not a pod's
		},
		podStart: map[types.UID]time.Time{"uid-a": t0.Add(-11 * time.Minute)},
	}
}

func TestBuildSummary(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	c := &StatsCollector{prev: map[string]cpuReading{}}
	first := statsFixture(t0, t0)
	if r := c.rates(first); len(r) != 0 {
		t.Errorf("rates from a first reading: %v", r)
	}
	second := statsFixture(t0, t0.Add(10*time.Second))
	second.hostPrev = first.host
	second.host.CPUNanos += 5_000_000_000 // half a core over 10 s
	second.containers[2].CPUNanos += 10_000_000_000
	s := buildSummary(second, c.rates(second))

	n := s.Node
	if n.NodeName != "n1" || !n.StartTime.Time.Equal(t0.Add(-time.Hour)) {
		t.Errorf("node %+v", n)
	}
	if *n.CPU.UsageCoreNanoSeconds != 7_005_000_000_000 || n.CPU.UsageNanoCores == nil || *n.CPU.UsageNanoCores != 500_000_000 {
		t.Errorf("node cpu %d cores %v", *n.CPU.UsageCoreNanoSeconds, n.CPU.UsageNanoCores)
	}
	gib := uint64(1 << 30)
	if *n.Memory.WorkingSetBytes != 6*gib || *n.Memory.AvailableBytes != 10*gib || *n.Memory.UsageBytes != 14*gib || *n.Memory.RSSBytes != 3*gib {
		t.Errorf("node memory %+v", n.Memory)
	}
	if *n.Fs.CapacityBytes != 100*gib || *n.Fs.UsedBytes != 40*gib || *n.Fs.AvailableBytes != 55*gib || *n.Runtime.ImageFs.UsedBytes != 40*gib {
		t.Errorf("node fs %+v", n.Fs)
	}
	if len(s.Pods) != 1 {
		t.Fatalf("%d pods, want 1 (the stray container is no pod's)", len(s.Pods))
	}
	p := s.Pods[0]
	if p.PodRef.Name != "build-a" || p.PodRef.Namespace != "ns" || p.PodRef.UID != "uid-a" || !p.StartTime.Time.Equal(t0.Add(-11*time.Minute)) {
		t.Errorf("pod ref %+v start %v", p.PodRef, p.StartTime)
	}
	if len(p.Containers) != 2 || p.Containers[0].Name != "build" || p.Containers[1].Name != "sidecar" {
		t.Fatalf("containers %+v (want build, sidecar; no infra)", p.Containers)
	}
	build := p.Containers[0]
	if *build.CPU.UsageCoreNanoSeconds != 40_000_000_000 || *build.CPU.UsageNanoCores != 1_000_000_000 {
		t.Errorf("build cpu %d, %d nanocores", *build.CPU.UsageCoreNanoSeconds, *build.CPU.UsageNanoCores)
	}
	if *build.Memory.WorkingSetBytes != 300<<20 || build.Memory.AvailableBytes == nil || *build.Memory.AvailableBytes != gib-300<<20 {
		t.Errorf("build memory %+v", build.Memory)
	}
	if p.Containers[1].Memory.AvailableBytes != nil {
		t.Errorf("a container without a limit reports availableBytes %d", *p.Containers[1].Memory.AvailableBytes)
	}
	if *p.CPU.UsageCoreNanoSeconds != 1_000_000+2_000_000_000+40_000_000_000 || *p.CPU.UsageNanoCores != 1_000_000_000 {
		t.Errorf("pod cpu %d, %v", *p.CPU.UsageCoreNanoSeconds, p.CPU.UsageNanoCores)
	}
	if *p.Memory.WorkingSetBytes != 100_000+20<<20+300<<20 {
		t.Errorf("pod memory %d", *p.Memory.WorkingSetBytes)
	}
	if p.Network == nil || *p.Network.RxBytes != 500 || *p.Network.TxBytes != 700 {
		t.Errorf("pod network %+v", p.Network)
	}

	// A second call 300 ms after the first already gives a rate.
	fresh := &StatsCollector{prev: map[string]cpuReading{}}
	fresh.rates(statsFixture(t0, t0))
	soon := statsFixture(t0, t0.Add(300*time.Millisecond))
	soon.containers[2].CPUNanos += 150_000_000
	if got := fresh.rates(soon)["c1"]; got < 490_000_000 || got > 510_000_000 {
		t.Errorf("rate 300 ms after a first call: %d nanocores, want ~5e8", got)
	}
	if got, ok := fresh.rates(statsFixture(t0, t0.Add(50*time.Millisecond)))["c1"]; ok {
		t.Errorf("a rate over 50 ms: %d", got)
	}

	// A call right after gives the rate of the previous one.
	quick := statsFixture(t0, t0.Add(10*time.Second+100*time.Millisecond))
	quick.containers[2].CPUNanos += 10_000_000_000 + 50_000_000
	r := c.rates(quick)
	if got := r["c1"]; got < 990_000_000 || got > 1_010_000_000 {
		t.Errorf("rate 100 ms after the last call: %d nanocores, want the 1e9 of the call before", got)
	}

	// A host whose /proc could not be read: pods still reported.
	third := statsFixture(t0, t0.Add(20*time.Second))
	third.host, third.hostErr = nil, errTest
	s = buildSummary(third, c.rates(third))
	if s.Node.CPU != nil || s.Node.Memory != nil || len(s.Pods) != 1 {
		t.Errorf("without /proc: node cpu %v memory %v, %d pods", s.Node.CPU, s.Node.Memory, len(s.Pods))
	}
}

var errTest = errors.New("cannot read /proc")

func TestBuildResourceMetrics(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range buildResourceMetrics(statsFixture(t0, t0)) {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	ms := t0.UnixMilli()
	got := buf.String()
	for _, want := range []string{
		"# TYPE container_cpu_usage_seconds_total counter",
		`container_cpu_usage_seconds_total{container="build",namespace="ns",pod="build-a"} 30 ` + itoa(ms),
		`container_cpu_usage_seconds_total{container="sidecar",namespace="ns",pod="build-a"} 2 ` + itoa(ms),
		`container_memory_working_set_bytes{container="build",namespace="ns",pod="build-a"} 3.145728e+08 ` + itoa(ms),
		`container_start_time_seconds{container="build",namespace="ns",pod="build-a"} 1.79560026e+09`,
		"node_cpu_usage_seconds_total 7000 " + itoa(ms),
		"node_memory_working_set_bytes 6.442450944e+09 " + itoa(ms),
		`pod_cpu_usage_seconds_total{namespace="ns",pod="build-a"} 32.001 ` + itoa(ms),
		`pod_memory_working_set_bytes{namespace="ns",pod="build-a"} 3.3564432e+08 ` + itoa(ms),
		"resource_scrape_error 0",
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "infra") || strings.Contains(got, `container=""`) {
		t.Errorf("the infra container shows as a container:\n%s", got)
	}
	failed := statsFixture(t0, t0)
	failed.host, failed.hostErr = nil, errTest
	buf.Reset()
	for _, f := range buildResourceMetrics(failed) {
		_ = enc.Encode(f)
	}
	if !strings.Contains(buf.String(), "resource_scrape_error 1\n") || strings.Contains(buf.String(), "node_cpu") {
		t.Errorf("a failed /proc read:\n%s", buf.String())
	}
}

func itoa[T ~int64](v T) string { return strconv.FormatInt(int64(v), 10) }
