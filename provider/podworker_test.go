package provider

import (
	"context"
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	corev1listers "k8s.io/client-go/listers/core/v1"
	nodev1listers "k8s.io/client-go/listers/node/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	testingclock "k8s.io/utils/clock/testing"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podobjects"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// harness runs one pod's worker over a fake runtime and a fake clock, one
// sync at a time: no goroutine of the test's own, no sleep.
type harness struct {
	t     *testing.T
	ctx   context.Context
	rt    *fakeRuntime
	clock *testingclock.FakeClock
	rec   *record.FakeRecorder
	// objects holds the Secrets, ConfigMaps, RuntimeClasses, claims and volumes the pod's
	// listers read.
	objects cache.Indexer
	pods    *Pods
	w       *podWorker
	final   *corev1.Pod // the status reported once the pod is gone
}

const testUID = "uid-1"

func newHarness(t *testing.T, pd *corev1.Pod) *harness {
	t.Helper()
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	return harnessOn(t, pd, newFakeRuntime(clk), clk)
}

// restarted is a new worker for pd over the host that earlier's worker
// left: what a restarted rbn-kubelet finds.
func restarted(t *testing.T, earlier *harness, pd *corev1.Pod) *harness {
	t.Helper()
	return harnessOn(t, pd, earlier.rt, earlier.clock)
}

func harnessOn(t *testing.T, pd *corev1.Pod, rt *fakeRuntime, clk *testingclock.FakeClock) *harness {
	h := podsOn(t, rt, clk)
	h.w = newPodWorker(h.pods, pd)
	h.pods.addLocked(h.w)
	return h
}

// podsOn is a harness with no worker yet: a node's Pods over rt, as a
// (re)started rbn-kubelet has them before virtual-kubelet hands them pods.
// secretsFrom is a SecretFunc reading idx, the tests' stand-in for the
// apiserver.
func secretsFrom(idx cache.Indexer) SecretFunc {
	l := corev1listers.NewSecretLister(idx)
	return func(_ context.Context, pd *corev1.Pod, name string) (*corev1.Secret, error) {
		return l.Secrets(pd.Namespace).Get(name)
	}
}

func podsOn(t *testing.T, rt *fakeRuntime, clk *testingclock.FakeClock) *harness {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	h := &harness{t: t, ctx: t.Context(), rt: rt, clock: clk, rec: record.NewFakeRecorder(1000), objects: idx}
	h.pods = newPods(PodsConfig{
		NodeName: "node-a", Spec: &rbnv1.RemoteBuildNodeSpec{Address: "192.0.2.10"}, Recorder: h.rec,
		Objects:        podobjects.Listers{Secrets: corev1listers.NewSecretLister(idx), ConfigMaps: corev1listers.NewConfigMapLister(idx)},
		TransferSecret: secretsFrom(idx),
		RuntimeClasses: nodev1listers.NewRuntimeClassLister(idx), Clock: clk,
		Claims: corev1listers.NewPersistentVolumeClaimLister(idx), Volumes: corev1listers.NewPersistentVolumeLister(idx),
	}, h.rt)
	h.pods.NotifyPods(h.ctx, func(p *corev1.Pod) {
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			h.final = p
		}
	})
	return h
}

func testPod(policy corev1.RestartPolicy, containers ...string) *corev1.Pod {
	pd := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: testUID},
		Spec:       corev1.PodSpec{NodeName: "node-a", RestartPolicy: policy},
	}
	for _, c := range containers {
		pd.Spec.Containers = append(pd.Spec.Containers, corev1.Container{Name: c, Image: "registry.test/" + c + ":1", ImagePullPolicy: corev1.PullIfNotPresent})
	}
	return pd
}

func withInit(pd *corev1.Pod, name string) *corev1.Pod {
	pd.Spec.InitContainers = append(pd.Spec.InitContainers, corev1.Container{Name: name, Image: "registry.test/" + name + ":1", ImagePullPolicy: corev1.PullIfNotPresent})
	return pd
}

func ctrName(k8sName string, attempt int) string { return pod.ContainerName(testUID, k8sName, attempt) }

