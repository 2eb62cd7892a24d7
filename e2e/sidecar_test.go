//go:build e2e

package e2e

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A native sidecar (an init container with restartPolicy Always) on a
// remote build node, as in a job: started before the app container, which
// waits for its startup probe; restarted when it exits; stopped after the
// app container completed, with SIGTERM; and the pod succeeds.
func TestNativeSidecar(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	p := s.runPod(t, ns, "job", `  restartPolicy: Never
  volumes: [{name: shared, emptyDir: {}}]
  initContainers:
    - name: sidecar
      image: localhost/rbn/busybox:1.0
      restartPolicy: Always
      volumeMounts: [{name: shared, mountPath: /shared}]
      # Counts its runs; exits 3 when told to (/shared/die).
      command: [sh, -c, "trap 'echo sidecar got TERM; exit 0' TERM; n=$(cat /shared/runs 2>/dev/null || echo 0); echo $((n+1)) >/shared/runs; echo sidecar up; touch /shared/up; until [ -e /shared/die ]; do sleep 0.2; done; rm /shared/die; exit 3"]
      startupProbe:
        exec: {command: [test, -e, /shared/up]}
        periodSeconds: 1
  containers:
    - name: main
      image: localhost/rbn/busybox:1.0
      volumeMounts: [{name: shared, mountPath: /shared}]
      # Makes the sidecar exit once, and waits for it to be back.
      command: [sh, -c, "test -e /shared/up || exit 10; touch /shared/die; until [ \"$(cat /shared/runs)\" = 2 ]; do sleep 0.2; done; echo sidecar runs: $(cat /shared/runs); echo main done"]
`, corev1.PodSucceeded)
	var side, main *corev1.ContainerStatus
	if len(p.Status.InitContainerStatuses) == 1 && len(p.Status.ContainerStatuses) == 1 {
		side, main = &p.Status.InitContainerStatuses[0], &p.Status.ContainerStatuses[0]
	}
	if side == nil || side.State.Terminated == nil || main.State.Terminated == nil {
		t.Fatalf("want both containers terminated: %+v %+v", p.Status.InitContainerStatuses, p.Status.ContainerStatuses)
	}
	if code := main.State.Terminated.ExitCode; code != 0 {
		t.Fatalf("main exited %d (10: the sidecar's startup probe did not hold it)", code)
	}
	if side.State.Terminated.FinishedAt.Before(&main.State.Terminated.FinishedAt) {
		t.Errorf("the sidecar ended at %s, before the main container (%s)", side.State.Terminated.FinishedAt, main.State.Terminated.FinishedAt)
	}
	if out := s.Kubectl(t, "-n", ns, "logs", "job", "-c", "main"); !strings.Contains(out, "sidecar runs: 2") || !strings.Contains(out, "main done") {
		t.Errorf("main's log %q, want the sidecar run twice (restarted after its exit under restartPolicy Never)", out)
	}
	if out := s.Kubectl(t, "-n", ns, "logs", "job", "-c", "sidecar"); !strings.Contains(out, "sidecar got TERM") {
		t.Errorf("the sidecar's log %q: it was not stopped with SIGTERM", out)
	}
	if side.RestartCount != 1 {
		t.Errorf("sidecar restart count %d, want 1", side.RestartCount)
	}
}

// A native sidecar without probes has started once it runs: the init
// container after it and then the app run without anything else waking
// the pod's worker (the node's relist skips what the worker accounted for,
// so the pod would stay Pending if its start did not lead on).
func TestNativeSidecarWithoutProbes(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	p := s.runPod(t, ns, "job", `  restartPolicy: Never
  initContainers:
    - name: sidecar
      image: localhost/rbn/busybox:1.0
      restartPolicy: Always
      command: [sh, -c, "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    - name: setup
      image: localhost/rbn/busybox:1.0
      command: ["true"]
  containers:
    - name: main
      image: localhost/rbn/busybox:1.0
      command: [sh, -c, "echo main done"]
`, corev1.PodSucceeded)
	if len(p.Status.InitContainerStatuses) != 2 || len(p.Status.ContainerStatuses) != 1 {
		t.Fatalf("statuses: %+v %+v", p.Status.InitContainerStatuses, p.Status.ContainerStatuses)
	}
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			t.Errorf("%s: %+v, want terminated with exit code 0", cs.Name, cs.State)
		}
	}
}
