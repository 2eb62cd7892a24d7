package provider

import (
	"errors"
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
