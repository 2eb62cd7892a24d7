package provider

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/podman"
)

func TestWorkerImagePullFailures(t *testing.T) {
	t.Run("pull fails, then backs off", func(t *testing.T) {
		h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
		h.rt.pullErr["registry.test/main:1"] = errors.New("manifest unknown")
		r := h.sync()
		if r.next != 10*time.Second {
			t.Fatalf("next sync in %s, want 10s", r.next)
		}
		ev := h.events()
		h.wantEvent(ev, `Warning Failed Failed to pull image "registry.test/main:1": manifest unknown`)
		h.wantEvent(ev, "Normal BackOff Back-off ImagePullBackOff: manifest unknown")
		h.wantWaiting("main", "ImagePullBackOff")
		h.wantPhase(corev1.PodPending)
		// Within the back-off, no pull.
		h.clock.Step(5 * time.Second)
		h.sync()
		h.wantCalls("pull ", 1)
		h.clock.Step(5 * time.Second)
		if r := h.sync(); r.next != 20*time.Second {
			t.Fatalf("second failure: next sync in %s, want 20s", r.next)
		}
		h.wantCalls("pull ", 2)
		delete(h.rt.pullErr, "registry.test/main:1")
		h.clock.Step(20 * time.Second)
		h.sync()
		h.wantPhase(corev1.PodRunning)
	})
	t.Run("the host lost mid-pull: no back-off, pulled again once back", func(t *testing.T) {
		h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
		h.rt.pullErr["registry.test/main:1"] = errors.New("reading blob: unexpected EOF")
		h.rt.pingErr = errors.New("ssh: the connection is closed")
		if r := h.sync(); r.next != 5*time.Second {
			t.Fatalf("next sync in %s, want 5s (the sync retry)", r.next)
		}
		ev := h.events()
		h.wantEvent(ev, `Warning WaitingForHost the build host stopped answering while pulling image "registry.test/main:1": reading blob: unexpected EOF: the pull starts over once it is back`)
		for _, e := range ev {
			if strings.Contains(e, "BackOff") || strings.Contains(e, "Failed") {
				t.Errorf("event %q: a pull the host's loss broke is not the image's failure", e)
			}
		}
		if w := h.state("main").State.Waiting; w == nil || w.Reason != "ContainerCreating" {
			t.Errorf("waiting %+v, want ContainerCreating: no image failure", w)
		}
		// Back: pulled again at once, no back-off to wait out.
		delete(h.rt.pullErr, "registry.test/main:1")
		h.rt.pingErr = nil
		h.sync()
		h.wantCalls("pull ", 2)
		h.wantEvent(h.events(), `Normal HostBack The build host answers again: the pull of image "registry.test/main:1" starts over`)
		h.wantPhase(corev1.PodRunning)
	})
	t.Run("Never and absent", func(t *testing.T) {
		pd := testPod(corev1.RestartPolicyAlways, "main")
		pd.Spec.Containers[0].ImagePullPolicy = corev1.PullNever
		h := newHarness(t, pd)
		if r := h.sync(); r.next != 10*time.Second {
			t.Fatalf("next sync in %s, want 10s (the configuration retry)", r.next)
		}
		h.wantCalls("pull ", 0)
		h.wantCalls("create "+ctrName("main", 0), 0)
		h.wantEvent(h.events(), `Warning ErrImageNeverPull container image "registry.test/main:1" is not present with pull policy of Never`)
		h.wantWaiting("main", "ErrImageNeverPull")
		h.wantPhase(corev1.PodPending)
		// Still absent: the reason stays (no pull, so no pull back-off).
		h.clock.Step(10 * time.Second)
		h.sync()
		h.wantWaiting("main", "ErrImageNeverPull")
		// Loaded onto the host by someone else: it runs.
		h.rt.images["registry.test/main:1"] = true
		h.clock.Step(10 * time.Second)
		h.sync()
		h.wantCalls("pull ", 0)
		h.wantPhase(corev1.PodRunning)
	})
	t.Run("the host does not answer whether it has the image", func(t *testing.T) {
		h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
		h.rt.existErr = errors.New("connection lost")
		if r := h.sync(); r.next != 5*time.Second {
			t.Fatalf("next sync in %s, want 5s (the sync retry)", r.next)
		}
		h.wantWaiting("main", "ImageInspectError")
		h.wantCalls("pull ", 0)
		h.rt.existErr = nil
		h.clock.Step(5 * time.Second)
		h.sync()
		h.wantCalls("pull registry.test/main:1", 1)
		h.wantPhase(corev1.PodRunning)
	})
	t.Run("Always pulls a present image", func(t *testing.T) {
		pd := testPod(corev1.RestartPolicyAlways, "main")
		pd.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
		h := newHarness(t, pd)
		h.rt.images["registry.test/main:1"] = true
		h.sync()
		h.wantCalls("pull registry.test/main:1", 1)
		h.wantPhase(corev1.PodRunning)
	})
}