func (h *harness) sync() syncResult {
	h.t.Helper()
	return h.w.sync(h.ctx)
}

func (h *harness) status() corev1.PodStatus { return h.w.current().Status }

// state returns the container's status, failing the test when it has none.
func (h *harness) state(name string) corev1.ContainerStatus {
	h.t.Helper()
	st := h.status()
	for _, s := range append(st.InitContainerStatuses, st.ContainerStatuses...) {
		if s.Name == name {
			return s
		}
	}
	h.t.Fatalf("no status for container %s in %+v", name, st)
	return corev1.ContainerStatus{}
}

func (h *harness) wantPhase(want corev1.PodPhase) {
	h.t.Helper()
	if got := h.status().Phase; got != want {
		h.t.Fatalf("phase %s, want %s; status %+v", got, want, h.status())
	}
}

func (h *harness) wantWaiting(name, reason string) {
	h.t.Helper()
	if w := h.state(name).State.Waiting; w == nil || w.Reason != reason {
		h.t.Fatalf("container %s: state %+v, want waiting %s", name, h.state(name).State, reason)
	}
}

func (h *harness) wantCalls(prefix string, n int) {
	h.t.Helper()
	if got := h.rt.called(prefix); len(got) != n {
		h.t.Fatalf("%d calls %q, want %d; all calls: %q", len(got), prefix, n, h.rt.calls)
	}
}

// events drains the events recorded so far ("Type Reason Message").
func (h *harness) events() []string {
	var out []string
	for {
		select {
		case e := <-h.rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func (h *harness) wantEvent(events []string, prefix string) {
	h.t.Helper()
	if !slices.ContainsFunc(events, func(e string) bool { return strings.HasPrefix(e, prefix) }) {
		h.t.Fatalf("no event %q among %q", prefix, events)
	}
}

func TestWorkerStartsAPod(t *testing.T) {
	h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main", "side"))
	h.rt.images["registry.test/main:1"] = true
	if r := h.sync(); r.finished || r.next != 0 {
		t.Fatalf("sync = %+v, want nothing pending", r)
	}
	h.wantPhase(corev1.PodRunning)
	h.wantCalls("create-pod", 1)
	h.wantCalls("start rbn-"+testUID+"-infra", 1)
	h.wantCalls("pull registry.test/main:1", 0) // present, IfNotPresent
	h.wantCalls("pull registry.test/side:1", 1)
	for _, c := range []string{"main", "side"} {
		h.wantCalls("create "+ctrName(c, 0), 1)
		h.wantCalls("start "+ctrName(c, 0), 1)
		if s := h.state(c); s.State.Running == nil || !s.Ready {
			t.Errorf("container %s: %+v, want running and ready", c, s)
		}
	}
	if st := h.status(); st.PodIP != "10.88.0.7" || st.HostIP != "192.0.2.10" {
		t.Errorf("pod IP %q host IP %q", st.PodIP, st.HostIP)
	}
	ev := h.events()
	h.wantEvent(ev, "Normal Created Created container main")
	h.wantEvent(ev, "Normal Started Started container side")
	// A sync with nothing new changes nothing.
	h.sync()
	h.wantCalls("create ", 2)
	h.wantCalls("start ", 3)
}

func TestWorkerRestartsWithCrashBackOff(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policy   corev1.RestartPolicy
		exit     int32
		restarts bool
		phase    corev1.PodPhase // once the container exited
	}{
		{"Always, failed", corev1.RestartPolicyAlways, 1, true, corev1.PodRunning},
		{"Always, succeeded", corev1.RestartPolicyAlways, 0, true, corev1.PodRunning},
		{"OnFailure, failed", corev1.RestartPolicyOnFailure, 2, true, corev1.PodRunning},
		{"OnFailure, succeeded", corev1.RestartPolicyOnFailure, 0, false, corev1.PodSucceeded},
		{"Never, failed", corev1.RestartPolicyNever, 1, false, corev1.PodFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testPod(tc.policy, "main"))
			h.rt.images["registry.test/main:1"] = true
			h.sync()
			h.wantPhase(corev1.PodRunning)
			// Each run ends at once: the waits go 10 s, 20 s, 40 s.
			for attempt, wait := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second} {
				h.rt.exit(ctrName("main", attempt), tc.exit)
				r := h.sync()
				h.wantPhase(tc.phase)
				if !tc.restarts {
					if r.next != 0 {
						t.Fatalf("sync = %+v, want nothing pending", r)
					}
					h.wantCalls("create "+ctrName("main", 1), 0)
					return
				}
				if r.next != wait {
					t.Fatalf("attempt %d: next sync in %s, want %s", attempt, r.next, wait)
				}
				h.wantWaiting("main", "CrashLoopBackOff")
				h.wantEvent(h.events(), "Warning BackOff Back-off restarting failed container main")
				h.clock.Step(wait - time.Second)
				h.sync()
				h.wantCalls("create "+ctrName("main", attempt+1), 0)
				h.clock.Step(time.Second)
				if r := h.sync(); r.next != 0 {
					t.Fatalf("sync after the back-off = %+v", r)
				}
				h.wantCalls("create "+ctrName("main", attempt+1), 1)
				if s := h.state("main"); s.State.Running == nil || s.RestartCount != int32(attempt+1) || s.LastTerminationState.Terminated == nil {
					t.Fatalf("after restart %d: %+v", attempt+1, s)
				}
			}
			// A run of 10 minutes resets the back-off to 10 s.
			h.clock.Step(10 * time.Minute)
			h.rt.exit(ctrName("main", 3), tc.exit)
			if r := h.sync(); r.next != 10*time.Second {
				t.Fatalf("after a 10 min run: next sync in %s, want 10s", r.next)
			}
		})
	}
}

