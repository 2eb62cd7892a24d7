package controller

import (
	"context"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

func TestLabelledLeasesLabelEveryWrite(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	leases := labelledLeases{client.CoordinationV1().Leases(corev1.NamespaceNodeLease)}

	in := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "build-1", Namespace: corev1.NamespaceNodeLease}}
	created, err := leases.Create(ctx, in, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := created.Labels[rbnv1.LabelRemoteBuildNode]; got != "true" {
		t.Fatalf("created lease label %s = %q, want true", rbnv1.LabelRemoteBuildNode, got)
	}
	if in.Labels != nil {
		t.Fatalf("Create changed the caller's lease: labels %v", in.Labels)
	}

	// A renewal keeps the label and any other the Lease has.
	old := created.DeepCopy()
	old.Labels = map[string]string{"team": "hpc"}
	updated, err := leases.Update(ctx, old, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"team": "hpc", rbnv1.LabelRemoteBuildNode: "true"}
	if len(updated.Labels) != len(want) || updated.Labels["team"] != "hpc" || updated.Labels[rbnv1.LabelRemoteBuildNode] != "true" {
		t.Fatalf("updated lease labels %v, want %v", updated.Labels, want)
	}
}
