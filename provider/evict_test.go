package provider

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/provider/pod"
)

func TestStorageLimitsExceeded(t *testing.T) {
	q := resource.MustParse
	pd := testPod(corev1.RestartPolicyNever, "build", "side")
	pd.Spec.Volumes = []corev1.Volume{
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(q("1Mi"))}}},
		{Name: "ram", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(q("1Mi"))}}},
		{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	pd.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceEphemeralStorage: q("2Mi")}
	pd.Spec.Containers[1].Resources.Limits = corev1.ResourceList{corev1.ResourceEphemeralStorage: q("1Mi")}
	withInit(pd, "fetch").Spec.InitContainers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceEphemeralStorage: q("5Mi")}
	l := podStorageLimits(pd)
	if _, ok := l.emptyDirs["ram"]; ok || len(l.emptyDirs) != 1 {
		t.Errorf("emptyDir limits %v, want scratch's only (a Memory one is a tmpfs of its size)", l.emptyDirs)
	}
	if l.pod == nil || l.pod.String() != "5Mi" {
		t.Errorf("pod limit %v, want 5Mi (the init container's, above the apps' 3Mi)", l.pod)
	}
	const mi = 1 << 20
	for _, tc := range []struct {
		name   string
		u      storageUsage
		want   string
		signal string
	}{
		{"within", storageUsage{emptyDirs: map[string]int64{"scratch": mi, "work": mi}, containers: map[string]int64{"build": mi, "side": mi}}, "", ""},
		{"emptyDir", storageUsage{emptyDirs: map[string]int64{"scratch": mi + 1}}, `Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". `, "emptydirfs.limit"},
		{"pod", storageUsage{emptyDirs: map[string]int64{"work": 4 * mi}, containers: map[string]int64{"build": mi + 1}}, "Pod ephemeral local storage usage exceeds the total limit of containers 5Mi. ", "ephemeralpodfs.limit"},
		{"container", storageUsage{containers: map[string]int64{"side": 2 * mi}}, `Container side exceeded its local ephemeral storage limit "1Mi". `, "ephemeralcontainerfs.limit"},
		{"emptyDir first", storageUsage{emptyDirs: map[string]int64{"scratch": 6 * mi}, containers: map[string]int64{"side": 2 * mi}}, `Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". `, "emptydirfs.limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, signal, over := l.exceeded(tc.u)
			if over != (tc.want != "") || msg != tc.want || signal != tc.signal {
				t.Errorf("exceeded = %q, %q, %v; want %q, %q", msg, signal, over, tc.want, tc.signal)
			}
		})
	}
	if podStorageLimits(testPod(corev1.RestartPolicyNever, "a")).any() {
		t.Error("a pod without limits has some")
	}
}

func TestParseDiskUsage(t *testing.T) {
	got, err := parseDiskUsage([]byte("4096\t/var/lib/a\x0012288\t/var/lib/b c\x00"))
	if err != nil || len(got) != 2 || got["/var/lib/a"] != 4096 || got["/var/lib/b c"] != 12288 {
		t.Errorf("parseDiskUsage = %v, %v", got, err)
	}
	if _, err := parseDiskUsage([]byte("x\t/a\x00")); err == nil {
		t.Error("want an error for a record that is not du's")
	}
}

// TestWorkerEvictsForLocalStorage: a running pod whose emptyDir grows past
// its sizeLimit is measured within storageCheckInterval and evicted as the
// kubelet does: its containers killed at once, Failed with reason Evicted
// and the kubelet's message, a DisruptionTarget condition and an Evicted
// event; nothing restarts it.
func TestWorkerEvictsForLocalStorage(t *testing.T) {
	pd := testPod(corev1.RestartPolicyAlways, "main")
	pd.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
	pd.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("1Mi"))}}}}
	pd.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	dir := "/volumes/" + pod.VolumeName(testUID, "scratch")
	h.rt.du = map[string]int64{dir: 512 << 10}
	h.sync() // creates and starts the container: nothing ran when it looked
	h.wantPhase(corev1.PodRunning)
	h.wantCalls("du ", 0)
	if r := h.sync(); r.next <= 0 || r.next > storageCheckInterval { // as the start's event kicks it
		t.Fatalf("next sync in %s, want within %s (the next measurement)", r.next, storageCheckInterval)
	}
	h.wantCalls("du "+dir, 1)

	h.rt.du[dir] = 2 << 20
	h.clock.Step(5 * time.Second)
	h.sync()
	h.wantCalls("du "+dir, 1) // not due yet
	h.clock.Step(storageCheckInterval)
	h.sync()
	h.wantCalls("du "+dir, 2)
	h.wantCalls("stop "+ctrName("main", 0)+" 0s", 1)
	h.wantPhase(corev1.PodFailed)
	st := h.status()
	const msg = `Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". `
	if st.Reason != "Evicted" || st.Message != msg {
		t.Errorf("reason %q message %q", st.Reason, st.Message)
	}
	disruption := false
	for _, c := range st.Conditions {
		disruption = disruption || c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue && c.Reason == "TerminationByKubelet"
	}
	if !disruption {
		t.Errorf("no DisruptionTarget condition: %+v", st.Conditions)
	}
	h.wantEvent(h.events(), "Warning Evicted "+msg)
	if got := h.w.p.evictionCounts(); len(got) != 1 || got["emptydirfs.limit"] != 1 {
		t.Errorf("evictions by signal %v, want emptydirfs.limit 1", got)
	}
	h.clock.Step(time.Minute)
	h.sync()
	h.wantCalls("create "+ctrName("main", 1), 0)
	h.wantCalls("du ", 2)
}

