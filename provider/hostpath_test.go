package provider

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

func TestCheckHostPaths(t *testing.T) {
	tests := []struct {
		name     string
		typ      corev1.HostPathType
		existing string // the path's type on the host (stat's %F); "" when missing
		wantErr  string // "" when the check passes
		wantKind string // the path's type afterwards
	}{
		{name: "untyped is not checked", typ: "", existing: ""},
		{name: "directory", typ: corev1.HostPathDirectory, existing: "directory", wantKind: "directory"},
		{name: "directory missing", typ: corev1.HostPathDirectory, wantErr: "is not a directory (stat: cannot statx"},
		{name: "directory is a file", typ: corev1.HostPathDirectory, existing: "regular file", wantErr: "is not a directory (it is a regular file)"},
		{name: "directory created", typ: corev1.HostPathDirectoryOrCreate, wantKind: "directory"},
		{name: "directory or create, is a file", typ: corev1.HostPathDirectoryOrCreate, existing: "regular file", wantErr: "is not a directory (it is a regular file)"},
		{name: "file created", typ: corev1.HostPathFileOrCreate, wantKind: "regular empty file"},
		{name: "file or create, is a directory", typ: corev1.HostPathFileOrCreate, existing: "directory", wantErr: "is not a file (it is a directory)"},
		{name: "empty file", typ: corev1.HostPathFile, existing: "regular empty file", wantKind: "regular empty file"},
		{name: "fifo is no file", typ: corev1.HostPathFile, existing: "fifo", wantErr: "is not a file (it is a fifo)"},
		{name: "socket", typ: corev1.HostPathSocket, existing: "socket", wantKind: "socket"},
		{name: "socket is a file", typ: corev1.HostPathSocket, existing: "regular file", wantErr: "is not a socket file"},
		{name: "char device", typ: corev1.HostPathCharDev, existing: "character special file", wantKind: "character special file"},
		{name: "block device", typ: corev1.HostPathBlockDev, existing: "block special file", wantKind: "block special file"},
		{name: "block device is a char device", typ: corev1.HostPathBlockDev, existing: "character special file", wantErr: "is not a block device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := newFakeRuntime(testingclock.NewFakeClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)))
			const p = "/srv/cache/x"
			if tt.existing != "" {
				rt.files = map[string]string{p: tt.existing}
			}
			plan := &pod.Plan{Volumes: []pod.Volume{
				{K8sName: "scratch", Kind: pod.VolumeEmptyDir},
				{K8sName: "cache", Kind: pod.VolumeHostPath, HostPath: p, HostPathType: tt.typ},
			}}
			err := checkHostPaths(t.Context(), rt, plan)
			var hp *HostPathTypeError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.wantErr != "" && !errors.As(err, &hp):
				t.Fatalf("error %v is not a *HostPathTypeError", err)
			case tt.wantErr != "" && !strings.Contains(err.Error(), `volume "cache": hostPath type check failed: /srv/cache/x `+tt.wantErr):
				t.Fatalf("error %q lacks %q", err, tt.wantErr)
			}
			if got := rt.files[p]; tt.wantErr == "" && got != tt.wantKind {
				t.Errorf("path is %q on the host, want %q", got, tt.wantKind)
			}
			if tt.typ == "" && len(rt.calls) > 0 {
				t.Errorf("an untyped hostPath ran %q on the host", rt.calls)
			}
		})
	}
}

// TestWorkerHostPathType: a failed check keeps the pod waiting with the
// kubelet's FailedMount event, and it starts once the host is fixed.
func TestWorkerHostPathType(t *testing.T) {
	pd := testPod(corev1.RestartPolicyNever, "main")
	pd.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
		Path: "/srv/cache", Type: ptr.To(corev1.HostPathDirectory),
	}}}}
	h := newHarness(t, pd)
	h.pods.cfg.Spec.HostPathAllowlist = []string{"/srv"}
	h.rt.images["registry.test/main:1"] = true
	h.sync()
	h.wantEvent(h.events(), `Warning FailedMount volume "cache": hostPath type check failed: /srv/cache is not a directory`)
	h.wantCalls("create-pod", 0)
	h.rt.files = map[string]string{"/srv/cache": "directory"}
	h.sync()
	h.wantPhase(corev1.PodRunning)
}

