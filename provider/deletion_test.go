package provider

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestDeletionGrace(t *testing.T) {
	deleted := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		spec  *int64 // terminationGracePeriodSeconds
		grace *int64 // deletionGracePeriodSeconds; the deadline is deleted+grace
		at    time.Duration
		want  time.Duration
	}{
		{name: "not being deleted", spec: ptr.To[int64](45), want: 45 * time.Second},
		{name: "handed over at once", grace: ptr.To[int64](60), want: time.Minute},
		{name: "handed over within the second", grace: ptr.To[int64](60), at: 300 * time.Millisecond, want: time.Minute},
		{name: "part of it passed", grace: ptr.To[int64](60), at: 20 * time.Second, want: 40 * time.Second},
		{name: "a clock behind the API server's", grace: ptr.To[int64](60), at: -10 * time.Second, want: time.Minute},
		{name: "all of it passed", grace: ptr.To[int64](60), at: 5 * time.Minute, want: minStopGrace},
		{name: "a grace shorter than the minimal window", grace: ptr.To[int64](1), at: time.Minute, want: time.Second},
		{name: "forced", grace: ptr.To[int64](0), want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pd := testPod(corev1.RestartPolicyAlways, "main")
			pd.Spec.TerminationGracePeriodSeconds = tc.spec
			if tc.grace != nil {
				pd.DeletionGracePeriodSeconds = tc.grace
				pd.DeletionTimestamp = &metav1.Time{Time: deleted.Add(time.Duration(*tc.grace) * time.Second)}
			}
			if got := deletionGrace(pd, deleted.Add(tc.at)); got != tc.want {
				t.Fatalf("deletionGrace = %s, want %s", got, tc.want)
			}
		})
	}
}

// deletedWhileDown runs a pod with a preStop hook on a first rbn-kubelet,
// marks it deleted with a grace period of 60 s, lets down pass with no
// rbn-kubelet serving the node, and hands the deletion to a second one, as
// virtual-kubelet does at its start (a restart, a takeover): DeletePod for
// a pod it has no worker for. It returns the second's harness, once
// DeletePod has returned.
func deletedWhileDown(t *testing.T, down time.Duration) *harness {
	t.Helper()
	pd := testPod(corev1.RestartPolicyAlways, "main", "web")
	pd.Spec.TerminationGracePeriodSeconds = ptr.To[int64](60)
	pd.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
		Exec: &corev1.ExecAction{Command: []string{"drain"}},
	}}
	pd.Spec.Containers[1].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
		HTTPGet: &corev1.HTTPGetAction{Path: "/drain", Port: intstr.FromInt32(8080)},
	}}
	first := newHarness(t, pd)
	first.rt.images["registry.test/main:1"], first.rt.images["registry.test/web:1"] = true, true
	first.sync()
	first.wantPhase(corev1.PodRunning)

	deleted := first.w.current()
	deleted.DeletionGracePeriodSeconds = ptr.To[int64](60)
	deleted.DeletionTimestamp = &metav1.Time{Time: first.clock.Now().Add(time.Minute)}
	first.clock.Step(down)

	h := podsOn(t, first.rt, first.clock)
	ctx, cancel := context.WithCancel(h.ctx)
	ran := make(chan error, 1)
	go func() { ran <- h.pods.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-ran
	})
	dctx, dcancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer dcancel()
	if err := h.pods.DeletePod(dctx, deleted); err != nil {
		t.Fatalf("DeletePod = %v, want the pod stopped and removed", err)
	}
	return h
}

// preStopThenStop returns the stop of the pod's container, failing the
// test unless its preStop hook ran first.
func (h *harness) preStopThenStop() string {
	h.t.Helper()
	calls := h.rt.called("")
	hook := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, "exec-sync ") && strings.HasSuffix(c, " drain") })
	stop := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, "stop "+ctrName("main", 0)+" ") })
	if hook < 0 || stop < hook {
		h.t.Fatalf("calls %q: want the preStop hook, then the stop", calls)
	}
	return calls[stop]
}

func TestPodDeletedWhileDownGetsWhatIsLeftOfItsGrace(t *testing.T) {
	h := deletedWhileDown(t, 20*time.Second)
	// 60 s of grace from the delete, 20 s of them passed: SIGKILL 40 s
	// after SIGTERM, not at once.
	if got, want := h.preStopThenStop(), "stop "+ctrName("main", 0)+" 40s"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	h.wantCalls("remove-pod rbn-"+testUID, 1)
	if _, ok := h.rt.pods["rbn-"+testUID]; ok {
		t.Fatal("the podman pod is still on the host")
	}
	if h.final == nil || h.final.Status.Phase != corev1.PodFailed {
		t.Fatalf("final status %+v, want the pod reported ended", h.final)
	}
	// The containers' exit after SIGTERM, not an unknown end.
	for _, st := range h.final.Status.ContainerStatuses {
		if st.State.Terminated == nil || st.State.Terminated.ExitCode != 143 {
			t.Fatalf("final status of %s %+v, want terminated with exit code 143", st.Name, st.State)
		}
	}
	// The httpGet hook is sent to the pod's IP (the fake host has no
	// network to answer it).
	h.wantEvent(h.events(), `Warning FailedPreStopHook HTTP lifecycle hook (/drain) for Container "web" in Pod "p_ns(`+testUID+`)" failed - error: Get "http://10.88.0.7:8080/drain"`)
}

func TestPodWhoseGraceRanOutWhileDownGetsTheMinimalWindow(t *testing.T) {
	h := deletedWhileDown(t, 5*time.Minute)
	// kubelet's minimal shutdown window: SIGTERM, SIGKILL 2 s later.
	if got, want := h.preStopThenStop(), "stop "+ctrName("main", 0)+" 2s"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

func TestDeletePodOfAPodNeitherHereNorDeletedIsNotFound(t *testing.T) {
	clk := newHarness(t, testPod(corev1.RestartPolicyAlways, "unused")).clock
	h := podsOn(t, newFakeRuntime(clk), clk)
	if err := h.pods.DeletePod(h.ctx, testPod(corev1.RestartPolicyAlways, "main")); err == nil || !strings.Contains(err.Error(), "not on this node") {
		t.Fatalf("DeletePod = %v, want not on this node", err)
	}
}
