package provider

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/remote-build-nodes/rbn/internal/podman"
)

func TestPodsRunWaitsForItsWorkers(t *testing.T) {
	h := newHarness(t, testPod(corev1.RestartPolicyAlways, "unused"))
	h.rt.images["registry.test/main:1"] = true
	running := make(chan struct{}, 10)
	h.pods.NotifyPods(h.ctx, func(p *corev1.Pod) {
		if p.Status.Phase == corev1.PodRunning {
			running <- struct{}{}
		}
	})
	pd := testPod(corev1.RestartPolicyAlways, "main")
	pd.Name, pd.UID = "q", "uid-2"
	if err := h.pods.CreatePod(h.ctx, pd); err != nil { // before Run: started by Run
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	ran := make(chan error, 1)
	go func() { ran <- h.pods.Run(ctx) }()
	deadline := time.After(30 * time.Second)
	select {
	case <-running:
	case <-deadline:
		t.Fatal("the pod did not reach Running")
	}
	w := h.pods.workerOf("uid-2")
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run = %v, want nil once its context ended", err)
		}
	case <-deadline:
		t.Fatal("Run did not return once its context ended")
	}
	select {
	case <-w.done:
	default:
		t.Fatal("Run returned before its worker ended")
	}
	select {
	case <-h.pods.Done():
	default:
		t.Fatal("Done not closed once Run returned")
	}
}

// failingRuntime fails the calls removeOrphans makes.
type failingRuntime struct {
	*fakeRuntime
}

func (f failingRuntime) NodeObjects(string, time.Duration) labelledObjects { return f }

func (f failingRuntime) RemovePod(context.Context, string, time.Duration) error {
	return errors.New("remove pod: connection lost")
}

func (f failingRuntime) ListVolumes(context.Context, map[string]string) ([]podman.Volume, error) {
	return nil, errors.New("list volumes: connection lost")
}

func TestRemoveOrphansReportsWhatItCouldNotRemove(t *testing.T) {
	h := newHarness(t, testPod(corev1.RestartPolicyAlways, "main"))
	h.rt.images["registry.test/main:1"] = true
	h.sync()
	// The pod is gone from Kubernetes and this process has no worker for it.
	h.pods.byUID = map[types.UID]*podWorker{}
	h.pods.cfg.Known = func(types.UID) (bool, bool) { return false, true }
	h.pods.rt = failingRuntime{h.rt}
	h.pods.cfg.Host = testHost(t)
	err := h.pods.removeOrphans(h.ctx)
	if err == nil {
		t.Fatal("removeOrphans = nil, want the failures")
	}
	for _, want := range []string{"orphaned pod rbn-uid-1: remove pod: connection lost", "list volumes: connection lost"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// What could be removed was: the containers.
	if len(h.rt.ctrs) != 0 {
		t.Errorf("containers left: %v", h.rt.ctrs)
	}
	// The host counts the sweep, failed, and the orphans it removed.
	st := h.pods.cfg.Host.SweepStats()
	if st.Sweeps != 1 || st.Failed != 1 || st.Removed.Pods != 0 || st.Removed.Containers == 0 || st.Removed.Volumes != 0 {
		t.Errorf("sweep stats %+v, want 1 sweep, failed, the containers removed", st)
	}
	h.pods.rt = h.rt
	if err := h.pods.removeOrphans(h.ctx); err != nil {
		t.Fatal(err)
	}
	if st := h.pods.cfg.Host.SweepStats(); st.Sweeps != 2 || st.Failed != 1 || st.Removed.Pods != 1 {
		t.Errorf("after a sweep that removed the pod: %+v, want 2 sweeps, 1 failed, 1 pod", st)
	}
	// What the orphan's cluster Services would have left on the host goes
	// with it.
	if got, want := h.rt.called("remove-paths"), "remove-paths "+servicesDir("uid-1"); !slices.Contains(got, want) {
		t.Errorf("host paths removed: %q, want %q", got, want)
	}
}