func TestWorkerInitContainerFailure(t *testing.T) {
	for _, tc := range []struct {
		policy  corev1.RestartPolicy
		phase   corev1.PodPhase
		retried bool
	}{
		{corev1.RestartPolicyNever, corev1.PodFailed, false},
		{corev1.RestartPolicyOnFailure, corev1.PodPending, true},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			h := newHarness(t, withInit(testPod(tc.policy, "main"), "setup"))
			h.rt.images["registry.test/main:1"], h.rt.images["registry.test/setup:1"] = true, true
			h.sync()
			h.wantCalls("start "+ctrName("setup", 0), 1)
			h.wantCalls("create "+ctrName("main", 0), 0) // not before the init container succeeded
			h.wantWaiting("main", "PodInitializing")
			h.rt.exit(ctrName("setup", 0), 1)
			h.sync()
			h.wantPhase(tc.phase)
			h.clock.Step(10 * time.Second)
			h.sync()
			h.wantCalls("create "+ctrName("main", 0), 0)
			if tc.retried {
				h.wantCalls("start "+ctrName("setup", 1), 1)
				h.rt.exit(ctrName("setup", 1), 0)
				h.sync()
				h.wantCalls("start "+ctrName("main", 0), 1)
				h.wantPhase(corev1.PodRunning)
			} else {
				h.wantCalls("create "+ctrName("setup", 1), 0)
			}
		})
	}
}

func TestWorkerDeletionWithGrace(t *testing.T) {
	pd := testPod(corev1.RestartPolicyAlways, "main", "side")
	pd.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"], h.rt.images["registry.test/side:1"] = true, true
	h.sync()
	h.wantPhase(corev1.PodRunning)
	if len(h.rt.volumes) != 1 {
		t.Fatalf("volumes %v, want the pod's one", h.rt.volumes)
	}
	h.rt.exit(ctrName("side", 0), 0) // only running containers are stopped
	h.w.terminate(7 * time.Second)
	if r := h.sync(); !r.finished {
		t.Fatalf("sync = %+v, want the worker finished", r)
	}
	h.wantCalls("stop ", 1)
	h.wantCalls("stop "+ctrName("main", 0)+" 7s", 1)
	h.wantEvent(h.events(), "Normal Killing Stopping container main")
	h.wantCalls("remove-pod rbn-"+testUID, 1)
	if len(h.rt.ctrs) != 0 || len(h.rt.volumes) != 0 || len(h.rt.pods) != 0 {
		t.Fatalf("left on the host: containers %v, volumes %v, pods %v", h.rt.ctrs, h.rt.volumes, h.rt.pods)
	}
	if h.final == nil {
		t.Fatal("no final status reported")
	}
	for _, s := range h.final.Status.ContainerStatuses {
		if s.State.Terminated == nil {
			t.Errorf("final status: container %s %+v, want terminated", s.Name, s.State)
		}
	}
	if _, ok := h.pods.byUID[testUID]; ok {
		t.Error("the worker is still registered")
	}
}

func TestWorkerWaitsForTheHost(t *testing.T) {
	h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.rt.images["registry.test/main:1"] = true
	h.rt.setReady(false)
	if r := h.sync(); r != (syncResult{}) {
		t.Fatalf("sync on a host not ready = %+v, want to wait for a kick", r)
	}
	if len(h.rt.calls) != 0 {
		t.Fatalf("calls on a host not ready: %q", h.rt.calls)
	}
	h.rt.setReady(true)
	h.sync()
	h.wantPhase(corev1.PodRunning)

	// Lost while running: nothing is done, nothing is restarted twice.
	h.rt.setReady(false)
	h.rt.exit(ctrName("main", 0), 1)
	h.clock.Step(time.Minute)
	h.sync()
	h.wantCalls("create "+ctrName("main", 1), 0)
	h.rt.setReady(true)
	h.sync()
	h.wantCalls("create "+ctrName("main", 1), 1)
	h.wantCalls("start "+ctrName("main", 1), 1)
}

