package provider

import (
	"bytes"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/remote-build-nodes/rbn/internal/callstats"
	"github.com/remote-build-nodes/rbn/internal/golden"
	"github.com/remote-build-nodes/rbn/provider/probe"
)

// render encodes families in the text format, as the kubelet API serves them.
func render(t *testing.T, fams []*dto.MetricFamily) string {
	t.Helper()
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

// cadvisorFixture is statsFixture with what /metrics/cadvisor adds:
// podman's names and images, the host's cores, the pods' images.
func cadvisorFixture(t0, now time.Time) *usage {
	u := statsFixture(t0, now)
	names := map[string]string{"infra": "build-a-infra", "c1": "build-a-build", "c2": "build-a-sidecar", "stray": "stray"}
	for i := range u.containers {
		c := &u.containers[i]
		c.Name = names[c.ID]
		c.Image = "docker.io/library/" + c.ID + ":podman" // what podman lists
	}
	u.containers[0].Image = "localhost/podman-pause:5.4.0"
	u.info.CPUs = 8
	u.images = map[containerKey]string{
		{"uid-a", "build"}:   "docker.io/library/golang:1.25",
		{"uid-a", "sidecar"}: "docker.io/library/busybox:1.37",
	}
	return u
}

func TestBuildCadvisorMetricsGolden(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	got := render(t, buildCadvisorMetrics(cadvisorFixture(t0, t0)))
	golden.Check(t, filepath.Join("testdata", "metrics", "cadvisor.golden.txt"), []byte(got), *update)

	// What the golden file must keep saying, whatever it is rewritten to.
	for _, want := range []string{
		// The Kubernetes containers carry their pod's image, not podman's.
		`container_cpu_usage_seconds_total{container="build",cpu="total",id="c1",image="docker.io/library/golang:1.25",name="build-a-build",namespace="ns",pod="build-a"} 30 `,
		// The network on the sandbox, container="" as kubelet with a CRI runtime.
		`container_network_receive_bytes_total{container="",id="infra",image="localhost/podman-pause:5.4.0",interface="eth0",name="build-a-infra",namespace="ns",pod="build-a"} 500 `,
		`container_spec_memory_limit_bytes{container="build",`,
		`machine_cpu_cores{boot_id="",machine_id="",system_uuid=""} 8`,
		"container_scrape_error 0",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	for _, not := range []string{
		`container_spec_memory_limit_bytes{container="sidecar"`, // no limit: podman's limit is the host's memory
		`container_network_receive_bytes_total{container="build"`,
		`pod="",`, // the stray container is no pod's
		`image=""`,
	} {
		if strings.Contains(got, not) {
			t.Errorf("%q in\n%s", not, got)
		}
	}

	failed := cadvisorFixture(t0, t0)
	failed.containers, failed.ctrErr = nil, errTest
	got = render(t, buildCadvisorMetrics(failed))
	if !strings.Contains(got, "container_scrape_error 1\n") || strings.Contains(got, "container_cpu") || !strings.Contains(got, "machine_memory_bytes") {
		t.Errorf("podman unreadable:\n%s", got)
	}
}

// kubeletPods are a node's pods in every state kubelet's series tell apart.
func kubeletPods() []*corev1.Pod {
	ready := func(v corev1.ConditionStatus) []corev1.PodCondition {
		return []corev1.PodCondition{{Type: corev1.PodReadyToStartContainers, Status: v}}
	}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	exited := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}
	mk := func(name string, phase corev1.PodPhase, cond []corev1.PodCondition, init, app []corev1.ContainerStatus) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
			Status:     corev1.PodStatus{Phase: phase, Conditions: cond, InitContainerStatuses: init, ContainerStatuses: app},
		}
	}
	return []*corev1.Pod{
		// Running: init done, one container up, a sidecar in back-off.
		mk("web", corev1.PodRunning, ready(corev1.ConditionTrue),
			[]corev1.ContainerStatus{{Name: "init", Image: "busybox", ContainerID: "podman://i1", State: exited}},
			[]corev1.ContainerStatus{
				{Name: "app", Image: "nginx:1.27", ContainerID: "podman://a1", State: running},
				{Name: "log", Image: "fluent-bit", ContainerID: "podman://l1",
					State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
					LastTerminationState: exited},
			}),
		// Sandbox up, container created, not started yet.
		mk("starting", corev1.PodPending, ready(corev1.ConditionTrue), nil,
			[]corev1.ContainerStatus{{Name: "app", Image: "golang", ContainerID: "podman://s1",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}),
		// No sandbox yet: pulling.
		mk("pulling", corev1.PodPending, ready(corev1.ConditionFalse), nil,
			[]corev1.ContainerStatus{{Name: "app", Image: "big",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}),
		// Ended: its sandbox is stopped, its container kept.
		mk("done", corev1.PodSucceeded, ready(corev1.ConditionFalse), nil,
			[]corev1.ContainerStatus{{Name: "app", Image: "alpine", ContainerID: "podman://d1", State: exited}}),
	}
}

func TestBuildKubeletMetricsGolden(t *testing.T) {
	starts := newPodStartHistogram()
	for _, s := range []float64{0.3, 1.5, 1.7, 75} {
		starts.Observe(s)
	}
	syncs := newPodWorkerHistograms()
	for op, seconds := range map[string][]float64{syncCreate: {0.04, 0.3}, syncSync: {0.002, 0.003, 0.02}, syncKill: {1.2}} {
		for _, s := range seconds {
			syncs[op].Observe(s)
		}
	}
	var runtime callstats.Recorder
	for _, c := range []struct {
		op   string
		took time.Duration
		res  callstats.Result
	}{
		{"container_create", 20 * time.Millisecond, callstats.Success}, {"container_create", 3 * time.Second, callstats.Error},
		{"container_inspect", 2 * time.Millisecond, callstats.NotFound},
	} {
		runtime.Record(c.op, c.res, c.took)
	}
	got := render(t, buildKubeletMetrics("n1", kubeletPods(), kubeletFigures{evictions: map[string]uint64{"nodefs.available": 2, "emptydirfs.limit": 1},
		starts: starts, syncs: syncs, runtime: runtime.Snapshot()}))
	golden.Check(t, filepath.Join("testdata", "metrics", "kubelet.golden.txt"), []byte(got), *update)
	for _, want := range []string{
		`kubelet_node_name{node="n1"} 1`,
		"kubelet_running_pods 2", // web, starting
		`kubelet_running_containers{container_state="running"} 1`,
		`kubelet_running_containers{container_state="exited"} 3`, // init, log (back-off), done's app
		`kubelet_running_containers{container_state="created"} 1`,
		`kubelet_evictions{eviction_signal="emptydirfs.limit"} 1`,
		`kubelet_evictions{eviction_signal="nodefs.available"} 2`,
		`kubelet_pod_start_duration_seconds_bucket{le="0.5"} 1`,
		`kubelet_pod_start_duration_seconds_bucket{le="2"} 3`,
		`kubelet_pod_start_duration_seconds_bucket{le="60"} 3`,
		`kubelet_pod_start_duration_seconds_bucket{le="120"} 4`,
		`kubelet_pod_start_duration_seconds_count 4`,
		`kubelet_pod_worker_duration_seconds_count{operation_type="create"} 2`,
		`kubelet_pod_worker_duration_seconds_bucket{operation_type="sync",le="0.005"} 2`,
		`kubelet_pod_worker_duration_seconds_count{operation_type="kill"} 1`,
		`kubelet_runtime_operations_total{operation_type="container_create"} 2`,
		`kubelet_runtime_operations_errors_total{operation_type="container_create"} 1`,
		`kubelet_runtime_operations_errors_total{operation_type="container_inspect"} 0`,
		`kubelet_runtime_operations_duration_seconds_count{operation_type="container_create"} 2`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, `operation_type="update"`) {
		t.Errorf("an operation type that never happened is shown:\n%s", got)
	}
	empty := render(t, buildKubeletMetrics("n1", nil, kubeletFigures{starts: newPodStartHistogram(), syncs: newPodWorkerHistograms()}))
	if !strings.Contains(empty, "kubelet_running_pods 0\n") || !strings.Contains(empty, `kubelet_running_containers{container_state="running"} 0`) ||
		strings.Contains(empty, "kubelet_evictions") || !strings.Contains(empty, "kubelet_pod_start_duration_seconds_count 0\n") ||
		strings.Contains(empty, "kubelet_pod_worker_duration_seconds") || strings.Contains(empty, "kubelet_runtime_operations") {
		t.Errorf("a node without pods:\n%s", empty)
	}
}

func TestRunningPods(t *testing.T) {
	got := runningPods(kubeletPods())
	var names []string
	for _, p := range got {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "starting,web" {
		t.Fatalf("running pods %v, want starting,web (sandbox up)", names)
	}
	web := got[1]
	want := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "uid-web"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}
	if web.Namespace != want.Namespace || web.UID != want.UID || len(web.Spec.Containers) != 1 || !reflect.DeepEqual(web.Spec.Containers, want.Spec.Containers) ||
		web.Status.Phase != "" || len(web.Labels) != 0 {
		t.Errorf("web %+v, want only names, UID and running containers: %+v", web, want)
	}
	if len(got[0].Spec.Containers) != 0 {
		t.Errorf("starting lists containers %+v, none runs", got[0].Spec.Containers)
	}
}

// The node's /metrics and /runningpods/ read the pod workers' status views
// (no copy of the spec): what they render from those is what they render
// from the whole pods.
func TestStatusViewsKeepWhatMetricsRead(t *testing.T) {
	p := &Pods{workers: map[string]*podWorker{}}
	for _, pd := range kubeletPods() {
		pd.Labels = map[string]string{"app": pd.Name}
		pd.Spec.Containers = []corev1.Container{{Name: "app", Image: "spec-image"}}
		p.workers[pd.Namespace+"/"+pd.Name] = &podWorker{pod: pd}
	}
	figures := func() kubeletFigures {
		return kubeletFigures{starts: newPodStartHistogram(), syncs: newPodWorkerHistograms()}
	}
	sortByName := func(pods []*corev1.Pod) []*corev1.Pod {
		slices.SortFunc(pods, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
		return pods
	}
	views := sortByName(p.statusViews())
	whole := sortByName(kubeletPods())
	if got, want := render(t, buildKubeletMetrics("n1", views, figures())), render(t, buildKubeletMetrics("n1", whole, figures())); got != want {
		t.Errorf("/metrics from the status views:\n%s\nfrom the pods:\n%s", got, want)
	}
	if got, want := runningPods(views), runningPods(whole); !reflect.DeepEqual(got, want) {
		t.Errorf("/runningpods/ from the status views %+v, from the pods %+v", got, want)
	}
	u := &usage{podStart: map[types.UID]time.Time{}, images: map[containerKey]string{}}
	for _, w := range p.podWorkers() {
		w.usageFacts(u)
	}
	if got := u.images[containerKey{"uid-web", "app"}]; got != "nginx:1.27" {
		t.Errorf("web's app image %q, want its status's", got)
	}
	if got := u.images[containerKey{"uid-pulling", "app"}]; got != "big" {
		t.Errorf("pulling's app image %q, want its status's", got)
	}
}

// probeFixture is a node's probes as its pod workers read them: web's app
// with readiness and liveness probes (readiness failed twice, a success
// took 2 s), its sidecar started, and db's readiness probe that never
// succeeded (no durations).
func probeFixture() []podProbeCounts {
	//                   .005 .01 .025 .05 .1 .25 .5 1  2.5 5  10
	fast := []uint64{3, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6}
	slow := []uint64{2, 3, 4, 4, 4, 4, 4, 4, 5, 5, 5}
	return []podProbeCounts{
		{namespace: "ns", name: "web", uid: "uid-web", probes: []probeCounts{
			{container: "app", kind: probe.Readiness, StatsSnapshot: probe.StatsSnapshot{Successful: 5, Failed: 2, Buckets: slow, Count: 5, Sum: 2.0125}},
			{container: "app", kind: probe.Liveness, StatsSnapshot: probe.StatsSnapshot{Successful: 6, Buckets: fast, Count: 6, Sum: 0.0375}},
			{container: "sidecar", kind: probe.Startup, StatsSnapshot: probe.StatsSnapshot{Successful: 1, Failed: 4,
				Buckets: []uint64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, Count: 1, Sum: 0.002}},
		}},
		{namespace: "ns", name: "db", uid: "uid-db", probes: []probeCounts{
			{container: "postgres", kind: probe.Readiness, StatsSnapshot: probe.StatsSnapshot{Failed: 3, Buckets: make([]uint64, 11)}},
		}},
	}
}

func TestBuildProbeMetricsGolden(t *testing.T) {
	got := render(t, buildProbeMetrics(probeFixture()))
	golden.Check(t, filepath.Join("testdata", "metrics", "probes.golden.txt"), []byte(got), *update)
	for _, want := range []string{
		"# HELP prober_probe_total [BETA] Cumulative number of a liveness, readiness or startup probe for a container by result.\n# TYPE prober_probe_total counter\n",
		`prober_probe_total{container="app",namespace="ns",pod="web",pod_uid="uid-web",probe_type="Readiness",result="successful"} 5`,
		`prober_probe_total{container="app",namespace="ns",pod="web",pod_uid="uid-web",probe_type="Readiness",result="failed"} 2`,
		`prober_probe_total{container="postgres",namespace="ns",pod="db",pod_uid="uid-db",probe_type="Readiness",result="failed"} 3`,
		"# HELP prober_probe_duration_seconds [ALPHA] Duration in seconds for a probe response.\n# TYPE prober_probe_duration_seconds histogram\n",
		`prober_probe_duration_seconds_bucket{container="app",namespace="ns",pod="web",probe_type="Readiness",le="2.5"} 5`,
		`prober_probe_duration_seconds_bucket{container="app",namespace="ns",pod="web",probe_type="Readiness",le="+Inf"} 5`,
		`prober_probe_duration_seconds_sum{container="app",namespace="ns",pod="web",probe_type="Liveness"} 0.0375`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	for _, not := range []string{
		`result="unknown"`,                            // kubelet's prober never reports it
		`result="successful"} 0`,                      // no series before a first count
		`duration_seconds_count{container="postgres"`, // failures have no duration
		"process_start_time_seconds",
	} {
		if strings.Contains(got, not) {
			t.Errorf("%q in\n%s", not, got)
		}
	}
	if got := buildProbeMetrics(nil); len(got) != 0 {
		t.Errorf("a node without probes: %d families, want none", len(got))
	}
}
