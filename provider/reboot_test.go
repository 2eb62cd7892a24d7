package provider

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

const (
	bootA = "aaaaaaaa-0000-4000-8000-000000000001"
	bootB = "bbbbbbbb-0000-4000-8000-000000000002"
)

// reboot takes every running container down as a host reboot does and
// podman reports it after: not running, no finish time, the podman
// client's Lost with LostExitCode; the host's boot id is then bootID.
func (f *fakeRuntime) reboot(bootID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.ctrs {
		if c.Running {
			c.Running, c.Status, c.Lost, c.ExitCode = false, "created", true, podman.LostExitCode
		}
	}
	f.info = &podman.HostInfo{PodmanVersion: "5.4.0", BootID: bootID}
}

// rebootHarness runs pd on a host with boot id bootA until it runs.
func rebootHarness(t *testing.T, pd *corev1.Pod) *harness {
	t.Helper()
	h := newHarness(t, pd)
	h.rt.info = &podman.HostInfo{PodmanVersion: "5.4.0", BootID: bootA}
	h.rt.images["registry.test/main:1"] = true
	h.rt.images["registry.test/init:1"] = true
	h.sync()
	if len(pd.Spec.InitContainers) > 0 {
		h.rt.exit(ctrName("init", 0), 0)
		h.sync()
	}
	h.wantPhase(corev1.PodRunning)
	if got := h.rt.specs[ctrName("main", 0)].Labels[pod.LabelBootID]; got != bootA {
		t.Fatalf("the container's %s label: %q, want the host's boot id %s", pod.LabelBootID, got, bootA)
	}
	h.events()
	return h
}

// The host reboots while a restartPolicy Never build runs: the run was
// lost, so the pod fails with HostRebooted (exit 137), nothing runs again
// (not the lost container, not the infra container), and a Warning event
// says so.
func TestWorkerHostRebootedNever(t *testing.T) {
	h := rebootHarness(t, withInit(testPod(corev1.RestartPolicyNever, "main"), "init"))
	h.rt.reboot(bootB)
	h.sync()
	h.wantPhase(corev1.PodFailed)
	term := h.state("main").State.Terminated
	if term == nil || term.Reason != ReasonHostRebooted || term.ExitCode != podman.LostExitCode || !strings.Contains(term.Message, bootA) {
		t.Fatalf("main: %+v, want terminated %s with exit code %d naming boot id %s", h.state("main").State, ReasonHostRebooted, podman.LostExitCode, bootA)
	}
	if s := h.state("init").State.Terminated; s == nil || s.Reason != "Completed" {
		t.Errorf("init, which completed before the reboot: %+v", h.state("init").State)
	}
	h.wantEvent(h.events(), "Warning HostRebooted Container main: the build host rebooted while the container ran (boot id "+bootA+", now "+bootB+"); restartPolicy Never")
	h.sync()
	h.wantCalls("create "+ctrName("main", 1), 0)
	h.wantCalls("start "+ctrName("main", 0), 1)
	if h.rt.byName("rbn-" + testUID + "-infra").Running {
		t.Error("the infra container of the failed pod was started again")
	}
	if h.final == nil || h.final.Status.Phase != corev1.PodFailed {
		t.Errorf("the final status reported: %+v", h.final)
	}
	if ev := h.events(); len(ev) > 0 {
		t.Errorf("events again at the next sync: %q", ev)
	}
}

