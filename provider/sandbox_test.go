package provider

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestWorkerSandboxInfraStartFails(t *testing.T) {
	// The infra container starts while the first container is created; when
	// that start fails, no container starts and the next sync sets the
	// podman pod up again, as one found existing.
	h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.rt.images["registry.test/main:1"] = true
	infra := "rbn-" + testUID + "-infra"
	h.rt.startErr[infra] = errors.New("netns: no such file")
	h.sync()
	h.wantCalls("start "+ctrName("main", 0), 0)
	h.wantEvent(h.events(), "Warning FailedCreatePodSandBox netns: no such file")
	if st := h.status(); st.PodIP != "" {
		t.Errorf("pod IP %q before the sandbox runs", st.PodIP)
	}

	delete(h.rt.startErr, infra)
	h.sync()
	h.wantCalls("create-pod ", 2) // the second finds the first's podman pod
	h.wantCalls("create "+ctrName("main", 0), 1)
	h.wantCalls("start "+ctrName("main", 0), 1)
	h.wantPhase(corev1.PodRunning)
	if st := h.status(); st.PodIP != "10.88.0.7" {
		t.Errorf("pod IP %q, want the infra container's 10.88.0.7", st.PodIP)
	}
}

func TestWorkerRemembersPulledImages(t *testing.T) {
	// Two containers of one image: one pull.
	pd := testPod(corev1.RestartPolicyAlways, "main", "side")
	pd.Spec.Containers[1].Image = pd.Spec.Containers[0].Image
	h := newHarness(t, pd)
	h.sync()
	h.wantCalls("pull registry.test/main:1", 1)
	h.wantPhase(corev1.PodRunning)
}

// TestWorkerInfraStartsOnceTheFirstContainerExists: a new podman pod's
// infra container starts after its first container is created, while that
// container's files are copied in (podman would make the creation wait for
// the start), and before that container starts. A first container that
// cannot be created still leaves the infra container started by the
// sync's end, as before. An image to pull has it start as the pull begins.
func TestWorkerInfraStartsOnceTheFirstContainerExists(t *testing.T) {
	h := newHarness(t, testPod(corev1.RestartPolicyNever, "main"))
	h.rt.images["registry.test/main:1"] = true
	h.sync()
	infra := "start rbn-" + testUID + "-infra"
	created, started, runs := h.callIndex("create "+ctrName("main", 0)), h.callIndex(infra), h.callIndex("start "+ctrName("main", 0))
	if created < 0 || !(created < started && started < runs) {
		t.Errorf("calls %q: want the container created, then the infra container started, then the container", h.rt.calls)
	}

	// An image to pull: the infra container starts as the pull begins.
	h = newHarness(t, testPod(corev1.RestartPolicyNever, "main"))
	begunAtPull := false
	h.rt.onCall = func(call string) { // on the worker's goroutine, as kick
		if strings.HasPrefix(call, "pull ") {
			begunAtPull = h.w.sandbox.pending != nil && h.w.sandbox.pending.begun
		}
	}
	h.sync()
	h.wantCalls("pull registry.test/main:1", 1)
	if !begunAtPull {
		t.Error("the infra container's start had not begun when the pull did")
	}

	h = newHarness(t, testPod(corev1.RestartPolicyNever, "main"))
	h.rt.pullErr["registry.test/main:1"] = errors.New("manifest unknown")
	h.sync() // no container is created
	h.wantCalls("create "+ctrName("main", 0), 0)
	h.wantCalls(infra, 1)
}
