package provider

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// sidecarPod is a pod with a native sidecar "proxy", then an ordinary
// init container "setup", then the app container "main".
func sidecarPod(policy corev1.RestartPolicy) *corev1.Pod {
	pd := withInit(withInit(testPod(policy, "main"), "proxy"), "setup")
	pd.Spec.InitContainers[0].RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	return pd
}

func sidecarHarness(t *testing.T, policy corev1.RestartPolicy) *harness {
	h := newHarness(t, sidecarPod(policy))
	for _, c := range []string{"main", "proxy", "setup"} {
		h.rt.images["registry.test/"+c+":1"] = true
	}
	return h
}

func (h *harness) condition(typ corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range h.status().Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// stops lists the containers stopped, in order.
func (h *harness) stops() []string {
	var out []string
	for _, c := range h.rt.called("stop ") {
		out = append(out, strings.Fields(c)[1])
	}
	return out
}

func TestSidecarRunsBesideTheAppAndStopsAfterIt(t *testing.T) {
	h := sidecarHarness(t, corev1.RestartPolicyNever)
	h.sync()
	h.wantCalls("start "+ctrName("proxy", 0), 1)
	h.wantCalls("create "+ctrName("setup", 0), 0) // not before the sidecar started
	h.sync()
	h.wantCalls("start "+ctrName("setup", 0), 1)
	if s := h.state("proxy"); s.State.Running == nil || !s.Ready || s.Started == nil || !*s.Started {
		t.Fatalf("proxy: %+v, want running, started and ready", s)
	}
	if h.condition(corev1.PodInitialized) != corev1.ConditionFalse {
		t.Fatal("initialized before setup completed")
	}
	h.rt.exit(ctrName("setup", 0), 0)
	h.sync()
	h.wantCalls("start "+ctrName("main", 0), 1)
	h.wantPhase(corev1.PodRunning)
	if h.condition(corev1.PodInitialized) != corev1.ConditionTrue || h.condition(corev1.PodReady) != corev1.ConditionTrue {
		t.Fatalf("conditions %+v, want Initialized and Ready", h.status().Conditions)
	}
	if s := h.state("setup"); !s.Ready {
		t.Errorf("setup completed but not ready (kubelet's init containers are ready once completed): %+v", s)
	}

	// The sidecar exits: run again after its back-off, under Never too.
	h.rt.exit(ctrName("proxy", 0), 1)
	h.sync()
	h.wantWaiting("proxy", "CrashLoopBackOff")
	h.wantPhase(corev1.PodRunning)
	if h.condition(corev1.PodReady) != corev1.ConditionFalse {
		t.Error("Ready while the sidecar is down")
	}
	h.clock.Step(10 * time.Second)
	h.sync()
	h.wantCalls("start "+ctrName("proxy", 1), 1)
	h.wantCalls("start "+ctrName("setup", 1), 0) // completed init containers are not run again

	// The app completes: the sidecar is stopped and not run again; the
	// pod succeeds whatever the sidecar's exit code.
	h.rt.exit(ctrName("main", 0), 0)
	h.sync()
	if got := h.stops(); !slices.Equal(got, []string{ctrName("proxy", 1)}) {
		t.Fatalf("stopped %v, want the sidecar", got)
	}
	h.wantEvent(h.events(), "Normal Killing Stopping container proxy")
	h.wantPhase(corev1.PodSucceeded)
	h.clock.Step(time.Hour)
	h.sync()
	h.wantCalls("create "+ctrName("proxy", 2), 0)
}

func TestSidecarFailedInitStopsIt(t *testing.T) {
	h := sidecarHarness(t, corev1.RestartPolicyNever)
	h.sync()
	h.sync()
	h.rt.exit(ctrName("setup", 0), 2)
	h.sync()
	h.wantPhase(corev1.PodFailed)
	if got := h.stops(); !slices.Equal(got, []string{ctrName("proxy", 0)}) {
		t.Fatalf("stopped %v, want the sidecar of the failed pod", got)
	}
}

func TestSidecarsStopLastOnDeletion(t *testing.T) {
	pd := sidecarPod(corev1.RestartPolicyAlways)
	// A second sidecar, declared after the first: stopped before it.
	pd.Spec.InitContainers = append(pd.Spec.InitContainers, corev1.Container{
		Name: "logs", Image: "registry.test/logs:1", ImagePullPolicy: corev1.PullIfNotPresent,
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
	})
	h := newHarness(t, pd)
	for _, c := range []string{"main", "proxy", "setup", "logs"} {
		h.rt.images["registry.test/"+c+":1"] = true
	}
	h.sync()
	h.sync()
	h.rt.exit(ctrName("setup", 0), 0)
	h.sync()
	h.sync()
	h.wantCalls("start "+ctrName("main", 0), 1)
	h.w.terminate(30 * time.Second)
	if r := h.sync(); !r.finished {
		t.Fatalf("sync = %+v, want the worker finished", r)
	}
	want := []string{ctrName("main", 0), ctrName("logs", 0), ctrName("proxy", 0)}
	if got := h.stops(); !slices.Equal(got, want) {
		t.Fatalf("stopped %v, want the app first, then the sidecars last declared first: %v", got, want)
	}
}

// The app container ends while the step that restarted the sidecar runs:
// the sidecar is stopped before the final status, never left running
// behind a Succeeded pod.
func TestSidecarStoppedWhenTheAppEndsMidStep(t *testing.T) {
	h := sidecarHarness(t, corev1.RestartPolicyNever)
	h.sync()
	h.sync()
	h.rt.exit(ctrName("setup", 0), 0)
	h.sync()
	h.rt.exit(ctrName("proxy", 0), 1)
	h.sync()
	h.rt.started = func(name string) {
		if name == ctrName("proxy", 1) {
			h.rt.exit(ctrName("main", 0), 0)
		}
	}
	h.clock.Step(10 * time.Second)
	h.sync()
	h.wantCalls("start "+ctrName("proxy", 1), 1)
	h.wantPhase(corev1.PodSucceeded)
	if s := h.state("proxy"); s.State.Running != nil {
		t.Fatalf("the pod succeeded with its sidecar running: %+v", s)
	}
}
