package provider

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestAccountedFor(t *testing.T) {
	look := func(kv ...string) podLook {
		l := podLook{}
		for i := 0; i < len(kv); i += 3 {
			l[kv[i]] = containerLook{name: kv[i+1], state: kv[i+2]}
		}
		return l
	}
	acts := func(kv ...any) *hostActs {
		a := &hostActs{}
		for i := 0; i < len(kv); i += 2 {
			a.add(kv[i].(string), kv[i+1].(hostAct))
		}
		return a
	}
	tests := []struct {
		name          string
		before, after podLook
		acts          *hostActs
		want          bool
	}{
		{"nothing done, nothing changed", look("1", "infra", "running"), look("1", "infra", "running"), acts(), true},
		{"a new pod's infra and container started", look(), look("1", "infra", "running", "2", "main-0", "running"), acts("infra", actStarted, "main-0", actStarted), true},
		{"acts known by container ID", look("2", "main-0", "running"), look("2", "main-0", "exited"), acts("2", actStopped), true},
		{"created, not started", look(), look("2", "main-0", "created"), acts("main-0", actCreated), true},
		{"started, but ended at once", look(), look("2", "main-0", "exited"), acts("main-0", actStarted), false},
		{"a start that failed", look("2", "main-0", "created"), look("2", "main-0", "exited"), acts("main-0", actFailed), false},
		{"a failure stays one", look(), look("2", "main-0", "running"), acts("main-0", actFailed, "main-0", actStarted), false},
		{"a container changed on its own", look("1", "infra", "running", "2", "side-0", "running"),
			look("1", "infra", "running", "2", "side-0", "exited", "3", "main-0", "running"), acts("main-0", actStarted), false},
		{"a container the sync did not make", look(), look("1", "infra", "running", "9", "helper", "exited"), acts("infra", actStarted), false},
		{"a container gone", look("1", "infra", "running", "2", "main-0", "exited"), look("1", "infra", "running"), acts(), false},
		{"a stop that left it running", look("2", "main-0", "running"), look("2", "main-0", "running"), acts("main-0", actStopped), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := accountedFor(tt.before, tt.after, tt.acts); got != tt.want {
				t.Errorf("accountedFor = %v, want %v", got, tt.want)
			}
		})
	}
}

// woken says whether something asked the worker for a sync, and takes
// the request.
func (h *harness) woken() bool {
	select {
	case <-h.w.kick:
		return true
	default:
		return false
	}
}

// A relist wakes a worker only for what it has not accounted for: not for
// the containers its own sync created, started and looked at; but for a
// container that ended since, once, and for one that ended before the look
// after its start.
func TestRelistSkipsWhatTheWorkerAccountedFor(t *testing.T) {
	h := newHarness(t, testPod(corev1.RestartPolicyNever, "main"))
	h.sync()
	h.wantPhase(corev1.PodRunning)
	h.woken() // whatever the sync itself asked for
	seen := h.pods.relist(h.ctx, podFingerprints{})
	if len(seen[testUID]) == 0 {
		t.Fatalf("the relist saw no container of the pod: %v", seen)
	}
	if h.woken() {
		t.Error("the relist woke the worker for the containers its own sync started and looked at")
	}
	h.rt.exit(ctrName("main", 0), 0)
	seen = h.pods.relist(h.ctx, seen)
	if !h.woken() {
		t.Fatal("the relist did not wake the worker for its container's exit")
	}
	h.sync()
	h.wantPhase(corev1.PodSucceeded)
	h.woken()
	if h.pods.relist(h.ctx, seen); h.woken() {
		t.Error("the relist woke the worker again for the exit it has seen")
	}

	// A sync that started a container which ended before the look after
	// it (its died event may be lost): the relist wakes the worker.
	pd := testPod(corev1.RestartPolicyAlways, "main")
	h = newHarness(t, pd)
	h.rt.exitOnStart = map[string]int32{ctrName("main", 0): 1}
	h.sync()
	h.woken()
	h.pods.relist(h.ctx, podFingerprints{})
	if !h.woken() {
		t.Error("the relist did not wake the worker for a container that ended at its start")
	}
}

// A sync that changes nothing on the host lists and inspects the pod's
// containers once: no second look for the status.
func TestIdleSyncLooksOnce(t *testing.T) {
	h := newHarness(t, testPod(corev1.RestartPolicyNever, "main"))
	h.sync()
	h.wantPhase(corev1.PodRunning)
	looks := h.rt.lookCount()
	h.sync()
	if n := h.rt.lookCount() - looks; n != 2 {
		t.Errorf("an idle sync made %d container lists and inspections, want 2 (one list, one inspection)", n)
	}
	h.wantPhase(corev1.PodRunning)
}

// A native sidecar without a startup probe has started once it runs: the
// worker syncs again at once to run what waits for it, woken by nothing
// else. One with a startup probe waits for the probe.
func TestSidecarStartWakesTheWorker(t *testing.T) {
	h := sidecarHarness(t, corev1.RestartPolicyNever)
	h.woken()
	h.sync()
	h.wantCalls("start "+ctrName("proxy", 0), 1)
	if !h.woken() {
		t.Fatal("the worker started the sidecar and did not ask to sync again for the init container after it")
	}
	h.sync()
	h.wantCalls("start "+ctrName("setup", 0), 1)

	pd := sidecarPod(corev1.RestartPolicyNever)
	// Its first attempt after the test (the fake clock stands still): its
	// result, which wakes the worker, does not race the check below.
	pd.Spec.InitContainers[0].StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}},
		PeriodSeconds: 1, InitialDelaySeconds: 3600}
	pd.Spec.InitContainers[0].RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	h = newHarness(t, pd)
	for _, c := range []string{"main", "proxy", "setup"} {
		h.rt.images["registry.test/"+c+":1"] = true
	}
	h.sync()
	h.wantCalls("start "+ctrName("proxy", 0), 1)
	if h.woken() {
		t.Error("the worker asked to sync again for a sidecar whose startup probe has not succeeded")
	}
}
