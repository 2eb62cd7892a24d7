package state

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
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
}