// TestWorkerHostPathSymlink: the allowlist is checked against the real
// path on the host, and the real path is what is mounted. A symlink that
// leads out of the allowlist keeps the pod waiting (FailedMount, nothing
// created); an allowlisted directory that is itself a symlink is fine.
func TestWorkerHostPathSymlink(t *testing.T) {
	pd := testPod(corev1.RestartPolicyNever, "main")
	pd.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/cache"}}}}
	pd.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}}
	h := newHarness(t, pd)
	h.pods.cfg.Spec.HostPathAllowlist = []string{"/srv"}
	h.rt.images["registry.test/main:1"] = true
	h.rt.links = map[string]string{"/srv/cache": "/etc"}
	h.sync()
	h.wantEvent(h.events(), `Warning FailedMount volume "cache": hostPath /srv/cache resolves on the host to /etc, outside the host paths this node allows`)
	h.wantCalls("create-pod", 0)

	// /srv is a symlink to /data, and cache a directory in it.
	h.rt.links = map[string]string{"/srv": "/data"}
	h.sync()
	h.wantPhase(corev1.PodRunning)
	var sources []string
	for _, spec := range h.rt.specs {
		for _, m := range spec.Mounts {
			if m.Destination == "/cache" {
				sources = append(sources, m.Source)
			}
		}
	}
	if len(sources) != 1 || sources[0] != "/data/cache" {
		t.Errorf("mounted %v at /cache, want the real path /data/cache", sources)
	}
}

// TestWorkerClaimVolume: a pod's claim that is not there yet keeps it
// waiting (ContainerCreating, one FailedMount event per cause, looked at
// again within a second); once bound to a volume of rbn's provisioner,
// the volume's file system is mounted on the host before anything of the
// pod is created (a failure is a FailedMount, retried), and its data
// directory is what the container mounts.
func TestWorkerClaimVolume(t *testing.T) {
	pd := testPod(corev1.RestartPolicyNever, "main")
	pd.Spec.Volumes = []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "image-work"},
	}}}
	pd.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/mnt/image"}}
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true

	res := h.sync()
	h.wantEvent(h.events(), `Warning FailedMount Unable to attach or mount volumes: volume "work": persistentvolumeclaim "ns/image-work" not found`)
	if res.next <= 0 || res.next > time.Second {
		t.Errorf("next sync in %s, want within a second", res.next)
	}
	if st := h.state("main"); st.State.Waiting == nil || st.State.Waiting.Reason != "ContainerCreating" {
		t.Errorf("container state %+v, want waiting in ContainerCreating", st.State)
	}
	h.sync()
	if ev := h.events(); len(ev) > 0 {
		t.Errorf("the same cause again: events %q, want none", ev)
	}
	h.wantCalls("create-pod", 0)

	const dir = "/var/lib/rbn/volumes/pv-1"
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "image-work", Namespace: "ns"},
		Spec:       corev1.PersistentVolumeClaimSpec{VolumeName: "pv-1"},
		Status:     corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-1", Annotations: map[string]string{
			"pv.kubernetes.io/provisioned-by": rbnv1.ProvisionerHostLocal,
			rbnv1.AnnotationVolumeDir:         dir, rbnv1.AnnotationVolumeImage: dir + ".img",
		}},
		Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir + "/data"}}},
	}
	for _, obj := range []any{claim, pv} {
		if err := h.objects.Add(obj); err != nil {
			t.Fatal(err)
		}
	}
	h.rt.faults = map[string][]error{"mount-volume": {errors.New("mount: /dev/loop7: can't read superblock")}}
	h.sync()
	h.wantEvent(h.events(), `Warning FailedMount volume "work": mounting the volume of claim "image-work": mount: /dev/loop7: can't read superblock`)
	h.wantCalls("create-pod", 0)

	h.sync()
	h.wantPhase(corev1.PodRunning)
	if got := h.rt.called("mount-volume"); len(got) != 2 || got[1] != "mount-volume "+dir+".img "+dir {
		t.Errorf("mounts %q, want the volume's file system mounted at %s (twice: the first failed)", got, dir)
	}
	var sources []string
	for _, spec := range h.rt.specs {
		for _, m := range spec.Mounts {
			if m.Destination == "/mnt/image" {
				sources = append(sources, m.Source)
			}
		}
	}
	if len(sources) != 1 || sources[0] != dir+"/data" {
		t.Errorf("mounted %v at /mnt/image, want %s/data", sources, dir)
	}
}
