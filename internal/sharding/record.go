package sharding

import (
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
)

// LeaseName is the name of node's Lease.
func LeaseName(node string) (string, error) {
	name := LeasePrefix + node
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", fmt.Errorf("lease for node %q: %s", node, strings.Join(errs, "; "))
	}
	return name, nil
}

// ReplicaLeaseName is the name of the Lease whose renewals keep the replica
// identity alive (lower-cased: a hostname, the identity outside a pod, may
// have capitals).
func ReplicaLeaseName(identity string) (string, error) {
	name := ReplicaLeasePrefix + strings.ToLower(identity)
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", fmt.Errorf("lease for replica %q: %s", identity, strings.Join(errs, "; "))
	}
	return name, nil
}

// takeable tells whether me may write itself into l as holder now, and if
// not, the earliest time it may. l is free when nobody holds it (released),
// when me holds it (a previous life of this replica), or when it has not
// changed for its holder's leaseDurationSeconds since observedAt, the time
// this replica first saw its current version. Expiry is judged on this
// replica's clock from what it saw, never from the holder's renewTime:
// clocks of different machines need not agree, only run at similar rates.
func takeable(l *coordinationv1.Lease, me string, observedAt, now time.Time, def time.Duration) (bool, time.Time) {
	holder := ptr.Deref(l.Spec.HolderIdentity, "")
	if holder == "" || holder == me {
		return true, now
	}
	d := def
	if s := ptr.Deref(l.Spec.LeaseDurationSeconds, 0); s > 0 {
		d = time.Duration(s) * time.Second
	}
	expiry := observedAt.Add(d)
	if !now.Before(expiry) {
		return true, now
	}
	return false, expiry
}

// held is l with me as its holder from now on: a copy, the acquisition
// counted as a transition when the holder changes.
func held(l *coordinationv1.Lease, me string, now time.Time, d time.Duration) *coordinationv1.Lease {
	n := l.DeepCopy()
	if l.Labels[LabelLease] == "node" {
		// Held for as long as the holder's replica Lease is renewed.
		metav1.SetMetaDataAnnotation(&n.ObjectMeta, AnnotationLiveness, livenessReplica)
		d = termHold
	}
	if ptr.Deref(n.Spec.HolderIdentity, "") != me {
		n.Spec.LeaseTransitions = ptr.To(ptr.Deref(n.Spec.LeaseTransitions, 0) + 1)
		n.Spec.AcquireTime = ptr.To(metav1.NewMicroTime(now))
	}
	n.Spec.HolderIdentity = ptr.To(me)
	n.Spec.LeaseDurationSeconds = ptr.To(int32(d / time.Second))
	n.Spec.RenewTime = ptr.To(metav1.NewMicroTime(now))
	return n
}

// newLease is a Lease of kind ("node" or "replica"), held by me from now
// on. A node's is held for as long as its holder's replica Lease is
// renewed.
func newLease(name, namespace, kind, me string, now time.Time, d time.Duration) *coordinationv1.Lease {
	var annotations map[string]string
	if kind == "node" {
		annotations, d = map[string]string{AnnotationLiveness: livenessReplica}, termHold
	}
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace,
			Labels:      map[string]string{LabelLease: kind, "app.kubernetes.io/managed-by": "rbn-kubelet"},
			Annotations: annotations,
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(me),
			LeaseDurationSeconds: ptr.To(int32(d / time.Second)),
			AcquireTime:          ptr.To(metav1.NewMicroTime(now)),
			RenewTime:            ptr.To(metav1.NewMicroTime(now)),
			LeaseTransitions:     ptr.To[int32](0),
		},
	}
}

// released is l given up by its holder: no holder, so that another replica
// takes it at once instead of waiting for it to expire.
func released(l *coordinationv1.Lease) *coordinationv1.Lease {
	n := l.DeepCopy()
	n.Spec.HolderIdentity = nil
	n.Spec.AcquireTime = nil
	n.Spec.RenewTime = nil
	return n
}
