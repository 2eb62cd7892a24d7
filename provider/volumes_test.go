package provider

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podobjects"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

func TestMountedWhole(t *testing.T) {
	plan := &pod.Plan{
		InitContainers: []pod.Container{{K8sName: "init", Mounts: []pod.Mount{{Volume: "config", MountPath: "/etc/app", SubPath: "app.conf"}}}},
		Containers: []pod.Container{
			{K8sName: "a", Mounts: []pod.Mount{{Volume: "token", MountPath: "/var/run/secrets"}, {Volume: "config", MountPath: "/config"}}},
			{K8sName: "b", Mounts: []pod.Mount{{Volume: "token", MountPath: "/t", ReadOnly: true}}},
		},
	}
	for vol, want := range map[string]bool{"token": true, "config": false, "unmounted": true} {
		if got := mountedWhole(plan, vol); got != want {
			t.Errorf("mountedWhole(%s) = %t, want %t", vol, got, want)
		}
	}
}

// The plan is made twice at a pod's start (before and after its IP is
// known): one TokenRequest serves both.
func TestTranslateRequestsTheTokenOnce(t *testing.T) {
	indexer := func(objs ...any) cache.Indexer {
		i := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		for _, o := range objs {
			if err := i.Add(o); err != nil {
				t.Fatal(err)
			}
		}
		return i
	}
	requests := 0
	p := newPods(PodsConfig{
		NodeName: "node-1", Spec: &rbnv1.RemoteBuildNodeSpec{Address: "127.0.1.1"},
		Objects: podobjects.Listers{Secrets: corev1listers.NewSecretLister(indexer()),
			ConfigMaps: corev1listers.NewConfigMapLister(indexer(&corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: "ns"}, Data: map[string]string{"ca.crt": "CA"}}))},
		TransferSecret: secretsFrom(indexer()),
		Token: func(context.Context, *corev1.Pod, []string, int64) (string, time.Time, error) {
			requests++
			return "token-1", time.Time{}, nil
		},
	}, newFakeRuntime(clock.RealClock{}))
	pd := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "main", Image: "busybox", VolumeMounts: []corev1.VolumeMount{
				{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}}}},
			Volumes: []corev1.Volume{{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
						Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				}}}}},
		},
	}
	var token podToken
	for _, ip := range []string{"", "10.88.0.5"} {
		plan, err := p.translate(context.Background(), pd, ip, &token)
		if err != nil {
			t.Fatalf("translate(ip %q): %v", ip, err)
		}
		if v := planVolume(plan, "kube-api-access"); v == nil || !hasFile(v.Files, "token", "token-1") {
			t.Errorf("translate(ip %q): the token volume lacks the token: %+v", ip, v)
		}
	}
	if requests != 1 {
		t.Errorf("%d TokenRequests for one pod's two plans, want 1", requests)
	}
}

func hasFile(files []pod.File, path, content string) bool {
	for _, f := range files {
		if f.Path == path && string(f.Data) == content {
			return true
		}
	}
	return false
}

// A new pod's first container is created while its infra container starts,
// unless something needs the infra container first.
func TestNeedsInfraFirst(t *testing.T) {
	token := pod.Volume{K8sName: "token", Kind: pod.VolumeFiles}
	work := pod.Volume{K8sName: "work", Kind: pod.VolumeEmptyDir}
	mount := func(vol, subPath string) []pod.Container {
		return []pod.Container{{K8sName: "main", Mounts: []pod.Mount{{Volume: vol, MountPath: "/m", SubPath: subPath}}}}
	}
	for _, tc := range []struct {
		name string
		plan pod.Plan
		want bool
	}{
		{"files and emptyDir mounted whole", pod.Plan{Volumes: []pod.Volume{token, work}, Containers: append(mount("token", ""), mount("work", "")...)}, false},
		{"env names the pod IP", pod.Plan{UsesPodIP: true}, true},
		{"files volume mounted with a subPath", pod.Plan{Volumes: []pod.Volume{token}, Containers: mount("token", "ca.crt")}, true},
		{"emptyDir mounted with a subPath", pod.Plan{Volumes: []pod.Volume{work}, Containers: mount("work", "out")}, true},
		{"outputs only", pod.Plan{Transfers: &rbnv1.Transfers{Outputs: []rbnv1.TransferOutput{{}}}}, false},
		{"inputs", pod.Plan{Transfers: &rbnv1.Transfers{Inputs: []rbnv1.TransferInput{{}}}}, true},
	} {
		if got := needsInfraFirst(&tc.plan); got != tc.want {
			t.Errorf("%s: needsInfraFirst = %t, want %t", tc.name, got, tc.want)
		}
	}
}

// TestWorkerFSGroup: under an fsGroup, an emptyDir on disk is created
// group-owned by it (podman's gid option, which also keeps podman from
// chowning it to the first container's user) and made setgid and writable
// by all on the host, a Memory one gets the group and mode as tmpfs
// options, a secret volume is written with the group on every entry
// (directories setgid), every container has the group, and a hostPath
// volume is left alone.
func TestWorkerFSGroup(t *testing.T) {
	pd := testPod(corev1.RestartPolicyNever, "main")
	fsGroup := int64(2000)
	pd.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: &fsGroup, SupplementalGroups: []int64{3000}}
	pd.Spec.Volumes = []corev1.Volume{
		{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds",
			Items: []corev1.KeyToPath{{Key: "token", Path: "dir/token"}, {Key: "key", Path: "key", Mode: ptr.To[int32](0o600)}}}}},
	}
	pd.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}, {Name: "shm", MountPath: "/dev/shm"}, {Name: "creds", MountPath: "/creds"}}
	h := newHarness(t, pd)
	if err := h.objects.Add(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "ns"}, Data: map[string][]byte{"token": []byte("t"), "key": []byte("k")}}); err != nil {
		t.Fatal(err)
	}
	h.rt.images["registry.test/main:1"] = true
	h.sync()
	h.wantPhase(corev1.PodRunning)

	work, shm := pod.VolumeName(testUID, "work"), pod.VolumeName(testUID, "shm")
	h.wantCalls("ensure-volume "+work+" o=gid=2000", 1)
	h.wantCalls("ensure-volume "+shm+" o=gid=2000,mode=2777", 1)
	h.wantCalls("chmod 2777 /volumes/"+work, 1)
	h.wantCalls("chmod ", 1) // not the tmpfs, not the secret volume
	if got := h.rt.specs[ctrName("main", 0)].Groups; !slices.Equal(got, []string{"2000", "3000"}) {
		t.Errorf("groups %q, want the fsGroup, then the supplemental groups", got)
	}
	// kubelet's ..data layout (atomicwrite.go), every entry the group's.
	d := mountpoint("creds") + "/" + dataDirName(h.clock.Now(), contentHash(testUID, []pod.File{{Path: "dir/token", Data: []byte("t"), Mode: 0o644}, {Path: "key", Data: []byte("k"), Mode: 0o640}}))
	mp := mountpoint("creds")
	want := []string{d + " 2755 2000", d + "/dir 2755 2000", d + "/dir/token 644 2000", d + "/key 640 2000",
		mp + "/..data 777 2000", mp + "/dir 777 2000", mp + "/key 777 2000"}
	if !slices.Equal(h.rt.copied, want) {
		t.Errorf("secret volume written as %q, want %q", h.rt.copied, want)
	}
}