// TestWorkerEmptiesEndedPodsEmptyDirs: once the pod has ended its
// emptyDirs, on disk and in memory, are emptied on the host, once (again
// after a failure).
func TestWorkerEmptiesEndedPodsEmptyDirs(t *testing.T) {
	pd := testPod(corev1.RestartPolicyNever, "main")
	pd.Spec.Volumes = []corev1.Volume{
		{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "ram", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
	}
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	h.sync()
	h.wantPhase(corev1.PodRunning)
	h.wantCalls("empty-dirs", 0)
	h.rt.faults = map[string][]error{"empty-dirs": {errors.New("ssh: connection lost")}}
	h.rt.exit(ctrName("main", 0), 0)
	if r := h.sync(); r.next != h.w.p.cfg.Retry.Sync {
		t.Fatalf("next sync in %s after a failure, want Retry.Sync", r.next)
	}
	h.wantPhase(corev1.PodSucceeded)
	h.wantCalls("empty-dirs", 0)
	h.sync()
	h.wantCalls("empty-dirs /volumes/"+pod.VolumeName(testUID, "work")+" /volumes/"+pod.VolumeName(testUID, "ram"), 1)
	h.sync()
	h.wantCalls("empty-dirs", 1)
}

// TestWorkerUnderDiskPressure: a pod without local storage limits is not
// measured until its host is under disk pressure; then it measures its
// disk emptyDirs and containers for DiskPressure's ranking, and an
// eviction DiskPressure asks for kills its containers at once and fails it
// with reason Evicted and the message given.
func TestWorkerUnderDiskPressure(t *testing.T) {
	pd := testPod(corev1.RestartPolicyAlways, "main")
	pd.Spec.Volumes = []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	pd.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	pd.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("1Mi")}
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	dir := "/volumes/" + pod.VolumeName(testUID, "work")
	h.rt.du = map[string]int64{dir: 3 << 20}
	h.sync()
	h.wantPhase(corev1.PodRunning)
	h.sync()
	h.wantCalls("du ", 0)
	if u := h.w.diskUsage.Load(); u != nil {
		t.Fatalf("measured without limits or pressure: %+v", u)
	}

	h.w.p.setDiskPressure(true)
	h.sync()
	h.wantCalls("du ", 1)
	u := h.w.diskUsage.Load()
	if u == nil || u.uid != testUID || u.total < 3<<20 || u.request != 1<<20 {
		t.Fatalf("measured %+v, want the pod's uid, at least its emptyDir's 3Mi, its 1Mi request", u)
	}

	const msg = "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 5Gi. "
	if !h.w.p.evict(testUID, msg) {
		t.Fatal("evict found no worker")
	}
	h.sync()
	h.wantCalls("stop "+ctrName("main", 0)+" 0s", 1)
	h.wantPhase(corev1.PodFailed)
	if st := h.status(); st.Reason != "Evicted" || st.Message != msg {
		t.Errorf("reason %q message %q", st.Reason, st.Message)
	}
	h.wantEvent(h.events(), "Warning Evicted "+msg)
	if got := h.w.p.evictionCounts(); len(got) != 1 || got["nodefs.available"] != 1 {
		t.Errorf("evictions by signal %v, want nodefs.available 1", got)
	}
	if !h.w.p.stopped(testUID) {
		t.Error("stopped() false for the evicted pod")
	}
	if got := h.w.p.diskUsages(time.Time{}); len(got) != 0 {
		t.Errorf("an ended pod still ranks: %+v", got)
	}

	// Ended, its containers and podman pod go when DiskPressure reclaims,
	// once; its log with them, which `kubectl logs` says.
	if n := h.w.p.reclaimEnded(); n != 1 {
		t.Fatalf("reclaimEnded asked %d pods, want 1", n)
	}
	h.sync()
	h.wantCalls("remove-pod "+pod.PodName(testUID), 1) // its containers with it
	if n := h.w.p.reclaimEnded(); n != 0 {
		t.Errorf("reclaimEnded asked %d pods again", n)
	}
	h.sync()
	h.wantCalls("remove-pod ", 1)
	h.wantPhase(corev1.PodFailed)
	_, err := h.w.p.ContainerLogs(context.Background(), pd.Namespace, pd.Name, "main", vkapi.ContainerLogOpts{}, -1)
	if err == nil || !strings.Contains(err.Error(), "removed from the host with its log") {
		t.Errorf("logs of a reclaimed container: %v", err)
	}

	// Its deletion keeps the final status: no container is left to report.
	final := h.status()
	h.w.terminate(0)
	if r := h.sync(); !r.finished {
		t.Fatalf("deletion not finished: %+v", r)
	}
	if st := h.status(); st.Phase != corev1.PodFailed || st.Reason != "Evicted" || len(st.ContainerStatuses) != len(final.ContainerStatuses) ||
		st.ContainerStatuses[0].State.Terminated == nil {
		t.Errorf("status after the deletion: %+v, want the final one: %+v", st, final)
	}
}
