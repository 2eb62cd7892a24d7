package controller

import (
	"context"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// labelledLeases hands virtual-kubelet's lease controller the node Leases
// with rbn's label on every create and update: the admission policy
// rbn-kubelet-node-leases (manifests/rbac/admission.yaml) lets rbn-kubelet
// write only Leases labelled so, which keeps real nodes' heartbeats out of its
// reach.
type labelledLeases struct {
	coordinationclient.LeaseInterface
}

func (l labelledLeases) Create(ctx context.Context, lease *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error) {
	return l.LeaseInterface.Create(ctx, withRBNLabel(lease), opts)
}

func (l labelledLeases) Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	return l.LeaseInterface.Update(ctx, withRBNLabel(lease), opts)
}

// withRBNLabel is lease with rbnv1.LabelRemoteBuildNode=true, a copy when
// it lacks the label.
func withRBNLabel(lease *coordinationv1.Lease) *coordinationv1.Lease {
	if lease.Labels[rbnv1.LabelRemoteBuildNode] == "true" {
		return lease
	}
	out := lease.DeepCopy()
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[rbnv1.LabelRemoteBuildNode] = "true"
	return out
}