func TestWorkerBackOffCapsAtFiveMinutes(t *testing.T) {
	h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.rt.images["registry.test/main:1"] = true
	h.sync()
	var last time.Duration
	for attempt := range 8 {
		h.rt.exit(ctrName("main", attempt), 1)
		last = h.sync().next
		h.clock.Step(last)
		h.sync()
	}
	if last != 5*time.Minute {
		t.Fatalf("back-off after 8 crashes %s, want 5m0s", last)
	}
}

func TestWorkerAdoptsWhatARestartLeft(t *testing.T) {
	// A first rbn-kubelet started the pod; a second one finds it.
	first := newHarness(t, testPod(corev1.RestartPolicyNever, "main", "done"))
	first.rt.images["registry.test/main:1"], first.rt.images["registry.test/done:1"] = true, true
	first.sync()
	first.rt.exit(ctrName("done", 0), 0)

	h := restarted(t, first, testPod(corev1.RestartPolicyNever, "main", "done"))
	before := len(h.rt.calls)
	h.sync()
	h.wantPhase(corev1.PodRunning)
	infra := h.rt.pods["rbn-"+testUID].InfraID
	for _, c := range h.rt.calls[before:] {
		// Starting the infra container again is a no-op podman answers.
		if strings.HasPrefix(c, "create ") || strings.HasPrefix(c, "start ") && c != "start "+infra || strings.HasPrefix(c, "pull ") {
			t.Errorf("re-adoption ran %q", c)
		}
	}
	if s := h.state("done"); s.State.Terminated == nil || s.State.Terminated.Reason != "Completed" {
		t.Errorf("completed container: %+v", s.State)
	}
	if s := h.state("main"); s.State.Running == nil {
		t.Errorf("running container: %+v", s.State)
	}
}

func TestWorkerStartsACreatedContainerAsItIs(t *testing.T) {
	// An earlier attempt created the container and never started it
	// (rbn-kubelet restarted in between): podman 4.3 answers a second
	// create of the name with a storage error, not a conflict.
	first := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
	first.rt.images["registry.test/main:1"] = true
	first.rt.startErr[ctrName("main", 0)] = errors.New("interrupted")
	first.sync()
	first.rt.ctrs[ctrName("main", 0)].Error = "" // never started, no error kept
	delete(first.rt.startErr, ctrName("main", 0))

	h := restarted(t, first, testPod(corev1.RestartPolicyAlways, "main"))
	h.sync()
	h.wantCalls("create "+ctrName("main", 0), 1) // the first worker's only
	h.wantCalls("start "+ctrName("main", 0), 2)
	h.wantPhase(corev1.PodRunning)
}