// The host reboots under a restartPolicy OnFailure pod: the lost run
// counts as a failure. The sandbox, whose infra container went with the
// reboot, is made again (SandboxChanged: the old podman pod is removed,
// podman 4 could not add a container to it), and the lost container runs
// again at once (it did not crash: no back-off), its restart count going
// on and its last state saying HostRebooted; the app container that had
// succeeded and the completed init container do not run again.
func TestWorkerHostRebootedOnFailure(t *testing.T) {
	h := rebootHarness(t, withInit(testPod(corev1.RestartPolicyOnFailure, "main", "done"), "init"))
	h.rt.images["registry.test/done:1"] = true
	h.rt.exit(ctrName("done", 0), 0)
	h.sync()
	h.rt.reboot(bootB)
	h.sync()
	ev := h.events()
	h.wantEvent(ev, "Warning HostRebooted Container main: the build host rebooted")
	h.wantEvent(ev, "Normal SandboxChanged Pod sandbox changed")
	h.wantCalls("remove-pod rbn-"+testUID, 1)
	h.sync() // the kick lostRuns gave
	if infra := h.rt.byName("rbn-" + testUID + "-infra"); infra == nil || !infra.Running {
		t.Fatalf("the sandbox was not made again: infra container %+v", infra)
	}
	h.wantCalls("create-pod rbn-"+testUID, 2)
	// It did not crash: no crash back-off.
	h.wantPhase(corev1.PodRunning)
	s := h.state("main")
	if s.State.Running == nil || s.RestartCount != 1 {
		t.Fatalf("main after the reboot: %+v", s)
	}
	if last := s.LastTerminationState.Terminated; last == nil || last.Reason != ReasonHostRebooted || last.ExitCode != podman.LostExitCode {
		t.Errorf("main's last state: %+v, want terminated %s", s.LastTerminationState, ReasonHostRebooted)
	}
	if got := h.rt.specs[ctrName("main", 1)].Labels[pod.LabelBootID]; got != bootB {
		t.Errorf("the new run's %s label: %q, want %s", pod.LabelBootID, got, bootB)
	}
	for _, c := range []string{"done", "init"} {
		if term := h.state(c).State.Terminated; term == nil || term.Reason != "Completed" {
			t.Errorf("%s, completed before the reboot: %+v", c, h.state(c).State)
		}
		h.wantCalls("create "+ctrName(c, 1), 0)
	}
	h.wantCalls("create "+ctrName("init", 0), 1)
	h.wantCalls("create "+ctrName("done", 0), 1)
}

// rbn-kubelet restarts while the host reboots: the new worker starts the
// old infra container again as it sets the sandbox up, and still makes the
// sandbox again once it sees the lost run (podman 4 could not add a
// container to the old pod); a failed removal is tried again.
func TestWorkerHostRebootedWhileKubeletRestarted(t *testing.T) {
	h := rebootHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.rt.reboot(bootB)
	h2 := restarted(t, h, testPod(corev1.RestartPolicyAlways, "main"))
	h2.rt.faults = map[string][]error{"remove-pod": {errors.New("podman is busy")}}
	h2.sync()
	h2.wantEvent(h2.events(), "Warning HostRebooted Container main")
	h2.wantCalls("remove-pod rbn-"+testUID, 1)
	h2.sync()
	h2.wantCalls("remove-pod rbn-"+testUID, 2)
	h2.sync()
	h2.wantPhase(corev1.PodRunning)
	s := h2.state("main")
	if s.State.Running == nil || s.RestartCount != 1 || s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.Reason != ReasonHostRebooted {
		t.Fatalf("main after the reboot: %+v", s)
	}
	if ev := h2.events(); slices.ContainsFunc(ev, func(e string) bool { return strings.Contains(e, "HostRebooted") }) {
		t.Errorf("the lost run reported again: %q", ev)
	}
}

// Podman lost a run without a reboot (its tmp dir wiped under it): the
// boot id is the same, so the reason is kubelet's ContainerStatusUnknown.
func TestWorkerLostRunWithoutReboot(t *testing.T) {
	h := rebootHarness(t, testPod(corev1.RestartPolicyNever, "main"))
	h.rt.reboot(bootA)
	h.sync()
	h.wantPhase(corev1.PodFailed)
	if term := h.state("main").State.Terminated; term == nil || term.Reason != ReasonContainerStatusUnknown || term.ExitCode != podman.LostExitCode {
		t.Fatalf("main: %+v, want terminated %s", h.state("main").State, ReasonContainerStatusUnknown)
	}
	h.wantEvent(h.events(), "Warning ContainerStatusUnknown Container main: the container stopped without its exit being recorded")
}