// TestWorkerSpecDecisions: what the translation refuses fails the pod with
// the refusal's reason, and what it only warns about runs, each warning a
// Warning event (docs/podspec.md).
func TestWorkerSpecDecisions(t *testing.T) {
	t.Run("refused field fails the pod", func(t *testing.T) {
		pd := testPod(corev1.RestartPolicyNever, "main")
		pd.Spec.HostIPC = true
		h := newHarness(t, pd)
		h.sync()
		h.wantPhase(corev1.PodFailed)
		if st := h.status(); st.Reason != "UnsupportedField" || !strings.Contains(st.Message, "spec.hostIPC") {
			t.Errorf("reason %q message %q", st.Reason, st.Message)
		}
		h.wantCalls("create-pod", 0)
		h.wantEvent(h.events(), "Warning UnsupportedField spec.hostIPC: ")
	})
	t.Run("warned fields run, with an event each", func(t *testing.T) {
		pd := testPod(corev1.RestartPolicyNever, "main")
		c := &pd.Spec.Containers[0]
		c.Ports = []corev1.ContainerPort{{ContainerPort: 53, Protocol: corev1.ProtocolUDP}}
		h := newHarness(t, pd)
		h.rt.images["registry.test/main:1"] = true
		h.sync()
		h.wantPhase(corev1.PodRunning)
		ev := h.events()
		h.wantEvent(ev, `Warning PortNotRelayed containerPort 53/UDP of container "main" is not reachable through Services`)
	})
	t.Run("a change to the running pod that is not applied", func(t *testing.T) {
		h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
		h.rt.images["registry.test/main:1"] = true
		h.sync()
		h.wantPhase(corev1.PodRunning)
		h.events()
		pd := h.w.current()
		pd.Spec.Containers[0].Image = "registry.test/main:2"
		h.w.update(pd)
		h.sync()
		h.wantEvent(h.events(), "Warning SpecChangeIgnored changed on the running pod, not applied on remote build nodes (recreate the pod to apply): spec.containers[0].image")
		h.wantCalls("create "+ctrName("main", 1), 0)
		// Once per change.
		h.w.update(pd)
		h.sync()
		if ev := h.events(); slices.ContainsFunc(ev, func(e string) bool { return strings.Contains(e, "SpecChangeIgnored") }) {
			t.Errorf("reported again: %q", ev)
		}
	})
}

// TestWorkerHungPodman: a podman call that ran out of its deadline fails
// the step, which is retried as any failed step, and the pod's owner is
// told once, not at every retry: a sandbox that could not be created, a
// deletion that could not end.
func TestWorkerHungPodman(t *testing.T) {
	h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.rt.images["registry.test/main:1"] = true
	// As the podman client fails a call past its deadline.
	hung := func(op string, after time.Duration) error {
		return &podman.TimeoutError{Op: op, Host: "root@h:22", After: after}
	}
	h.rt.faults = map[string][]error{
		"create-pod": {hung("pod_create", 2*time.Minute), hung("pod_create", 2*time.Minute)},
		"remove-pod": {hung("pod_remove", 2*time.Minute), hung("pod_remove", 2*time.Minute)},
	}
	for range 2 {
		if r := h.sync(); r.next != h.w.p.cfg.Retry.Sync || r.finished {
			t.Fatalf("sync with podman not answering = %+v, want a retry in %s", r, h.w.p.cfg.Retry.Sync)
		}
	}
	events := h.events()
	want := "Warning FailedCreatePodSandBox podman did not answer pod_create on root@h:22 within 2m0s"
	if n := len(slices.DeleteFunc(slices.Clone(events), func(e string) bool { return !strings.HasPrefix(e, want) })); n != 1 {
		t.Fatalf("%d events %q among %q, want one for both failures", n, want, events)
	}
	h.sync()
	h.wantCalls("create-pod ", 3)
	h.wantPhase(corev1.PodRunning)

	h.w.terminate(0)
	for range 2 {
		if r := h.sync(); r.next != h.w.p.cfg.Retry.Teardown || r.finished {
			t.Fatalf("teardown with podman not answering = %+v, want a retry in %s", r, h.w.p.cfg.Retry.Teardown)
		}
	}
	events = h.events()
	want = "Warning FailedKillPod error killing pod: podman did not answer pod_remove on root@h:22 within 2m0s"
	if n := len(slices.DeleteFunc(slices.Clone(events), func(e string) bool { return !strings.HasPrefix(e, want) })); n != 1 {
		t.Fatalf("%d events %q among %q, want one for both failures", n, want, events)
	}
	if r := h.sync(); !r.finished {
		t.Fatalf("sync = %+v, want the worker finished once podman answers", r)
	}
	if len(h.rt.pods) != 0 || len(h.rt.ctrs) != 0 {
		t.Fatalf("left on the host: pods %v, containers %v", h.rt.pods, h.rt.ctrs)
	}
}