// kubelet_pod_start_duration_seconds: from the worker's first sight of the
// pod to its first report as Running, once; a pod taken over already
// running (another replica started it) is not counted.
func TestWorkerObservesPodStartDuration(t *testing.T) {
	h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.rt.images["registry.test/main:1"] = true
	h.clock.Step(3 * time.Second)
	h.sync()
	h.wantPhase(corev1.PodRunning)
	h.clock.Step(time.Minute)
	h.sync()
	if n, sum := histogramOf(t, h.pods.startDurations); n != 1 || sum != 3 {
		t.Fatalf("%d starts observed, %gs in all; want 1 of 3s", n, sum)
	}
	for stage, want := range map[string]float64{StageConfig: 3, StageSandbox: 0, StageImages: 0, StageContainers: 0} {
		if n, sum := histogramOf(t, h.pods.startStages[stage]); n != 1 || sum != want {
			t.Errorf("stage %s: %d observed, %gs in all; want 1 of %gs", stage, n, sum, want)
		}
	}

	running := testPod(corev1.RestartPolicyAlways, "main")
	running.Status.Phase = corev1.PodRunning
	taken := restarted(t, h, running)
	taken.sync()
	taken.wantPhase(corev1.PodRunning)
	if n, _ := histogramOf(t, taken.pods.startDurations); n != 0 {
		t.Errorf("%d starts observed for a pod taken over running, want none", n)
	}
}

