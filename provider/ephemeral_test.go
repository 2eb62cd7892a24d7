package provider

import (
	"testing"
	"time"

	"github.com/containers/podman/v5/pkg/specgen"
	corev1 "k8s.io/api/core/v1"
)

// debugRunning runs the pod of container main, adds ec (named dbg, image
// registry.test/debug:1) to it and syncs until dbg has started.
func debugRunning(t *testing.T, ec corev1.EphemeralContainer) *harness {
	t.Helper()
	h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.rt.images["registry.test/main:1"], h.rt.images["registry.test/debug:1"] = true, true
	h.sync()
	h.wantPhase(corev1.PodRunning)
	pd := h.w.current()
	ec.Name, ec.Image, ec.ImagePullPolicy = "dbg", "registry.test/debug:1", corev1.PullIfNotPresent
	pd.Spec.EphemeralContainers = []corev1.EphemeralContainer{ec}
	h.w.update(pd)
	h.sync()
	h.wantCalls("start "+ctrName("dbg", 0), 1)
	return h
}

func TestEphemeralContainerRunsOnceInItsTarget(t *testing.T) {
	h := debugRunning(t, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{Stdin: true, TTY: true},
		TargetContainerName:      "main",
	})
	spec := h.rt.specs[ctrName("dbg", 0)]
	target := h.rt.byName(ctrName("main", 0)).ID
	if spec.PidNS != (specgen.Namespace{NSMode: specgen.FromContainer, Value: target}) || !*spec.Terminal || !*spec.Stdin {
		t.Fatalf("debug container: pid %+v, terminal %v, stdin %v; want main's (%s) PID namespace, a terminal, stdin", spec.PidNS, *spec.Terminal, *spec.Stdin, target)
	}
	st := h.status()
	if len(st.EphemeralContainerStatuses) != 1 || st.EphemeralContainerStatuses[0].State.Running == nil {
		t.Fatalf("ephemeral statuses %+v, want dbg running", st.EphemeralContainerStatuses)
	}
	if len(st.ContainerStatuses) != 1 {
		t.Fatalf("container statuses %+v: the debug container is no app container", st.ContainerStatuses)
	}
	h.wantEvent(h.events(), "Normal Started Started container dbg")

	// It ends: never run again, and the pod runs on.
	h.rt.exit(ctrName("dbg", 0), 0)
	h.clock.Step(time.Hour)
	h.sync()
	h.wantCalls("create "+ctrName("dbg", 1), 0)
	h.wantPhase(corev1.PodRunning)
	if s := h.status().EphemeralContainerStatuses; s[0].State.Terminated == nil {
		t.Fatalf("ephemeral status %+v, want terminated", s[0])
	}
}

func TestEphemeralContainerWaitsForItsTarget(t *testing.T) {
	h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.rt.images["registry.test/main:1"], h.rt.images["registry.test/debug:1"] = true, true
	h.sync()
	h.rt.exit(ctrName("main", 0), 1)
	h.sync() // main in its crash back-off
	pd := h.w.current()
	pd.Spec.EphemeralContainers = []corev1.EphemeralContainer{{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "dbg", Image: "registry.test/debug:1", ImagePullPolicy: corev1.PullIfNotPresent},
		TargetContainerName:      "main",
	}}
	h.w.update(pd)
	h.sync()
	h.wantCalls("create "+ctrName("dbg", 0), 0)
	if s := h.status().EphemeralContainerStatuses; len(s) != 1 || s[0].State.Waiting == nil || s[0].State.Waiting.Reason != "CreateContainerError" {
		t.Fatalf("ephemeral status %+v, want waiting CreateContainerError (target not running)", s)
	}
	h.clock.Step(10 * time.Second)
	h.sync() // main runs again, then the debug container
	h.sync()
	h.wantCalls("start "+ctrName("dbg", 0), 1)
}

// TestEphemeralContainerTerminationMessage: a debug container's
// terminationMessagePath gets its file too, the termination volume made
// then when no other container of the pod had a path.
func TestEphemeralContainerTerminationMessage(t *testing.T) {
	h := debugRunning(t, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{TerminationMessagePath: "/dev/termination-log"}})
	h.rt.writeMounted(ctrName("dbg", 0), "/dev/termination-log", "found it")
	h.rt.exit(ctrName("dbg", 0), 0)
	h.sync()
	if s := h.status().EphemeralContainerStatuses; len(s) != 1 || s[0].State.Terminated == nil || s[0].State.Terminated.Message != "found it" {
		t.Fatalf("ephemeral statuses %+v, want dbg terminated with its message", s)
	}
}
