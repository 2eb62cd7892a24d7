package state

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/scheduler"
)

func rbnNode(name string, annotations map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{rbnv1.LabelRemoteBuildNode: "true"},
		Annotations: annotations,
	}}
}

func pod(name, node string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

func claim(ns, name, class, size string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"big": "label"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(class),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
}

func storageClass(name, provisioner string) *storagev1.StorageClass {
	return &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: name},
		Provisioner: provisioner,
		Parameters:  map[string]string{"pool": "x"},
	}
}

// claimPod is a pod of namespace ns using the claims.
func claimPod(ns string, claims ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job", Namespace: ns}}
	for _, c := range claims {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: c, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c},
		}})
	}
	return p
}

// waitFor polls cond (the informers run in goroutines) with a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCache(t *testing.T) {
	client := fake.NewClientset(
		rbnNode("a", map[string]string{rbnv1.AnnotationHostFactsOverride: `{"storageFreeBytes": 5}`}),
		rbnNode("b", nil),
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
		pod("p1", "a", corev1.PodRunning),
		pod("p2", "a", corev1.PodPending),
		pod("done", "a", corev1.PodSucceeded), // the fake ignores field selectors
		pod("unbound", "", corev1.PodPending),
		pod("p3", "plain", corev1.PodRunning),
		claim("ns", "work", "rbn-host-local", "2Gi"),
		claim("ns", "db", "ceph-rbd", "8Gi"),
		claim("other", "work", "rbn-host-local", "5Gi"),
		storageClass("rbn-host-local", rbnv1.ProvisionerHostLocal),
		storageClass("ceph-rbd", "rbd.csi.ceph.com"),
	)
	c, err := New(Config{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	waitFor(t, "cache ready", c.Ready)

	views := c.Views([]string{"b", "a", "plain", "gone"}, nil)
	if len(views) != 4 {
		t.Fatalf("views = %+v", views)
	}
	if views[1].BoundPods != 2 || views[0].BoundPods != 0 {
		t.Errorf("bound pods a=%d b=%d, want 2 and 0", views[1].BoundPods, views[0].BoundPods)
	}
	if f := views[1].Info.Facts(time.Now(), time.Minute); f.StorageFreeBytes.Value != 5 {
		t.Errorf("override not read: %+v", f)
	}
	if views[2].Info == nil || views[2].Info.RemoteBuildNode || views[3].Info != nil {
		t.Errorf("plain/gone = %+v / %+v", views[2].Info, views[3].Info)
	}
	// Claims by namespace and name, classes by name: the pod's need.
	if got := scheduler.VolumeBytes(claimPod("ns", "work", "db", "missing"), c); got != 2<<30 {
		t.Errorf("VolumeBytes in ns = %d, want 2GiB (work; db is another provisioner's, missing not there)", got)
	}
	if got := scheduler.VolumeBytes(claimPod("other", "work"), c); got != 5<<30 {
		t.Errorf("VolumeBytes in other = %d, want 5GiB", got)
	}
	if p, ok := c.Provisioner("ceph-rbd"); !ok || p != "rbd.csi.ceph.com" {
		t.Errorf("Provisioner(ceph-rbd) = %q %v", p, ok)
	}
	if _, ok := c.Provisioner("nope"); ok {
		t.Error("an unknown class has a provisioner")
	}

	// A new binding and a changed annotation show up.
	if _, err := client.CoreV1().Pods("ns").Create(ctx, pod("p4", "b", corev1.PodPending), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := rbnNode("b", map[string]string{rbnv1.AnnotationHostFacts: `{"observedAt":"2026-01-01T00:00:00Z","healthy":false}`})
	b.Labels[rbnv1.LabelDraining] = "true"
	if _, err := client.CoreV1().Nodes().Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod p4 and node b's update", func() bool {
		v, _ := c.View("b")
		return v.BoundPods == 1 && v.Info.Draining && v.Info.Published != nil
	})

	// A claim that gets bound stops counting; a new class and its claim start.
	bound := claim("ns", "work", "rbn-host-local", "2Gi")
	bound.Spec.VolumeName = "pvc-1"
	if _, err := client.CoreV1().PersistentVolumeClaims("ns").Update(ctx, bound, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.StorageV1().StorageClasses().Create(ctx, storageClass("local-2", rbnv1.ProvisionerHostLocal), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().PersistentVolumeClaims("ns").Create(ctx, claim("ns", "scratch", "local-2", "1Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "claim work bound and claim scratch of class local-2", func() bool {
		return scheduler.VolumeBytes(claimPod("ns", "work", "scratch"), c) == 1<<30
	})
	if err := client.CoreV1().Pods("ns").Delete(ctx, "p1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Nodes().Delete(ctx, "plain", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod p1 and node plain gone", func() bool {
		v, _ := c.View("a")
		_, plain := c.View("plain")
		return v.BoundPods == 1 && !plain
	})
}

func TestSlimObjects(t *testing.T) {
	n := rbnNode("a", map[string]string{rbnv1.AnnotationHostFacts: "{}", "other": "x"})
	n.Status.Images = []corev1.ContainerImage{{Names: []string{"big"}}}
	got, _ := slimNode(n)
	sn := got.(*corev1.Node)
	if len(sn.Status.Images) != 0 || sn.Annotations["other"] != "" || sn.Annotations[rbnv1.AnnotationHostFacts] != "{}" || sn.Labels[rbnv1.LabelRemoteBuildNode] != "true" {
		t.Errorf("slim node = %+v", sn)
	}
	got, _ = slimPod(pod("p", "a", corev1.PodRunning))
	sp := got.(*corev1.Pod)
	if len(sp.Spec.Containers) != 0 || sp.Spec.NodeName != "a" || sp.Status.Phase != corev1.PodRunning || sp.Name != "p" {
		t.Errorf("slim pod = %+v", sp)
	}
	cl := claim("ns", "work", "rbn-host-local", "2Gi")
	cl.Spec.VolumeName = "pvc-1"
	cl.Spec.Resources.Requests[corev1.ResourceCPU] = resource.MustParse("1")
	got, _ = slimClaim(cl)
	sc := got.(*corev1.PersistentVolumeClaim)
	if sc.Name != "work" || sc.Namespace != "ns" || len(sc.Labels) != 0 || len(sc.Spec.AccessModes) != 0 ||
		ptr.Deref(sc.Spec.StorageClassName, "") != "rbn-host-local" || sc.Spec.VolumeName != "pvc-1" ||
		len(sc.Spec.Resources.Requests) != 1 || sc.Spec.Resources.Requests.Storage().Value() != 2<<30 {
		t.Errorf("slim claim = %+v", sc)
	}
	got, _ = slimClass(storageClass("rbn-host-local", rbnv1.ProvisionerHostLocal))
	if s := got.(*storagev1.StorageClass); s.Name != "rbn-host-local" || s.Provisioner != rbnv1.ProvisionerHostLocal || len(s.Parameters) != 0 {
		t.Errorf("slim class = %+v", s)
	}
}