func histogramOf(t *testing.T, h prometheus.Histogram) (count uint64, sum float64) {
	t.Helper()
	m := &dto.Metric{}
	if err := h.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// TestWorkerSplitsPodStartIntoStages: the stages of a start add up to
// kubelet_pod_start_duration_seconds, each the time its work took: the
// sandbox's creation, the image's pull, the container's creation and start.
// (The infra container starts while the first container is created, on a
// goroutine of its own: it takes no time here, so that the figures do not
// depend on the order of the two.)
func TestWorkerSplitsPodStartIntoStages(t *testing.T) {
	h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
	took := map[string]time.Duration{"create-pod": 200 * time.Millisecond, "pull": 2 * time.Second, "create": 50 * time.Millisecond, "start": 100 * time.Millisecond}
	h.rt.onCall = func(call string) {
		op, name, _ := strings.Cut(call, " ")
		if !strings.HasSuffix(name, "-infra") {
			h.clock.Step(took[op])
		}
	}
	h.clock.Step(time.Second)
	h.sync()
	h.wantPhase(corev1.PodRunning)
	if n, sum := histogramOf(t, h.pods.startDurations); n != 1 || sum != 3.35 {
		t.Errorf("%d starts observed, %gs in all; want 1 of 3.35s", n, sum)
	}
	for stage, want := range map[string]float64{StageConfig: 1, StageSandbox: 0.2, StageImages: 2, StageContainers: 0.15} {
		if n, sum := histogramOf(t, h.pods.startStages[stage]); n != 1 || math.Abs(sum-want) > 1e-9 {
			t.Errorf("stage %s: %d observed, %gs in all; want 1 of %gs", stage, n, sum, want)
		}
	}
}

func TestStartMarksSplit(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	for _, tc := range []struct {
		name    string
		marks   startMarks
		running time.Time
		pulled  time.Duration
		want    map[string]time.Duration
	}{
		{"every stage", startMarks{planned: at(1), sandboxed: at(3), pulledBefore: time.Second}, at(10), 5 * time.Second,
			map[string]time.Duration{StageConfig: time.Second, StageSandbox: 2 * time.Second, StageImages: 4 * time.Second, StageContainers: 3 * time.Second}},
		{"taken over with its sandbox: no sandbox mark", startMarks{planned: at(1)}, at(2), 0,
			map[string]time.Duration{StageConfig: time.Second, StageSandbox: 0, StageImages: 0, StageContainers: time.Second}},
		{"no marks at all", startMarks{}, at(2), 0,
			map[string]time.Duration{StageConfig: 0, StageSandbox: 0, StageImages: 0, StageContainers: 2 * time.Second}},
		{"pull time beyond the rest is cut to it", startMarks{planned: at(0), sandboxed: at(1)}, at(2), 5 * time.Second,
			map[string]time.Duration{StageConfig: 0, StageSandbox: time.Second, StageImages: time.Second, StageContainers: 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.marks.split(t0, tc.running, tc.pulled)
			if !maps.Equal(got, tc.want) {
				t.Errorf("split = %v, want %v", got, tc.want)
			}
			var sum time.Duration
			for _, d := range got {
				sum += d
			}
			if sum != tc.running.Sub(t0) {
				t.Errorf("stages add up to %s, the start took %s", sum, tc.running.Sub(t0))
			}
		})
	}
}

// TestStatusLatencyObservedWhenTheLastStatusIsWritten: the wait from the
// first status change reported to a successful write of the last status
// reported, through the client virtual-kubelet writes with; older statuses
// and failed writes leave it running, and a write observes it once.
func TestStatusLatencyObservedWhenTheLastStatusIsWritten(t *testing.T) {
	pd := testPod(corev1.RestartPolicyNever, "main")
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	cs := fake.NewClientset(pd.DeepCopy())
	pods := h.pods.StatusClient(cs.CoreV1()).Pods(pd.Namespace)
	write := func(p *corev1.Pod) error {
		_, err := pods.UpdateStatus(h.ctx, p, metav1.UpdateOptions{})
		return err
	}
	h.sync()
	h.wantPhase(corev1.PodRunning)
	h.clock.Step(300 * time.Millisecond)
	if err := write(pd); err != nil { // the status before the worker's
		t.Fatal(err)
	}
	if n, _ := histogramOf(t, h.pods.statusLatency); n != 0 {
		t.Fatalf("%d observed after an older status was written, want 0", n)
	}
	if err := write(h.w.current()); err != nil {
		t.Fatal(err)
	}
	if err := write(h.w.current()); err != nil {
		t.Fatal(err)
	}
	if n, sum := histogramOf(t, h.pods.statusLatency); n != 1 || sum != 0.3 {
		t.Fatalf("%d observed, %gs in all; want 1 of 0.3s", n, sum)
	}

	h.rt.exit(ctrName("main", 0), 0)
	h.sync()
	h.wantPhase(corev1.PodSucceeded)
	h.clock.Step(2 * time.Second)
	gone := h.pods.StatusClient(fake.NewClientset().CoreV1()).Pods(pd.Namespace)
	if _, err := gone.UpdateStatus(h.ctx, h.w.current(), metav1.UpdateOptions{}); err == nil {
		t.Fatal("the status of a pod the API lacks was written")
	}
	if n, _ := histogramOf(t, h.pods.statusLatency); n != 1 {
		t.Fatalf("%d observed after a failed write, want still 1", n)
	}
	if err := write(h.w.current()); err != nil {
		t.Fatal(err)
	}
	if n, sum := histogramOf(t, h.pods.statusLatency); n != 2 || sum != 2.3 {
		t.Errorf("%d observed, %gs in all; want 2 of 2.3s", n, sum)
	}
}

// TestWorkerNamesItsSyncs: kubelet_pod_worker_duration_seconds's operation
// types, as kubelet's pod workers name their syncs.
func TestWorkerNamesItsSyncs(t *testing.T) {
	pd := testPod(corev1.RestartPolicyAlways, "main")
	h := newHarness(t, pd)
	var got []string
	got = append(got, h.w.syncOperation(), h.w.syncOperation())
	changed := pd.DeepCopy()
	changed.Labels = map[string]string{"tier": "build"}
	h.w.update(changed)
	got = append(got, h.w.syncOperation(), h.w.syncOperation())
	h.w.terminate(time.Second)
	got = append(got, h.w.syncOperation())
	if want := []string{"create", "sync", "update", "sync", "kill"}; !slices.Equal(got, want) {
		t.Errorf("syncs %v, want %v", got, want)
	}
}
