package provider

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// TestWorkerActiveDeadline: past activeDeadlineSeconds (counted from the
// pod's startTime) the running containers are stopped within the grace
// period and the pod fails with the kubelet's DeadlineExceeded; the worker
// asks to be woken at the deadline, and a pod that ended first is left alone.
func TestWorkerActiveDeadline(t *testing.T) {
	t.Run("exceeded", func(t *testing.T) {
		pd := testPod(corev1.RestartPolicyAlways, "main", "side")
		pd.Spec.ActiveDeadlineSeconds = ptr.To[int64](60)
		pd.Spec.TerminationGracePeriodSeconds = ptr.To[int64](5)
		pd.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
		h := newHarness(t, pd)
		h.rt.images["registry.test/main:1"], h.rt.images["registry.test/side:1"] = true, true
		if r := h.sync(); r.next != 60*time.Second {
			t.Fatalf("next sync in %s, want 60s (the deadline)", r.next)
		}
		h.wantPhase(corev1.PodRunning)
		h.clock.Step(30 * time.Second)
		if r := h.sync(); r.next != 30*time.Second {
			t.Fatalf("next sync in %s, want 30s (the deadline)", r.next)
		}
		h.wantCalls("stop ", 0)
		h.clock.Step(30 * time.Second)
		h.sync()
		h.wantCalls("stop "+ctrName("main", 0)+" 5s", 1)
		h.wantCalls("stop "+ctrName("side", 0)+" 5s", 1)
		h.wantPhase(corev1.PodFailed)
		st := h.status()
		if st.Reason != "DeadlineExceeded" || st.Message != "Pod was active on the node longer than the specified deadline" {
			t.Errorf("reason %q message %q", st.Reason, st.Message)
		}
		// Stopped by rbn, under a memory limit: not reported as an OOM kill.
		if term := h.state("main").State.Terminated; term == nil || term.Reason == "OOMKilled" {
			t.Errorf("main: %+v", h.state("main").State)
		}
		h.wantEvent(h.events(), "Warning DeadlineExceeded Pod was active on the node longer than the specified deadline")
		// Nothing restarts it.
		h.clock.Step(time.Minute)
		h.sync()
		h.wantCalls("create "+ctrName("main", 1), 0)
	})
	t.Run("ended before", func(t *testing.T) {
		pd := testPod(corev1.RestartPolicyNever, "main")
		pd.Spec.ActiveDeadlineSeconds = ptr.To[int64](60)
		h := newHarness(t, pd)
		h.rt.images["registry.test/main:1"] = true
		h.sync()
		h.rt.exit(ctrName("main", 0), 0)
		h.sync()
		h.wantPhase(corev1.PodSucceeded)
		h.clock.Step(2 * time.Minute)
		h.sync()
		h.wantPhase(corev1.PodSucceeded)
	})
	t.Run("set on a running pod", func(t *testing.T) {
		h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
		h.rt.images["registry.test/main:1"] = true
		h.sync()
		h.clock.Step(10 * time.Minute)
		pd := h.w.current()
		pd.Spec.ActiveDeadlineSeconds = ptr.To[int64](300)
		h.w.update(pd)
		h.sync()
		h.wantPhase(corev1.PodFailed)
		if st := h.status(); st.Reason != "DeadlineExceeded" {
			t.Errorf("reason %q", st.Reason)
		}
	})
}
